"""Read imputed and array genotypes from BGEN (v1.2, via cbgen) and PLINK 2 .pgen (via pgenlib).

Both become the records the VCF reader keeps (StoredRecord + genotype arrays), so matching at definition positions,
other representations of indels, undocumented alleles, GRCh37 positions and everything after reading are exactly
the VCF path's. Probabilities and dosages are hard-called as for VCF GP/DS (probabilities.py).
"""

from __future__ import annotations

import sqlite3
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from permed.errors import InputFileError, MissingExtraError
from permed.genotypes.build import AUTO, GRCH37, GRCH38, DataEvidence
from permed.genotypes.files import file_sha256
from permed.genotypes.model import MISSING_ALLELE, NO_ALLELE
from permed.genotypes.probabilities import (
    OK,
    QUALITY_KEYS,
    call_from_ds,
    call_from_gp,
    call_from_haplotypes,
    check_calls,
    ds_tolerance,
    impute_info,
)
from permed.genotypes.store import Extract, RecordStore, StoredRecord
from permed.genotypes.vcf_reader import _ALLELE_OK, VcfReader, evidence_sites, normalise_chrom

BGEN_MAGIC = (b"bgen", b"\0\0\0\0")
PGEN_MAGIC = b"\x6c\x1b"
MIN_INFO_SAMPLES = 100  # below this many samples an information measure from the probabilities says little
_PLINK_CHROMS = {"23": "X", "24": "Y", "25": "X", "26": "MT", "XY": "X", "PAR1": "X", "PAR2": "X"}


def file_format(path: Path) -> str:
    """`bgen`, `pgen` or `vcf`: from the extension, else from the first bytes."""
    name = str(path).lower()
    if name.endswith(".bgen"):
        return "bgen"
    if name.endswith(".pgen"):
        return "pgen"
    if not Path(path).is_file():  # opening a pipe would wait for a writer: the VCF reader's checks refuse it
        return "vcf"
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except OSError:
        return "vcf"  # the VCF reader's checks name the problem
    if len(head) >= 20 and head[16:20] in BGEN_MAGIC[:1]:
        return "bgen"
    if head[:2] == PGEN_MAGIC and head[2:3] in (b"\x01", b"\x02", b"\x10", b"\x11"):
        return "pgen"
    return "vcf"


def _import(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise MissingExtraError(module, "imputed") from None


def plink_chrom(raw: str) -> str:
    """UK Biobank's `01`, PLINK's `23` (X) and `chr10` alike as chr-prefixed names."""
    bare = raw.removeprefix("chr").lstrip("0") or raw
    return normalise_chrom(_PLINK_CHROMS.get(bare, bare))


@dataclass
class Variant:
    chrom: str  # chr-prefixed
    pos: int
    alleles: list[str]
    handle: int  # where the genotypes are: the BGEN genotype block offset, the pgen variant index
    quality: str | None = None  # imputation quality below --min-info ("R2=0.42")


class VariantFileReader(VcfReader):
    """A VcfReader whose records come from a variant-major binary file instead of htslib."""

    format_name = ""

    def sample_names(self) -> tuple[str, ...]:
        self._check_file()
        return self._read_samples()

    def chromosomes_with_records(self) -> list[str] | None:
        return None  # one unit per file (and per sample slice)

    def extract(self) -> Extract:
        return self._extract_file()

    def _check_file(self) -> None:
        where = self.label
        if not self.path.exists():
            raise InputFileError(f"{where}: no such file")
        if not self.path.is_file():
            raise InputFileError(f"{where}: is not a regular file")
        if self.path.stat().st_size == 0:
            raise InputFileError(f"{where}: file is empty")

    def _extract_file(self) -> Extract:
        self._check_file()
        sha = file_sha256(self.path) if self.with_sha256 else ""
        all_samples = self._read_samples()
        if not all_samples:
            raise InputFileError(f"{self.label}: no samples")
        if len(set(all_samples)) < len(all_samples):
            seen: set[str] = set()
            dups = sorted({s for s in all_samples if s in seen or seen.add(s)})
            raise InputFileError(f"{self.label}: duplicate sample name(s): {', '.join(dups[:5])}")
        ranges = self.sample_ranges or ((0, len(all_samples)),)
        # one range: a view of each variant's arrays; several: the rows gathered
        self._rows = slice(*ranges[0]) if len(ranges) == 1 else np.concatenate([np.arange(*r) for r in ranges])
        samples = tuple(self.pick_samples(all_samples)) if self.sample_ranges else all_samples
        variants = self._variants()
        self._choose_build_from(variants)
        self.notices.insert(0, self._source_notice(len(all_samples)))
        if self.build == GRCH37:
            self.notices.insert(1, self._grch37_notice)
        store = RecordStore(len(samples))
        chroms_seen: set[str] = set()
        near_genes: set[str] = set()
        idx = self.index
        asked = {normalise_chrom(r) for r in self.regions} if self.regions else None
        for v in variants:
            chroms_seen.add(v.chrom)
            for g, lo, hi in idx.gene_spans.get(v.chrom, ()):
                if lo <= v.pos <= hi:
                    near_genes.add(g)
            if v.chrom not in idx.chroms or (asked is not None and v.chrom not in asked):
                continue
            ref, alts = v.alleles[0], v.alleles[1:]
            exact = idx.exact.get((v.chrom, v.pos), ())
            near: list = []
            if not exact and (len(ref) > 1 or any(len(a) != 1 for a in alts)):
                near = idx.near(v.chrom, v.pos, v.pos + len(ref) - 1)
            extra = idx.extra.get((v.chrom, v.pos), ())
            if not exact and not near and not extra:
                continue
            for allele in v.alleles:
                if not allele or not _ALLELE_OK.match(allele):
                    raise InputFileError(f"{self.label}: variant {v.chrom}:{v.pos}: invalid allele {allele!r}")
            gts, reasons, quality = self._genotypes_of(v, len(all_samples))
            store.add(StoredRecord(None, v.chrom, v.pos, ref, list(alts), None, None, list(exact), list(near),
                                   list(extra), v.quality or quality), gts, None, None, reasons)
        return Extract(self.path, sha, samples, store, chroms_seen, near_genes, self.notices)

    def _choose_build_from(self, variants: list[Variant]) -> None:
        """The build: --build, else what the variants show (known variants at either build's definition
        positions), else GRCh38; a --build the variants contradict is refused, as for VCF."""
        evidence = DataEvidence()
        known = evidence_sites(self.kb)
        for v in variants:
            for build in (GRCH38, GRCH37):
                site = known[build].get((v.chrom, v.pos))
                if site is not None:
                    evidence.add(build, v.chrom, v.pos, site, v.alleles[0], v.alleles[1:])
        self.build = GRCH38 if self.options.build == AUTO else self.options.build
        self.build = self._decide_build(evidence)
        self._check_kb_build()

    def _thresholds(self) -> str:
        return (f"hard calls need the most likely genotype's probability >= --min-gp {self.options.min_gp:g} "
                f"(dosages: within {ds_tolerance(self.options.min_gp):g} of 0, 1 or 2), else the position is "
                "missing for that sample")

    # ---- per format ----
    def _read_samples(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _variants(self) -> list[Variant]:
        raise NotImplementedError

    def _genotypes_of(self, v: Variant, n_all: int):
        raise NotImplementedError

    def _source_notice(self, n_all: int) -> str:
        raise NotImplementedError


# ---- BGEN ------------------------------------------------------------------------------------------------
class BgenReader(VariantFileReader):
    """BGEN v1.2 (layout 2, any bit depth, zlib or zstd; UK Biobank's imputed data), or v1.1 layout refused.

    Variants are listed from the .bgi index (bgenix's SQLite file) when there is a current one, else by walking
    the variant headers; probabilities are decoded by cbgen at each kept variant's genotype block."""

    format_name = "BGEN"

    def _bgen_header(self) -> dict:
        if getattr(self, "_hdr", None) is not None:
            return self._hdr
        where = self.label
        with open(self.path, "rb") as fh:
            head = fh.read(24)
            if len(head) < 24:
                raise InputFileError(f"{where}: too short for a BGEN header ({len(head)} bytes)")
            offset, lh, m, n, magic = struct.unpack("<IIII4s", head[:20])
            if magic not in BGEN_MAGIC:
                raise InputFileError(f"{where}: not a BGEN file (no 'bgen' magic number at byte 16)")
            if lh < 20 or lh > offset:
                raise InputFileError(f"{where}: BGEN header length {lh} does not fit the first-variant offset "
                                     f"{offset}")
            fh.seek(4 + lh - 4)
            (flags,) = struct.unpack("<I", fh.read(4))
            compression, layout, has_ids = flags & 3, (flags >> 2) & 0xF, bool(flags >> 31)
            if layout != 2:
                raise InputFileError(f"{where}: BGEN layout {layout} (v1.{1 if layout == 1 else layout}) is not read; "
                                     "permed reads BGEN v1.2 (layout 2): convert with qctool -ofiletype bgen_v1.2")
            if compression not in (0, 1, 2):
                raise InputFileError(f"{where}: BGEN compression flag {compression} is not defined")
            ids: list[str] | None = None
            if has_ids:
                fh.seek(4 + lh)
                lsi, n2 = struct.unpack("<II", fh.read(8))
                if n2 != n:
                    raise InputFileError(f"{where}: the sample block lists {n2} samples, the header {n}")
                block = fh.read(lsi - 8)
                ids, at = [], 0
                for i in range(n):
                    if at + 2 > len(block):
                        raise InputFileError(f"{where}: sample identifier block ends at sample {i + 1} of {n}")
                    (ln,) = struct.unpack_from("<H", block, at)
                    ids.append(block[at + 2:at + 2 + ln].decode(errors="replace"))
                    at += 2 + ln
        self._hdr = {"first": offset + 4, "variants": m, "samples": n, "compression": compression, "ids": ids}
        return self._hdr

    def _sample_file(self) -> Path | None:
        for cand in (self.path.with_suffix(".sample"), Path(str(self.path) + ".sample")):
            if cand.is_file():
                return cand
        return None

    def _read_samples(self) -> tuple[str, ...]:
        hdr = self._bgen_header()
        if hdr["ids"] is not None:
            return tuple(hdr["ids"])
        sample_file = self._sample_file()
        if sample_file is None:
            raise InputFileError(f"{self.label}: the BGEN file has no sample identifiers and there is no "
                                 f"{self.path.with_suffix('.sample').name} beside it")
        lines = [ln.split() for ln in sample_file.read_text(errors="replace").splitlines() if ln.strip()]
        if len(lines) < 2 or lines[0][:1] != ["ID_1"]:
            raise InputFileError(f"{sample_file}: line 1: not an Oxford sample file (expected 'ID_1 ID_2 missing')")
        ids = tuple(row[0] for row in lines[2:])
        if len(ids) != hdr["samples"]:
            raise InputFileError(f"{sample_file}: {len(ids)} samples, but {self.label} holds {hdr['samples']}")
        return ids

    def _variants(self) -> list[Variant]:
        index = Path(str(self.path) + ".bgi")
        if index.is_file() and index.stat().st_mtime >= self.path.stat().st_mtime:
            try:
                return self._variants_from_index(index)
            except sqlite3.Error as exc:
                raise InputFileError(f"{index}: cannot be read as a bgenix index ({exc})") from None
        return self._walk(None)

    def _variants_from_index(self, index: Path) -> list[Variant]:
        """Variants at the definition chromosomes' positions from the .bgi, each header then read from the file
        (the index holds two alleles only)."""
        con = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT chromosome, position, file_start_position FROM Variant").fetchall()
        finally:
            con.close()
        wanted = {c for c in self.index.chroms} | {c for c, _ in evidence_sites(self.kb)[GRCH37]} | {
            c for c, _ in evidence_sites(self.kb)[GRCH38]}
        starts = sorted(int(r[2]) for r in rows if plink_chrom(str(r[0])) in wanted)
        self.notices.append(f"variants listed from the index {index.name}")
        return self._walk(starts)

    def _walk(self, starts: list[int] | None) -> list[Variant]:
        """Variant headers, from the first variant on (starts=None) or at the given offsets."""
        hdr = self._bgen_header()
        out: list[Variant] = []
        size = self.path.stat().st_size
        with open(self.path, "rb") as fh:
            at = hdr["first"]
            todo = hdr["variants"] if starts is None else len(starts)
            for i in range(todo):
                if starts is not None:
                    at = starts[i]
                fh.seek(at)
                try:
                    chrom, pos, alleles, geno = self._variant_header(fh)
                    fh.seek(geno)
                    (length,) = struct.unpack("<I", fh.read(4))
                except (struct.error, UnicodeDecodeError, ValueError) as exc:
                    raise InputFileError(f"{self.label}: variant {i + 1} (byte {at}): truncated or malformed BGEN "
                                         f"variant header ({exc})") from None
                at = geno + 4 + length
                if at > size:
                    raise InputFileError(f"{self.label}: variant {i + 1} ({chrom}:{pos}): its genotype block runs "
                                         "past the end of the file (truncated file?)")
                out.append(Variant(plink_chrom(chrom), pos, alleles, geno))
        return out

    @staticmethod
    def _variant_header(fh) -> tuple[str, int, list[str], int]:
        def text16() -> str:
            (ln,) = struct.unpack("<H", fh.read(2))
            raw = fh.read(ln)
            if len(raw) != ln:
                raise ValueError("file ends inside the header")
            return raw.decode()

        text16()  # variant id
        text16()  # rsid
        chrom = text16()
        pos, k = struct.unpack("<IH", fh.read(6))
        alleles = []
        for _ in range(k):
            (ln,) = struct.unpack("<I", fh.read(4))
            alleles.append(fh.read(ln).decode().upper())
        if k < 1:
            raise ValueError("no alleles")
        return chrom, pos, alleles, fh.tell()

    def _file(self):
        if getattr(self, "_bgen", None) is None:
            cbgen = _import("cbgen")
            self._bgen = cbgen.bgen_file(self.path)
        return self._bgen

    def _genotypes_of(self, v: Variant, n_all: int):
        try:
            g = self._file().read_genotype(v.handle)
        except RuntimeError as exc:
            raise InputFileError(f"{self.label}: variant {v.chrom}:{v.pos}: genotype block cannot be decoded "
                                 f"({exc})") from None
        probs = np.asarray(g.probability, dtype=np.float64)
        probs[np.asarray(g.missing, dtype=bool)] = np.nan
        k = len(v.alleles)
        quality = None
        if not g.phased and k == 2 and n_all >= MIN_INFO_SAMPLES and probs.shape[1] == 3:
            info = impute_info(probs)  # over the whole file, so every sample slice judges alike
            if info is not None and info < self.options.min_info:
                quality = f"INFO={info:.3f} (computed from the probabilities)"
        probs = probs[self._rows]
        ploidy = np.asarray(g.ploidy)[self._rows]
        if (ploidy > 2).any():
            raise InputFileError(f"{self.label}: variant {v.chrom}:{v.pos}: ploidy {int(ploidy.max())}; permed reads "
                                 "haploid and diploid genotypes only")
        if g.phased:
            called, reasons = call_from_haplotypes(probs, k, ploidy, self.options.min_gp)
            phased = (called >= 0).all(axis=1) | (called[:, 1] == NO_ALLELE)
            return (called, phased & ~(called == MISSING_ALLELE).any(axis=1)), _or_none(reasons), quality
        # haploid rows carry k values, the rest NaN, which call_from_gp reads as haploid
        called, reasons = call_from_gp(probs, k, self.options.min_gp)
        return (called, np.zeros(len(called), dtype=bool)), _or_none(reasons), quality

    def _source_notice(self, n_all: int) -> str:
        hdr = self._bgen_header()
        comp = {0: "uncompressed", 1: "zlib", 2: "zstd"}[hdr["compression"]]
        ids = "sample identifiers in the file" if hdr["ids"] is not None else f"samples from {self._sample_file().name}"
        info = (f"imputation quality: IMPUTE's information measure computed from the probabilities over the file's "
                f"{n_all} samples; below --min-info {self.options.min_info:g} a position is missing for every sample"
                if n_all >= MIN_INFO_SAMPLES else
                f"imputation quality not judged (BGEN carries none, and {n_all} sample(s) are too few to compute it; "
                f"filter on the provider's INFO scores first)")
        return (f"read from BGEN v1.2 (layout 2, {comp}, {ids}): {self._thresholds()}; {info}; genotypes from "
                "probabilities are unphased (as for any unphased input) unless the file stores phased haplotypes")


def _or_none(reasons: np.ndarray) -> np.ndarray | None:
    return reasons if (reasons != OK).any() else None


# ---- PLINK 2 ---------------------------------------------------------------------------------------------
class PgenReader(VariantFileReader):
    """PLINK 2 .pgen with its .pvar and .psam (text, beside it under the same name): hardcalls with their phase,
    checked against dosages where the file stores them (biallelic variants)."""

    format_name = "pgen"

    def _companion(self, ext: str) -> Path:
        p = self.path.with_suffix(ext)
        if not p.is_file():
            raise InputFileError(f"{self.label}: no {p.name} beside it (a .pgen needs its .pvar and .psam)")
        return p

    def _read_samples(self) -> tuple[str, ...]:
        if getattr(self, "_samples", None) is not None:
            return self._samples
        psam = self._companion(".psam")
        rows = [ln.rstrip("\r\n").split() for ln in psam.read_text(errors="replace").splitlines() if ln.strip()]
        rows = [r for r in rows if not r[0].startswith("##")]
        if rows and rows[0][0].startswith("#"):
            cols = [c.lstrip("#").upper() for c in rows[0]]
            if "IID" not in cols:
                raise InputFileError(f"{psam}: line 1: the header names no IID column")
            iid, sex = cols.index("IID"), cols.index("SEX") if "SEX" in cols else None
            rows = rows[1:]
        else:  # a .fam-style file: FID IID PAT MAT SEX PHENO
            iid, sex = 1, 4
        try:
            self._samples = tuple(r[iid] for r in rows)
        except IndexError:
            raise InputFileError(f"{psam}: a line has fewer columns than its header") from None
        self._male = np.array([sex is not None and len(r) > sex and r[sex] in ("1", "M", "m") for r in rows])
        return self._samples

    def _variants(self) -> list[Variant]:
        pvar = self._companion(".pvar")
        out: list[Variant] = []
        cols: list[str] | None = None
        with open(pvar, encoding="utf-8", errors="replace") as fh:
            for no, line in enumerate(fh, start=1):
                if line.startswith("##"):
                    continue
                f = line.rstrip("\r\n").split("\t")
                if line.startswith("#"):
                    cols = [c.lstrip("#").upper() for c in f]
                    missing = [c for c in ("CHROM", "POS", "REF", "ALT") if c not in cols]
                    if missing:
                        raise InputFileError(f"{pvar}: line {no}: the header lacks {', '.join(missing)}")
                    continue
                if cols is None:
                    raise InputFileError(f"{pvar}: line {no}: no '#CHROM POS ID REF ALT' header line (a .bim-style "
                                         "file is not read: convert it with plink2 --make-pgen)")
                if len(f) < len(cols):
                    raise InputFileError(f"{pvar}: line {no}: {len(f)} columns, the header names {len(cols)}")
                row = dict(zip(cols, f))
                if not row["POS"].isdigit() or int(row["POS"]) < 1:
                    raise InputFileError(f"{pvar}: line {no}: POS {row['POS'][:20]!r} is not a positive integer")
                alts = [a for a in row["ALT"].split(",") if a != "."]
                out.append(Variant(plink_chrom(row["CHROM"]), int(row["POS"]),
                                   [row["REF"].upper(), *(a.upper() for a in alts)] if alts else [row["REF"].upper()],
                                   len(out), _quality(row.get("INFO", ""), self.options.min_info, pvar, no)))
        self._variant_list = out
        return out

    def _file(self, n_all: int):
        if getattr(self, "_pgen", None) is None:
            pgenlib = _import("pgenlib")
            counts = [max(2, len(v.alleles)) for v in self._variant_list]
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.uintp)
            try:
                self._pgen = pgenlib.PgenReader(bytes(self.path), raw_sample_ct=n_all,
                                                variant_ct=len(self._variant_list),
                                                allele_idx_offsets=offsets if max(counts, default=2) > 2 else None)
            except RuntimeError as exc:
                raise InputFileError(f"{self.label}: cannot be read as a .pgen matching its .pvar and .psam "
                                     f"({str(exc).strip().splitlines()[0] if str(exc).strip() else exc})") from None
            self._pgen_phase = self._pgen.hardcall_phase_present()
        return self._pgen

    def _genotypes_of(self, v: Variant, n_all: int):
        pg = self._file(n_all)
        alleles = np.empty(2 * n_all, dtype=np.int32)
        phase = np.empty(n_all, dtype=np.uint8)
        try:
            pg.read_alleles_and_phasepresent(v.handle, alleles, phase)
            dosages = None
            if len(v.alleles) == 2:
                dosages = np.empty(n_all, dtype=np.float64)
                pg.read_dosages(v.handle, dosages)
        except RuntimeError as exc:
            raise InputFileError(f"{self.label}: variant {v.handle + 1} ({v.chrom}:{v.pos}): cannot be read "
                                 f"({exc})") from None
        g = alleles.reshape(n_all, 2).astype(np.int16)
        g[g < 0] = MISSING_ALLELE
        phased = (phase.astype(bool) if self._pgen_phase else np.zeros(n_all, dtype=bool))
        if v.chrom == "chrX" and self._male.any():
            # PLINK stores a male's chrX call as a diploid homozygote: read it as the haploid call it is
            male = self._male & (g[:, 0] == g[:, 1]) & (g[:, 0] >= 0)
            g[male, 1] = NO_ALLELE
            het = self._male & (g[:, 0] != g[:, 1]) & (g[:, 1] != NO_ALLELE)
            g[het] = MISSING_ALLELE
        g, phased = g[self._rows], phased[self._rows]
        if dosages is None:
            return (g, phased), None, None
        ds = dosages[self._rows]
        ds[ds < 0] = np.nan
        called, reasons = call_from_ds(ds.reshape(-1, 1), self.options.min_gp)
        hap = g[:, 1] == NO_ALLELE
        called[hap] = g[hap]  # haploid calls: the hardcall (dosages are diploid-scaled)
        reasons[hap] = OK
        (g, phased), reasons = check_calls((g, phased), called, reasons, ~np.isnan(ds))
        return (g, phased), _or_none(reasons), None

    def _source_notice(self, n_all: int) -> str:
        return (f"read from PLINK 2 .pgen with {self.path.with_suffix('.pvar').name} and "
                f"{self.path.with_suffix('.psam').name}: hardcalls checked against dosages where the file stores them; "
                f"{self._thresholds()}; imputation quality from the .pvar INFO column (R2, DR2, INFO) below "
                f"--min-info {self.options.min_info:g} makes a position missing for every sample; calls are unphased "
                "unless the file stores phase")


def _quality(info: str, min_info: float, where: Path, no: int) -> str | None:
    if not info or info == ".":
        return None
    fields = dict(kv.split("=", 1) for kv in info.split(";") if "=" in kv)
    for key in QUALITY_KEYS:
        if key in fields:
            try:
                low = min(float(x) for x in fields[key].split(","))
            except ValueError:
                raise InputFileError(f"{where}: line {no}: INFO {key}={fields[key][:20]!r} is not a number") from None
            if low < min_info:
                return f"{key}={low:g}"
    return None


def reader_for(path: Path, kb, genes, options, **kwargs) -> VcfReader:
    """The reader of a genotype file by its type: VCF/BCF, BGEN or PLINK 2 .pgen."""
    kind = file_format(Path(path))
    cls = BgenReader if kind == "bgen" else PgenReader if kind == "pgen" else VcfReader
    return cls(Path(path), kb, genes, options, **kwargs)


# ---- writing BGEN (tests and benchmarks build files from VCF data) ----------------------------------------
def write_bgen(path: Path, samples: list[str], variants, embed_samples: bool = True, bits: int = 8) -> Path:
    """A BGEN v1.2 file (layout 2, zlib, unphased diploid) following the format specification
    (https://www.well.ox.ac.uk/~gav/bgen_format/spec/v1.2.html). `variants` yields (chrom, pos, rsid, alleles,
    probs): probs a (samples x genotypes) array in VCF GP order, a NaN row meaning missing."""
    n = len(samples)
    flags = 1 | (2 << 2) | ((1 << 31) if embed_samples else 0)
    free = b"permed"
    # LH, M (the variant count, filled in at the end), N, magic, free data, flags
    header = struct.pack("<III", 20 + len(free), 0, n) + b"bgen" + free + struct.pack("<I", flags)
    sample_block = b""
    if embed_samples:
        ids = b"".join(struct.pack("<H", len(s.encode())) + s.encode() for s in samples)
        sample_block = struct.pack("<II", 8 + len(ids), n) + ids
    scale = (1 << bits) - 1
    count = 0
    with open(path, "wb") as fh:
        fh.write(struct.pack("<I", len(header) + len(sample_block)))
        fh.write(header)
        fh.write(sample_block)
        for chrom, pos, rsid, alleles, probs in variants:
            count += 1
            vid = f"{chrom}:{pos}".encode()
            out = [struct.pack("<H", len(vid)), vid, struct.pack("<H", len(rsid.encode())), rsid.encode(),
                   struct.pack("<H", len(chrom.encode())), chrom.encode(), struct.pack("<IH", pos, len(alleles))]
            for a in alleles:
                out += [struct.pack("<I", len(a)), a.encode()]
            probs = np.asarray(probs, dtype=np.float64)
            missing = np.isnan(probs).any(axis=1)
            p = np.where(missing[:, None], 0.0, probs)
            # the specification's rounding: floor, then the remainder to the largest fractional parts
            x = p * scale
            q = np.floor(x).astype(np.int64)
            short = np.where(missing, 0, scale - q.sum(axis=1))
            order = np.argsort(-(x - q), axis=1, kind="stable")
            for j in range(probs.shape[1]):
                q[np.arange(n), order[:, j]] += (short > j).astype(np.int64)
            body = (struct.pack("<IHBB", n, len(alleles), 2, 2)
                    + np.where(missing, 0x82, 2).astype(np.uint8).tobytes() + struct.pack("<BB", 0, bits)
                    + _pack(q[:, :-1].ravel(), bits))
            comp = zlib.compress(body, 6)
            out += [struct.pack("<II", len(comp) + 4, len(body)), comp]
            fh.write(b"".join(out))
        fh.seek(8)
        fh.write(struct.pack("<I", count))
    return path


def _pack(values: np.ndarray, bits: int) -> bytes:
    if bits == 8:
        return values.astype(np.uint8).tobytes()
    bitarr = ((values[:, None] >> np.arange(bits)) & 1).astype(np.uint8).ravel()
    return np.packbits(bitarr, bitorder="little").tobytes()


def bgen_sample_file(path: Path, samples: list[str]) -> Path:
    lines = ["ID_1 ID_2 missing", "0 0 0", *(f"{s} {s} 0" for s in samples)]
    path.write_text("\n".join(lines) + "\n")
    return path

