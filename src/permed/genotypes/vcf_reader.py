"""Read genotypes at definition positions from VCF/BCF files (htslib via cyvcf2).

Semantics follow PharmCAT's VCF reader (which positions count, which calls are discarded and
with which warning), extended for what lab files contain: chr/no-chr contig names, multi-allelic
and split records, non-normalised indels and MNPs, gVCF reference blocks, many samples.
Structural problems with the file itself raise InputFileError (exit code 2) naming the file and record.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cyvcf2 import VCF

from permed.errors import InputFileError
from permed.genotypes.build import (
    AUTO,
    GRCH37,
    GRCH37_LENGTHS,
    GRCH38,
    GRCH38_LENGTHS,
    DataEvidence,
    HeaderBuild,
    check_build_mismatches,
    header_build,
)
from permed.genotypes.files import (
    captured_stderr,
    clean_htslib,
    describe_line,
    file_sha256,
    has_index,
    header_line_count,
    is_bcf,
    precheck,
    stale_index,
)
from permed.genotypes.gt_text import PLAIN_GT_MIN_SAMPLES, GtLines, NotPlainGt, fixed_columns
from permed.genotypes.locus_index import WINDOW_GAP, LocusIndex, Site, has_grch37, locus_index, sites
from permed.genotypes.model import (
    ABSENT,
    CALLED,
    FILLED,
    MISSING_ALLELE,
    NO_ALLELE,
    UNUSABLE,
    GeneGenotypes,
    GenotypeSet,
)
from permed.genotypes.normalize import AlleleMapping, map_record
from permed.genotypes.probabilities import (
    DEFAULT_MIN_GP,
    DEFAULT_MIN_INFO,
    QUALITY_KEYS,
    call_from_ds,
    call_from_gp,
    check_calls,
    ds_tolerance,
    n_genotypes,
    reason_text,
)
from permed.genotypes.store import Extract, FieldError, RecordStore, StoredRecord
from permed.kb.model import KnowledgeBase
from permed.kb.policy import undocumented_as_reference

HAPLOID_CHROMOSOMES = frozenset({"chrY", "chrM"})
_ALLELE_OK = re.compile(r"^([ACGTNacgtn]+|\*|<[^>]*>|\.|.*[\[\]].*)$")
_VALID_BASES = re.compile(r"^[ACGTacgt]+$")
_I32 = np.iinfo(np.int32)
VCF_TYPES = ("Integer", "Float", "Flag", "Character", "String")
MAX_POS = 2**31 - 1  # VCF positions are 32-bit; htslib keeps wider ones but cyvcf2's POS wraps them
PREPROCESSOR_FILTERS = frozenset({"PCATxREF", "PCATxALT", "PCATxINDEL"})


@dataclass(frozen=True)
class ReadOptions:
    missing_to_ref: bool = False
    require_pass: bool = False  # PharmCAT ignores FILTER; opt in to drop non-PASS records
    find_combinations: bool = False  # affects undocumented-as-reference messages only
    use_index: bool = True  # read indexed files through definition-position windows
    build: str = AUTO  # GRCh38, GRCh37, or auto: from the header and the records
    min_gp: float = DEFAULT_MIN_GP  # genotype probabilities (GP, BGEN) and dosages (DS): hard-call threshold
    min_info: float = DEFAULT_MIN_INFO  # imputation quality (INFO R2/DR2/INFO) below this: position missing
    sample_warnings: bool = True  # per-sample notes (a cohort's tables do not show them: not made)
    # GT-only text lines read with numpy (gt_text): None from PLAIN_GT_MIN_SAMPLES samples read, or always/never
    plain_gt: bool | None = None


def normalise_chrom(name: str) -> str:
    if name.startswith("chr"):
        return name
    if name in ("MT", "M"):
        return "chrM"
    return "chr" + name


class _RecordError(Exception):
    def __init__(self, where: str, detail: str, described: bool = False):
        super().__init__(detail)
        self.where = where
        self.detail = detail
        self.described = described  # our own reading of the line, clearer than htslib's message


class _GeneArrays:
    def __init__(self, gdef, n: int, loci: tuple[Site | None, ...]):
        L = len(gdef.loci)
        self.gdef = gdef
        # allele tables in the definition's (GRCh38) terms; records are read through `loci`, the loci as the
        # file's build places them (None: no position there), and their alleles land on these tables by sequence
        self.alleles = [[loc.ref, *loc.alts] for loc in gdef.loci]
        self.loci = loci
        self.unmapped = [li for li, s in enumerate(loci) if s is None]
        self.gt = np.full((n, L, 2), MISSING_ALLELE, dtype=np.int16)
        self.status = np.zeros((n, L), dtype=np.int8)
        self.phased = np.zeros((n, L), dtype=bool)
        self.phase_set = np.zeros((n, L), dtype=np.int32)  # PS is a VCF Integer (32-bit)
        self.origin: dict[int, str] = {}
        self.first_alts: dict[int, tuple] = {}  # ALT alleles of the first record used per locus
        self.remote_fill = False  # filled as reference though no record lies near the gene
        self.extra: dict[int, dict] = {}

    def set_phase_sets(self, rows: np.ndarray | slice, li: int, values: np.ndarray) -> None:
        # PS is a 32-bit VCF Integer; a wider value (PS given as text) widens the array, never wraps
        if not values.any():
            return  # rows taken are absent so far, whose phase set is still 0
        if values.max() > _I32.max or values.min() < _I32.min:
            self.phase_set = self.phase_set.astype(np.int64)
        self.phase_set[rows, li] = values

    def code(self, li: int, allele: str) -> int:
        table = self.alleles[li]
        try:
            return table.index(allele)
        except ValueError:
            table.append(allele)
            return len(table) - 1


@dataclass
class _PassState:
    """What the pass over the records keeps between them."""

    chroms_seen: set = field(default_factory=set)
    near_genes: set = field(default_factory=set)  # genes with some record within 10 kb of their definition positions
    chrom_order: list = field(default_factory=list)
    last: tuple | None = None
    unsorted_noted: bool = False
    evidence: DataEvidence = field(default_factory=DataEvidence)  # which build the records sit on


class _Reread(Exception):
    """The records show the other build than the pass assumed: read the file again on that build."""

    def __init__(self, build: str):
        super().__init__(build)
        self.build = build


def evidence_sites(kb: KnowledgeBase) -> dict[str, dict[tuple[str, int], tuple[str, frozenset]]]:
    """Per build, every KB definition SNV there -> (that build's base, the definition's other alleles): whichever
    genes a run calls, the build is judged on all of them, so every unit of a file judges alike."""
    key = id(kb)
    if key not in _EVIDENCE or _EVIDENCE[key][0] is not kb:
        out: dict[str, dict] = {GRCH38: {}, GRCH37: {}}
        for gdef in kb.genes.values():
            for build in (GRCH38, GRCH37):
                for site in sites(gdef, build):
                    # an interpolated GRCh37 position's base is assumed, not known: no evidence of a build
                    if site is not None and site.is_snv and not site.interpolated:
                        out[build][(gdef.chromosome, site.position)] = (site.ref, frozenset(site.alts))
        if not out[GRCH37]:
            # a knowledge base from before per-locus GRCh37 positions: its GRCh37 sites of definition SNVs
            for x in kb.grch37_sites:
                ref, alts = out[GRCH37].get((x.chromosome, x.position37), (x.ref37, frozenset()))
                out[GRCH37][(x.chromosome, x.position37)] = (ref, alts | {x.alt})
        _EVIDENCE[key] = (kb, out)
    return _EVIDENCE[key][1]


_EVIDENCE: dict[int, tuple] = {}


class VcfReader:
    def __init__(self, path: Path, kb: KnowledgeBase, genes: list[str], options: ReadOptions = ReadOptions(),
                 regions: list[str] | None = None, with_sha256: bool = True,
                 label: str | None = None, sample_ranges: tuple[tuple[int, int], ...] | None = None):
        self.label = label or str(path)  # how messages name the file (the service: the uploaded file's name)
        self.regions = regions
        self.sample_ranges = sample_ranges  # read only these samples: [start, stop) ranges in header order, ascending
        self.with_sha256 = with_sha256
        self.path = Path(path)
        self.kb = kb
        self.genes = genes
        self.options = options
        self.position_warnings: dict[str, list[str]] = {}
        self.sample_warnings: dict[tuple[int, str], list[str]] = {}
        self.notices: list[str] = []
        self.ref_checks = 0
        self.ref_mismatches = 0
        self.discarded: set[str] = set()
        self.pending: list = []
        # an indexed file is read through windows around the definition positions only
        self.windowed = options.use_index and has_index(self.path)
        stale = stale_index(self.path) if self.windowed else None
        if stale is not None:
            self.windowed = False
            self.notices.append(f"the index {stale.name} is older than {self.label}; it was not used "
                                "(the whole file was read). Re-index the file (tabix -p vcf / bcftools index)")
        self._contigs: set[str] | None = None
        self._lengths: dict[str, int] | None = None
        self.build = GRCH38 if options.build == AUTO else options.build  # the build records are read on
        self._header = HeaderBuild(None)
        self._shown: str | None = None  # the build the records showed, when a first pass assumed the other
        self._index: LocusIndex | None = None
        self._first_notices = list(self.notices)
        self._plain_gt = True  # until a line shows otherwise: then htslib reads the file
        self._read_names: tuple[str, ...] | None = None  # samples read, when htslib decodes fewer (plain GT)
        self._gt_lines: GtLines | None = None

    @property
    def index(self) -> LocusIndex:
        """Where the genes' definition positions are on the build read (built on first use: reading sample
        names needs none)."""
        if self._index is None or self._index.build != self.build:
            self._index = locus_index(self.kb, self.genes, self.build)
        return self._index

    @property
    def read_plain_gt(self) -> bool:
        """Did the last pass read the GT columns with numpy (gt_text) rather than through htslib?"""
        return self._read_names is not None

    def pick_samples(self, samples) -> list:
        """The items of a per-sample sequence that this reader reads."""
        return [x for a, b in self.sample_ranges for x in samples[a:b]]

    def _htslib(self, msg: str) -> str:
        """An htslib message as ours: without its prefix, naming the file as we name it."""
        return clean_htslib(msg).replace(str(self.path), self.label)

    # ---- warnings -----------------------------------------------------------------------
    def _warn(self, key: str, msg: str) -> None:
        lst = self.position_warnings.setdefault(key, [])
        if msg not in lst:
            lst.append(msg)

    def _warn_samples(self, idx: np.ndarray, key: str, msg_for, by: np.ndarray | None = None) -> None:
        """Warn each flagged sample with `msg_for(sample)`. `by`: per-sample values that fix the message (e.g.
        the GT): the text is then made once per distinct value (a cohort's chrX no-calls are thousands)."""
        if not self.options.sample_warnings or not idx.any():
            return
        rows = np.flatnonzero(idx)
        if by is None:
            msgs = [msg_for(int(si)) for si in rows]
        else:
            values = by[rows].reshape(len(rows), -1)
            _, first, inverse = np.unique(values, axis=0, return_index=True, return_inverse=True)
            texts = [msg_for(int(rows[f])) for f in first]
            msgs = [texts[k] for k in inverse.reshape(-1)]
        for si, m in zip(rows.tolist(), msgs):
            lst = self.sample_warnings.setdefault((si, key), [])
            if m not in lst:
                lst.append(m)

    # ---- main -----------------------------------------------------------------------------
    def read(self) -> GenotypeSet:
        """All samples at once."""
        return next(self.chunks(None))

    def chunks(self, chunk_size: int | None):
        """GenotypeSets for consecutive sample chunks, from a single pass over the file.

        The pass keeps only records at (or representing) definition positions; with many samples
        their genotypes are spilled to disk, so memory is bounded by the chunk size.
        """
        ext = self.extract()
        n = len(ext.samples)
        step = n if not chunk_size else max(1, chunk_size)
        try:
            for start in range(0, max(n, 1), max(step, 1)):
                yield self.process(ext, slice(start, min(n, start + step)))
        finally:
            ext.close()

    def sample_names(self) -> tuple[str, ...]:
        """Sample names from the header (with the same checks and errors as a full read)."""
        precheck(self.path, self.label)
        with captured_stderr(self.label) as htslib:
            try:
                vcf = VCF(str(self.path), gts012=False, lazy=True)
                names = tuple(vcf.samples)
                vcf.close()
            except Exception as exc:
                vcf, err = None, str(exc)
        if vcf is None:
            errors = [m for m in htslib if m.startswith("[E::")]
            detail = self._htslib(errors[0] if errors else err)
            dup = re.search(r"Duplicated sample name '([^']*)'", detail)
            if dup:
                raise InputFileError(f"{self.label}: duplicate sample name(s) in #CHROM line: {dup.group(1)}")
            raise InputFileError(f"{self.label}: cannot be read as VCF/BCF ({detail})")
        return names

    def extract(self) -> Extract:
        try:
            return self._extract_or_fall_back()
        except _Reread as again:
            # a streamed pass learns the build only from the records: read them again on the build they show
            self._shown = again.build
            self._restart()
            return self._extract_or_fall_back()

    def _restart(self) -> None:
        self.notices = list(self._first_notices)
        self.position_warnings = {}

    def _extract_or_fall_back(self) -> Extract:
        try:
            return self._extract_file()
        except (NotPlainGt, InputFileError):
            if not self.read_plain_gt:
                raise
            # a line that is not plain GT text, or a problem: htslib reads the file, decoding every sample (it
            # words some problems differently when it decodes one sample of the line)
            self._plain_gt = False
            self._restart()
            return self._extract_file()

    def _use_plain_gt(self, vcf: VCF, n_read: int) -> bool:
        """Read GT columns with numpy (gt_text)? Text VCFs read from the start whose header leaves GT the only
        FORMAT key the reader uses (no GP or DS), with enough samples read for it to matter."""
        wanted = self.options.plain_gt
        if wanted is False or not self._plain_gt or self.windowed or is_bcf(self.path):
            return False
        if wanted is None and n_read < PLAIN_GT_MIN_SAMPLES:
            return False
        return re.search(r"^##FORMAT=<ID=(GP|DS),", vcf.raw_header, re.M) is None

    def _extract_file(self) -> Extract:
        self._read_names = None
        precheck(self.path, self.label)
        sha = file_sha256(self.path) if self.with_sha256 else ""
        record_error: _RecordError | None = None
        ext = None
        with captured_stderr(self.label) as htslib:
            try:
                vcf = VCF(str(self.path), gts012=False, lazy=True)
                self._line_samples = len(vcf.samples)  # a line holds every sample's column, decoded or not
                names = list(vcf.samples) if self.sample_ranges is None else self.pick_samples(vcf.samples)
                if names and self._use_plain_gt(vcf, len(names)):
                    # numpy reads the GT columns; htslib checks each record's fixed columns and first sample
                    self._read_names = tuple(names)
                    vcf = self._fixed_columns_reader(vcf, names, htslib)
                else:
                    if self.sample_ranges is not None:
                        # htslib then decodes only these samples' fields (set on the open file: its header's
                        # warnings are not made twice)
                        vcf.set_samples(names)
                    vcf.set_threads(1)  # decompress in a second thread while this one parses records
            except NotPlainGt:
                raise
            except Exception as exc:  # cyvcf2 raises OSError/Exception with htslib context
                vcf = None
                err = str(exc)
            if vcf is not None:
                try:
                    ext = self._extract(vcf, sha, htslib)
                except _RecordError as exc:
                    record_error = exc
                finally:
                    vcf.close()
        errors = [m for m in htslib if m.startswith("[E::")]
        if record_error is not None:
            detail = record_error.detail if record_error.described else (
                self._htslib(errors[0]) if errors else record_error.detail)
            raise InputFileError(f"{self.label}: {record_error.where}: malformed record ({detail})")
        if vcf is None:
            detail = self._htslib(errors[0] if errors else err)
            dup = re.search(r"Duplicated sample name '([^']*)'", detail)
            if dup:
                raise InputFileError(f"{self.label}: duplicate sample name(s) in #CHROM line: {dup.group(1)}")
            raise InputFileError(f"{self.label}: cannot be read as VCF/BCF ({detail})")
        if errors:
            ext.close()
            if self.windowed and re.search(r"TBX|index|idx", errors[0], re.I):
                raise InputFileError(f"{self.label}: its index does not match the file ({self._htslib(errors[0])}); "
                                     "re-index it (tabix -p vcf / bcftools index) or remove the index")
            raise InputFileError(f"{self.label}: {self._htslib(errors[0])}")
        for m in htslib:
            if m.startswith("[W::") and "is not defined in the header" not in m:
                ext.notices.append(f"htslib: {self._htslib(m)}")
        return ext

    def _fixed_columns_reader(self, vcf: VCF, names: list, htslib) -> VCF:
        """What htslib reads records from when numpy reads the GT columns: a copy of the text cut after the first
        sample (gt_text.fixed_columns) in place of the open file `vcf` or, without one, `vcf` decoding one sample."""
        try:
            fd = fixed_columns(self.path)
        except BaseException:
            vcf.close()
            raise
        if fd is None:
            vcf.set_samples(names[:1])
            vcf.set_threads(1)
            return vcf
        try:
            vcf.close()
            with htslib.muted():  # the same header once more: its messages were taken from the file itself
                return VCF(f"/dev/fd/{fd}", gts012=False, lazy=True)
        finally:
            # htslib holds its own descriptor of the memory file; if it could not open it (not expected), the
            # read fails as unreadable and is read again by htslib from the file itself (_extract_or_fall_back)
            os.close(fd)

    def _contig(self, vcf: VCF, chrom: str) -> str | None:
        """The file's own name for a chromosome (chr10 or 10), or None when the file lacks it."""
        if self._contigs is None:
            self._contigs = set(vcf.seqnames)
        bare = chrom.removeprefix("chr")
        for name in (chrom, bare, "MT" if bare == "M" else None):
            if name and name in self._contigs:
                return name
        return None

    def _chromosomes(self) -> list[str]:
        wanted = sorted(self.index.chroms)
        if self.regions is None:
            return wanted
        asked = {normalise_chrom(r) for r in self.regions}
        return [c for c in wanted if c in asked]

    def _records(self, vcf: VCF, live: dict[str, list[tuple[int, int]]] | None = None):
        """All records; with an index, only those overlapping windows around definition positions, and
        only windows within `live` spans (chromosome -> spans of genes the file has records near).

        A record overlapping two windows comes back from both queries; it is kept the first time
        (in the second window it starts at or before the previous window's end).
        """
        if not self.windowed:
            yield from vcf
            return
        for chrom in self._chromosomes():
            name = self._contig(vcf, chrom)
            spans = (live or {}).get(chrom)
            if name is None or not spans:
                continue
            prev_end = 0
            for lo, hi in self.index.windows[chrom]:
                if not any(a <= hi and lo <= b for a, b in spans):
                    continue  # no record near any gene this window serves: no query
                for rec in vcf(f"{name}:{lo}-{hi}"):
                    if rec.POS > prev_end:
                        yield rec
                prev_end = hi

    def chromosomes_with_records(self) -> list[str] | None:
        """Definition chromosomes holding at least one record (index queries); None without an index."""
        if not self.windowed:
            return None
        with captured_stderr():
            try:
                vcf = VCF(str(self.path), gts012=False, lazy=True)
            except Exception:
                return None  # the full read reports the problem
            try:
                return [c for c in self._chromosomes() if self._probe(vcf, c)]
            finally:
                vcf.close()

    def _probe(self, vcf: VCF, chrom: str, lo: int | None = None, hi: int | None = None) -> bool:
        """Does the file hold any record in this chromosome (or interval)? One index query."""
        name = self._contig(vcf, chrom)
        if name is None:
            return False
        region = name if lo is None else f"{name}:{max(1, lo)}-{hi}"
        return next(iter(vcf(region)), None) is not None

    def _extract(self, vcf: VCF, sha: str, htslib) -> Extract:
        self._htslib_messages = htslib
        samples = self._sample_names = self._read_names or tuple(vcf.samples)
        if not samples:
            raise InputFileError(f"{self.label}: no sample columns after FORMAT; permed needs genotypes")
        dups = sorted(s for s, k in Counter(samples).items() if k > 1)
        if dups:
            raise InputFileError(f"{self.label}: duplicate sample name(s) in #CHROM line: {', '.join(dups)}")
        header = vcf.raw_header
        # what the file declares (htslib adds keys it meets to its own copy of the header as it reads)
        self._declared_format = set(re.findall(r"^##FORMAT=<ID=([^,>]+)", header, re.M))
        for kind, key, vtype in re.findall(r"^##(INFO|FORMAT)=<ID=([^,>]+),[^>]*?Type=([^,>]*)", header, re.M):
            if vtype not in VCF_TYPES:  # htslib keeps the line; decoding the field later fails in cyvcf2
                raise InputFileError(f"{self.label}: header: {kind} {key} has Type={vtype!r}; a VCF header "
                                     f"declares one of {', '.join(VCF_TYPES)}")
        # imputed data: genotype probabilities and dosages, read where GT is absent and, in an imputed file (one
        # that declares an imputation quality), checked where it is not. A sequencing caller's GP beside its GT
        # (e.g. DRAGEN's phred-scaled posteriors) is not used: its GT is read as PharmCAT reads it
        gp_line = re.search(r"^##FORMAT=<ID=GP,[^\n]*", header, re.M)
        self._gp = gp_line is not None
        self._gp_phred = bool(gp_line and re.search(r"phred", gp_line.group(0), re.I))
        self._ds = re.search(r"^##FORMAT=<ID=DS,", header, re.M) is not None
        self._quality_keys = [k for k in QUALITY_KEYS if re.search(rf"^##INFO=<ID={k},", header, re.M)]
        has_gt = re.search(r"^##FORMAT=<ID=GT,", header, re.M) is not None
        if not has_gt and not (self._gp or self._ds):
            raise InputFileError(f"{self.label}: header defines no GT FORMAT field (nor GP or DS); genotypes are "
                                 "required")
        self._probabilities_check_gt = bool(self._quality_keys)
        if (self._gp or self._ds) and (not has_gt or self._probabilities_check_gt):
            self.notices.append(self._probability_notice)
        self._choose_build(header)
        if self.windowed:
            # windows cover the build's own positions only: judge the build from index queries at both builds'
            # definition positions first (the same for every unit of the file)
            evidence = DataEvidence()
            other = GRCH37 if self.build == GRCH38 else GRCH38
            self._probe_evidence(vcf, other, evidence)
            if evidence.ref[other]:
                # only records agreeing with the other build's bases can change the build: then weigh this one's
                self._probe_evidence(vcf, self.build, evidence)
            self.build = self._decide_build(evidence)
            self._check_kb_build()
        self.ad_defined = re.search(r"^##FORMAT=<ID=AD,[^>]*Number=R", header, re.M) is not None
        self.ad_present = re.search(r"^##FORMAT=<ID=AD,", header, re.M) is not None
        self.ad_undeclared = not self.ad_present
        if self.ad_present and not self.ad_defined:
            m = re.search(r"^##FORMAT=<ID=AD,[^>]*Number=([^,>]+)", header, re.M)
            if m and m.group(1) != ".":
                self._warn("VCF", f"FORMAT header for AD has Number={m.group(1)}, expected R; AD is ignored")
        n = len(samples)
        store = RecordStore(n)
        state = _PassState()
        chroms_seen, near_genes = state.chroms_seen, state.near_genes
        spans = self.index.gene_spans
        live = None
        if self.windowed:
            # what a full pass would see, from one index query per chromosome and per gene: chromosomes
            # with records, genes with records near them; only those genes' windows (and positions
            # reported for context) are then queried
            chroms_seen.update(c for c in self._chromosomes() if self._probe(vcf, c))
            near_genes.update(g for c, lst in spans.items() if c in chroms_seen for g, lo, hi in lst
                              if self._probe(vcf, c, lo, hi))
            live = {c: [(lo, hi) for g, lo, hi in lst if g in near_genes]
                    + [(p, p) for p in self.index.context_positions.get(c, ())] for c, lst in spans.items()}
        records = self._records(vcf, live)
        # line numbers exist for text VCFs read from the start; BCF and region reads name the record
        text_lines = not self.windowed and not is_bcf(self.path)
        # counted in the file: htslib's header gains lines it adds itself (e.g. the PASS filter)
        header_lines = header_line_count(self.path) if text_lines else 0
        with ExitStack() as stack:
            if self._read_names is not None:
                rows = None if self.sample_ranges is None else np.concatenate(
                    [np.arange(a, b) for a, b in self.sample_ranges])  # line columns of the samples read
                self._gt_lines = stack.enter_context(GtLines(self.path, header_lines, self._line_samples, rows))
            try:
                self._read_records(vcf, records, store, state, htslib, text_lines, header_lines)
            except BaseException:
                store.close()
                raise
            finally:
                self._gt_lines = None
        if not self.windowed:
            build = self._decide_build(state.evidence)
            if build != self.build:
                store.close()
                raise _Reread(build)
        if self.build == GRCH37:
            self.notices.insert(0, self._grch37_notice)
        return Extract(self.path, sha, samples, store, state.chroms_seen, state.near_genes, self.notices)

    def _read_records(self, vcf: VCF, records, store: RecordStore, state: _PassState, htslib, text_lines: bool,
                      header_lines: int) -> None:
        rec_no = 0
        while True:
            try:
                rec = next(records)
            except StopIteration:
                break
            except Exception as exc:  # htslib could not parse the next record
                where = _line_or_record(header_lines + rec_no + 1 if text_lines else None, rec_no + 1)
                detail = describe_line(self.path, header_lines + rec_no + 1, self._line_samples) if text_lines else None
                raise _RecordError(where, detail or str(exc), described=detail is not None) from None
            rec_no += 1
            if self._gt_lines is not None:
                self._gt_lines.advance()
            line = header_lines + rec_no if text_lines else None
            parse_errors = htslib.new_errors()
            if parse_errors:  # the record is half-filled: describe it without touching it
                where = _line_or_record(line, rec_no)
                detail = describe_line(self.path, line, self._line_samples) if line is not None else None
                raise _RecordError(where, detail or self._htslib(parse_errors[0]), described=True)
            try:
                located = self._locate(rec, line, rec_no)
                if located is None:
                    continue
                if self._gt_lines is not None:
                    # every record's calls are read (and checked, as htslib checks them), used or not
                    self._gt_lines.parse(rec.CHROM, located[1])
                if not self.windowed:
                    self._count_build_evidence(state.evidence, located, rec)
                if located[0] not in self.index.chroms:
                    continue
                chrom, pos = located
                self._keep(vcf, rec, store, line, chrom, pos, state)
            except UnicodeDecodeError as exc:
                raise InputFileError(f"{self.label}: {_line_or_record(line, rec_no)}: a field is not UTF-8 text "
                                     f"(byte 0x{exc.object[exc.start]:02x})") from None

    def _locate(self, rec, line: int | None, rec_no: int) -> tuple[str, int] | None:
        """A record's chromosome (chr-prefixed) and position, refusing what htslib lets through; None for a
        comment line among the records (htslib reads `# ...` there as a record; PharmCAT skips it)."""
        raw = rec.CHROM
        if raw.startswith("#"):
            return None
        if not raw:
            detail = describe_line(self.path, line, self._line_samples) if line is not None else None
            raise InputFileError(f"{self.label}: {_line_or_record(line, rec_no)}: "
                                 f"{detail if detail and 'NUL' in detail else 'CHROM is empty'}")
        pos = rec.POS
        if pos < 1 or rec.start + 1 != pos:  # 0, negative, or beyond 32 bits (wrapped by cyvcf2)
            raise InputFileError(f"{self.label}: {_line_or_record(line, rec_no)} ({raw}): POS {rec.start + 1} is "
                                 f"outside 1..{MAX_POS}")
        if rec.end <= rec.start and str(rec).split("\t", 4)[3:4] == ["."]:
            # a line cut after POS: htslib hands over a record without alleles, and reading REF would crash
            detail = describe_line(self.path, line, self._line_samples) if line is not None else None
            raise InputFileError(f"{self.label}: {_line_or_record(line, rec_no)}: malformed record "
                                 f"({detail or 'no REF allele'})")
        return normalise_chrom(raw), pos

    def _contig_length(self, vcf: VCF, raw: str, chrom: str) -> int | None:
        """The header's length for a contig, else the length on the build read."""
        if self._lengths is None:
            try:
                self._lengths = {n: int(x) for n, x in zip(vcf.seqnames, vcf.seqlens) if int(x) > 0}
            except Exception:  # a header without contig lengths
                self._lengths = {}
        lengths = GRCH37_LENGTHS if self.build == GRCH37 else GRCH38_LENGTHS
        return self._lengths.get(raw) or lengths.get(chrom.removeprefix("chr"))

    def _keep(self, vcf: VCF, rec, store: RecordStore, line: int | None, chrom: str, pos: int, state) -> None:
        """Store a record at (or representing) definition positions, with its genotypes."""
        spans = self.index.gene_spans
        state.chroms_seen.add(chrom)
        for g, lo, hi in spans.get(chrom, ()):
            if lo <= pos <= hi:
                state.near_genes.add(g)
        last = state.last
        if last is not None and not state.unsorted_noted:
            if (chrom == last[0] and pos < last[1]) or (chrom != last[0] and chrom in state.chrom_order):
                self.notices.append(
                    f"records are not sorted ({_where(line, chrom, pos)} comes after {last[0]}:{last[1]}); "
                    "permed reads the whole file, so calls are unaffected"
                )
                state.unsorted_noted = True
        if not state.chrom_order or state.chrom_order[-1] != chrom:
            state.chrom_order.append(chrom)
        state.last = (chrom, pos)
        ref = rec.REF
        alts = rec.ALT
        end = pos + len(ref) - 1
        block_end = None
        if alts and all(a.startswith("<") for a in alts) or not alts:
            info_end = rec.INFO.get("END")
            if info_end is not None:
                block_end = self._block_end(vcf, rec, info_end, line, chrom, pos)
        exact = self.index.exact.get((chrom, pos), ())
        near: list = []
        if block_end is not None and block_end > pos:
            near = self.index.covered(chrom, pos + 1, block_end)
        elif not exact and (len(ref) > 1 or any(len(a) != 1 for a in alts if not a.startswith("<"))):
            # not at a definition position: may be another representation of an indel or MNP locus
            near = self.index.near(chrom, pos, end)
        extra = self.index.extra.get((chrom, pos), ())
        if not exact and not near and not extra:
            return
        for allele in (ref, *alts):
            if not _ALLELE_OK.match(allele):
                raise InputFileError(f"{self.label}: {_where(line, chrom, pos)}: invalid allele {allele!r}")
        if self.options.require_pass and rec.FILTER not in (None, "PASS"):
            if exact:
                self._warn(self._key(chrom, *exact[0]), f"Ignored: FILTER is {rec.FILTER} and --require-pass was given")
            return
        self._check_format_keys(rec, line, chrom, pos)
        if self._gt_lines is not None:
            try:
                rec.genotype  # noqa: B018 - htslib unpacks the record's one sample: its warnings as on the other path
            except Exception:
                raise NotPlainGt from None  # the other path says what it says about this record
            alleles, phased = self._gt_lines.calls
            gts = (self._check_alleles(alleles, line, chrom, pos, 1 + len(alts)), phased)
        else:
            gts = self._genotypes(rec, line, chrom, pos, 1 + len(alts))
        reasons = None
        if (self._gp or self._ds) and (gts is None or self._probabilities_check_gt):
            gts, reasons = self._from_probabilities(rec, gts, line, chrom, pos, 1 + len(alts))
        try:
            store.add(
                StoredRecord(line, chrom, pos, ref, list(alts), rec.FILTER, block_end, list(exact), list(near),
                             list(extra), self._low_quality(rec, line, chrom, pos)),
                gts, _format(rec, "PS"), _format(rec, "AD") if (self.ad_defined or self.ad_undeclared) else None,
                reasons,
            )
        except FieldError as exc:
            raise InputFileError(f"{self.label}: {_where(line, chrom, pos)}: {exc}") from None

    def _key(self, chrom: str, gene: str, li: int) -> str:
        """How warnings name a definition position: chrom:pos on GRCh38, whichever build the file is on."""
        return f"{chrom}:{self.index.site(gene, li).position38}"

    def _count_build_evidence(self, evidence: DataEvidence, located: tuple[str, int], rec) -> None:
        for build, known in evidence_sites(self.kb).items():
            site = known.get(located)
            if site is not None:
                evidence.add(build, *located, site, rec.REF, rec.ALT)

    def _probe_evidence(self, vcf: VCF, build: str, evidence: DataEvidence) -> None:
        """Build evidence of an indexed file from index queries around every KB definition SNV of a build
        (windows merged as for reading: one query serves neighbouring positions)."""
        known = evidence_sites(self.kb)[build]
        by_chrom: dict[str, list[int]] = {}
        for chrom, pos in known:
            by_chrom.setdefault(chrom, []).append(pos)
        for chrom, positions in sorted(by_chrom.items()):
            name = self._contig(vcf, chrom)
            if name is None:
                continue
            positions.sort()
            lo = hi = positions[0]
            for p in [*positions[1:], None]:
                if p is not None and p <= hi + WINDOW_GAP:
                    hi = p
                    continue
                for rec in vcf(f"{name}:{lo}-{hi}"):
                    if (chrom, rec.POS) in known:
                        evidence.add(build, chrom, rec.POS, known[(chrom, rec.POS)], rec.REF, rec.ALT)
                if p is not None:
                    lo = hi = p

    def _choose_build(self, header: str) -> None:
        """The build to read on from the option and the header; an explicit --build the header contradicts is
        refused."""
        self._header = hb = header_build(self.label, header)
        asked = self.options.build
        if asked != AUTO and hb.build and hb.build != asked:
            raise InputFileError(f"{self.label}: {hb.reason}: the file looks like {hb.build}, but --build {asked} "
                                 f"was given (give --build {hb.build} or auto)")
        self.build = asked if asked != AUTO else self._shown or hb.build or GRCH38
        self._check_kb_build()

    def _decide_build(self, evidence: DataEvidence) -> str:
        """The build to read on, given what the records show: an explicit --build or a header they contradict
        is refused, naming both sides."""
        shown = evidence.build()
        asked, hb = self.options.build, self._header
        if shown is None:
            return self.build
        said = f"{self.label}: {evidence.describe(shown)}: the file looks like {shown} coordinates"
        if asked != AUTO and shown != asked:
            hint = ("read it with --build GRCh37 (or auto)" if shown == GRCH37
                    else "read it with --build GRCh38 (or auto)")
            raise InputFileError(f"{said}, but --build {asked} was given; {hint}")
        if asked == AUTO and hb.build and shown != hb.build:
            raise InputFileError(f"{said}, but {hb.reason}: the header and the records disagree on the genome "
                                 "build; fix the header, or give --build")
        return shown

    def _check_kb_build(self) -> None:
        if self.build == GRCH37 and not has_grch37(self.kb):
            raise InputFileError(f"{self.label}: the file is on GRCh37, but the knowledge base has no GRCh37 "
                                 "positions (build it with --pypgx); lift the file over to GRCh38 or use another KB")

    @property
    def _grch37_notice(self) -> str:
        why = ("--build GRCh37" if self.options.build == GRCH37
               else f"from the header: {self._header.reason}" if self._header.build == GRCH37
               else "from the records: known variants sit at their GRCh37 positions")
        return (f"read as GRCh37 ({why}): records were matched at the GRCh37 positions of the definition "
                "positions and reported at their GRCh38 positions (mapping: PyPGx's variant table, and SNVs "
                "interpolated between its positions, in the knowledge base; an interpolated position is read "
                "only from a record, never filled as reference); definition positions without a GRCh37 position "
                "are missing (see each gene's warnings)")

    @property
    def _probability_notice(self) -> str:
        fields = " and ".join(f for f, on in (("GP", self._gp), ("DS", self._ds)) if on)
        quality = ("/".join(self._quality_keys) + f" below --min-info {self.options.min_info:g} makes a position "
                   "missing for every sample") if self._quality_keys else "no imputation quality (R2/DR2/INFO) declared"
        return (f"genotype probabilities/dosages ({fields}) read: a call needs the most likely genotype's probability "
                f">= --min-gp {self.options.min_gp:g} (DS: within {ds_tolerance(self.options.min_gp):g} of 0, 1 or "
                f"2), else the position is missing for that sample; a GT that disagrees with them is missing too; "
                f"{quality}")

    def _from_probabilities(self, rec, gts, line: int | None, chrom: str, pos: int, n_alleles: int):
        """GT checked against (or, where absent, made from) GP, else DS: (gts, per-sample reasons or None)."""
        gp = _format(rec, "GP") if self._gp else None
        ds = _format(rec, "DS") if self._ds else None
        if gp is None and ds is None:
            return gts, None
        where = f"{self.label}: {_where(line, chrom, pos)}"
        n = (gp if gp is not None else ds).shape[0]
        called = np.full((n, 2), MISSING_ALLELE, dtype=np.int16)
        reasons = np.zeros(n, dtype=np.int8)
        has = np.zeros(n, dtype=bool)
        if gp is not None:
            gp = np.asarray(gp, dtype=np.float64).reshape(n, -1)
            if self._gp_phred:  # declared phred-scaled (as VCF 4.3 defines GP): back to probabilities, whose
                # rounding in the file can leave their sum off 1
                with np.errstate(invalid="ignore", divide="ignore"):  # a sample without GP stays NaN
                    gp = np.power(10.0, -gp / 10.0)
                    gp /= np.nansum(gp, axis=1, keepdims=True)
            width = n_genotypes(n_alleles, 2)
            if gp.shape[1] < n_alleles or gp.shape[1] > width:
                raise InputFileError(f"{where}: GP has {gp.shape[1]} values per sample; {n_alleles} alleles need "
                                     f"{width} (diploid) or {n_alleles} (haploid)")
            bad = np.flatnonzero(((gp < 0) | (gp > 1.0001)).any(axis=1)
                                 | (np.abs(np.nansum(gp, axis=1) - 1) > 0.05) & ~np.isnan(gp).all(axis=1))
            if len(bad):
                si = int(bad[0])
                raise InputFileError(f"{where}: GP of sample {self._sample_names[si]!r} "
                                     f"({','.join(f'{x:g}' for x in gp[si] if not np.isnan(x))}) are not probabilities "
                                     "adding up to 1 (GP is read as phred-scaled when the header's GP Description "
                                     "says phred)")
            has = ~np.isnan(gp).all(axis=1)
            called, reasons = call_from_gp(gp, n_alleles, self.options.min_gp)
        if ds is not None:
            ds = np.asarray(ds, dtype=np.float64).reshape(n, -1)
            if ds.shape[1] != n_alleles - 1:
                raise InputFileError(f"{where}: DS has {ds.shape[1]} values per sample; the record has "
                                     f"{n_alleles - 1} ALT allele(s)")
            use = ~has & ~np.isnan(ds).any(axis=1)
            c2, r2 = call_from_ds(ds, self.options.min_gp)
            called[use], reasons[use] = c2[use], r2[use]
            has |= use
        return check_calls(gts, called, reasons, has)

    def _low_quality(self, rec, line: int | None, chrom: str, pos: int) -> str | None:
        """The record's imputation quality when below --min-info (e.g. "R2=0.42"), else None."""
        for key in self._quality_keys:
            value = rec.INFO.get(key)
            if value is None:
                continue
            try:
                values = [float(v) for v in (value if isinstance(value, tuple) else (value,))]
            except (TypeError, ValueError):
                raise InputFileError(f"{self.label}: {_where(line, chrom, pos)}: INFO {key}={value!r} is not a "
                                     "number") from None
            low = min(values)
            if low < self.options.min_info:
                return f"{key}={low:g}"
        return None

    def _check_format_keys(self, rec, line: int | None, chrom: str, pos: int) -> None:
        """A FORMAT key the header does not declare, placed before GT, makes htslib end the process when GT is
        read (it guesses the type as text and then cannot decode the genotypes): refuse the record first."""
        if not self._htslib_messages.undeclared_format:
            return  # the usual file: every key declared (rec.FORMAT itself would crash a lazily read record)
        columns = str(rec).split("\t", 9)
        keys = columns[8].split(":") if len(columns) > 8 else []
        if not keys or keys[0] == "GT" or "GT" not in keys:
            return
        for key in keys[: keys.index("GT")]:
            if key not in self._declared_format:
                raise InputFileError(f"{self.label}: {_where(line, chrom, pos)}: FORMAT key {key!r} is not declared "
                                     f"in the header (add a ##FORMAT=<ID={key},...> line) and comes before GT")

    def _block_end(self, vcf: VCF, rec, info_end, line: int | None, chrom: str, pos: int) -> int:
        """INFO END of a reference block or symbolic record, refused when it cannot be true."""
        where = f"{self.label}: {_where(line, chrom, pos)}: INFO END={info_end!r}"
        try:
            block_end = int(info_end)
        except (TypeError, ValueError):
            raise InputFileError(f"{where} is not an integer") from None
        if block_end < pos:
            raise InputFileError(f"{where} is before POS {pos}")
        length = self._contig_length(vcf, rec.CHROM, chrom)
        if length and block_end > length:
            raise InputFileError(f"{where} is beyond the end of {rec.CHROM} ({length:,} bp)")
        return block_end

    def process(self, ext: Extract, chunk: slice) -> GenotypeSet:
        """Second pass: turn the kept records into genotype arrays for one chunk of samples."""
        samples = ext.samples[chunk]
        self.discarded = set()
        self.pending = []
        self.sample_warnings = {}
        self.ref_checks = self.ref_mismatches = 0
        arrays = {g: _GeneArrays(self.kb.genes[g], len(samples), self.index.sites[g]) for g in self.genes}
        self.low_quality: dict[str, list[str]] = {}
        for rec, gts, ps, ad, why in ext.store.records(chunk):
            self._record(rec, gts, ps, ad, arrays, why)
        self._apply_pending()
        for gene, where in self.low_quality.items():
            self._warn(gene, f"{gene}: imputation quality below --min-info {self.options.min_info:g} at "
                             f"{len(where)} definition position(s) ({', '.join(where)}): missing for every sample")
        check_build_mismatches(self.label, self.ref_checks, self.ref_mismatches, self.build)
        chroms_seen, near_genes, sha = ext.chroms_seen, ext.near_genes, ext.sha256
        genes = {}
        for g, arr in arrays.items():
            # fill only genes on chromosomes this file has records for: a chr10-only file says nothing of chr19
            if self.options.missing_to_ref and arr.gdef.chromosome in chroms_seen:
                # a position without a place on the file's build was never looked at: not reference, missing
                arr.status[:, arr.unmapped] = UNUSABLE
                self._fill_reference(arr)
                if g not in near_genes:
                    arr.remote_fill = True
            genes[g] = GeneGenotypes(
                gene=g, definition=arr.gdef, alleles=arr.alleles, gt=arr.gt, status=arr.status,
                phased=arr.phased, phase_set=arr.phase_set, origin=arr.origin,
                extra=[arr.extra[k] for k in sorted(arr.extra)], remote_fill=arr.remote_fill,
                build=self.build, unmapped=len(arr.unmapped),
            )
        notices = list(self.notices)
        if self.options.missing_to_ref:
            notices.append("--missing-to-ref: positions absent from the file were read as homozygous reference")
        return GenotypeSet(
            path=str(self.path), sha256=sha, samples=samples, genes=genes,
            position_warnings=dict(self.position_warnings), sample_warnings=self.sample_warnings,
            notices=notices, missing_to_ref=self.options.missing_to_ref,
        )

    # ---- one record ------------------------------------------------------------------------
    def _genotypes(self, rec, line: int, chrom: str, pos: int, n_alleles: int):
        try:
            g = rec.genotype
        except Exception:  # cyvcf2 cannot decode GT for this record (e.g. its FORMAT has no GT): no genotype
            return None
        if g is None:
            return None
        arr = g.array()
        if arr.shape[1] < 2:
            return None
        if arr.shape[1] > 3:
            # a third called allele (0/1/1) would otherwise be dropped silently; -2 pads shorter genotypes
            polyploid = np.flatnonzero((arr[:, 2:-1] >= 0).any(axis=1))
            if len(polyploid):
                si = int(polyploid[0])
                gt = ("|" if arr[si, -1] else "/").join("." if x == -1 else str(x) for x in arr[si, :-1] if x != -2)
                raise InputFileError(
                    f"{self.label}: {_where(line, chrom, pos)}: GT {gt} of sample {self._sample_names[si]!r} has "
                    f"{len(gt.replace('|', '/').split('/'))} alleles; permed reads diploid and haploid genotypes only")
        alleles = arr[:, :-1].astype(np.int16)
        phased = arr[:, -1].astype(bool)
        if alleles.shape[1] == 1:
            alleles = np.concatenate([alleles, np.full((alleles.shape[0], 1), NO_ALLELE, np.int16)], axis=1)
            # a call with one allele has no phase to tell; cyvcf2's flag for it, in a record of haploid calls only,
            # is the next sample's bit (and memory past the last sample's): read as phased, as in mixed records
            phased[:] = True
        return self._check_alleles(alleles[:, :2], line, chrom, pos, n_alleles), phased

    def _check_alleles(self, alleles: np.ndarray, line: int | None, chrom: str, pos: int, n_alleles: int
                       ) -> np.ndarray:
        if alleles.max(initial=-1) >= n_alleles:
            bad = int(alleles.max())
            raise InputFileError(
                f"{self.label}: {_where(line, chrom, pos)}: GT allele {bad} but the record has only "
                f"{n_alleles - 1} ALT allele(s)"
            )
        return alleles

    def _record(self, rec: StoredRecord, gts, ps, ad, arrays, why=None) -> None:
        chrom, pos, ref, alts, block_end = rec.chrom, rec.pos, rec.ref, rec.alts, rec.block_end
        exact, near, extra = rec.exact, rec.near, rec.extra
        if rec.low_quality is not None:
            self._unusable_quality(rec, arrays)
            return
        for g, xi in extra:
            self._record_extra(arrays[g], xi, gts, ref, alts)
        is_block = block_end is not None and block_end > pos
        if is_block:
            problem = _implausible_block(ref, self.index.genes_overlapping(chrom, pos, block_end))
            if problem:
                self._reject_block(arrays, chrom, pos, block_end, exact, near, problem)
                return
        filters = set(str(rec.filter).split(";")) if rec.filter else set()
        for g, li in exact:
            arr = arrays[g]
            locus = arr.loci[li]
            key = f"{chrom}:{locus.position38}"
            if arr.status.shape[0] and (arr.status[:, li] == CALLED).all():
                # PharmCAT: a further entry for a position already read is a duplicate (first one wins);
                # entries its preprocessor split off (PCATx filters) are expected and skipped quietly
                if filters & PREPROCESSOR_FILTERS:
                    continue
                first = arr.first_alts.get(li)
                # the same record again goes on to _commit, which checks the two agree; another record for
                # a position already read (a split record not in the definition's form): the first one wins
                if first != tuple(alts) and not (ref.upper() == locus.ref and first is not None):
                    self._warn(key, "Duplicate entry found in VCF; first valid entry trumps others.")
                    continue
            if is_block:
                if ref.upper() != locus.ref[0]:
                    self._ref_mismatch(key, ref, locus, arr, li)
                    continue
                mapping, origin = _block_mapping(locus, alts, self._build_prefix + chrom, pos, block_end)
            else:
                mapping = map_record(locus, pos, ref, list(alts))
                if mapping is None:
                    self._ref_mismatch(key, ref, locus, arr, li)
                    continue
                if locus.is_snv:
                    self.ref_checks += 1
                if mapping.exact:
                    # on GRCh37 the evidence names the record read, as the file has it
                    origin = "exact" if self.build == GRCH38 else f"{GRCH37} {chrom}:{pos}"
                    if "PCATxREF" in filters:
                        self._warn(key, "PharmCAT preprocessor detected REF mismatch (filter PCATxREF) but this "
                                        "does not match current data.")
                else:
                    origin = f"normalised from {self._build_prefix}{chrom}:{pos} {ref}>{','.join(alts)}"
                    self._warn(key, f"REF in VCF ({ref}) does not match the definition's REF ({locus.ref}); "
                                    "genotype read after normalising the representation")
            if gts is None:
                self._warn(key, "Ignoring: no genotype")
                self.discarded.add(key)
                continue
            calls = self._sample_calls(arr, li, locus, key, chrom, mapping, gts, ps, ad)
            if calls is not None:
                self._commit(arr, li, key, calls, origin, tuple(alts), rec.filter)
            if why is not None:
                self._unsure(arr, li, key, why)
        for g, li in near:
            arr = arrays[g]
            locus = arr.loci[li]
            if is_block:
                if not (pos <= locus.position and block_end >= locus.position + len(locus.ref) - 1):
                    continue
                if locus.interpolated:
                    # inside a reference block the base is the reference's, which is only assumed here
                    self._warn(f"{chrom}:{locus.position38}", f"gVCF reference block {self._build_prefix}{chrom}:"
                               f"{pos}-{block_end} not used: the GRCh37 position is interpolated and its reference "
                               "base unknown; the position is treated as missing")
                    continue
                mapping, origin = _block_mapping(locus, alts, self._build_prefix + chrom, pos, block_end)
            else:
                mapping = map_record(locus, pos, ref, list(alts))
                if mapping is None:
                    continue
                origin = f"normalised from {self._build_prefix}{chrom}:{pos} {ref}>{','.join(alts)}"
            if gts is None:
                continue
            key = f"{chrom}:{locus.position38}"
            calls = self._sample_calls(arr, li, locus, key, chrom, mapping, gts, ps, ad)
            if calls is not None:
                self.pending.append((arr, li, key, calls, origin))
            if why is not None:
                self._unsure(arr, li, key, why)

    def _unsure(self, arr: _GeneArrays, li: int, key: str, why: np.ndarray) -> None:
        """Samples whose probabilities or dosage were not sure enough: missing, never filled as reference."""
        unsure = (why > 0) & (arr.status[:, li] == ABSENT)
        if not unsure.any():
            return
        arr.status[unsure, li] = UNUSABLE
        self._warn_samples(unsure, key, lambda si: reason_text(int(why[si]), self.options.min_gp), by=why)

    def _unusable_quality(self, rec: StoredRecord, arrays) -> None:
        """A record whose imputation quality is below --min-info: its positions are missing for every sample
        (one warning per gene, naming the positions)."""
        for g, li in (*rec.exact, *rec.near):
            arr = arrays[g]
            locus = arr.loci[li]
            if (g, li) in rec.near and map_record(locus, rec.pos, rec.ref, list(rec.alts)) is None:
                continue
            arr.status[:, li] = UNUSABLE
            arr.gt[:, li, :] = MISSING_ALLELE
            where = f"{rec.chrom}:{locus.position38} {rec.low_quality}"
            lst = self.low_quality.setdefault(g, [])
            if where not in lst:
                lst.append(where)

    def _reject_block(self, arrays, chrom: str, pos: int, block_end: int, exact, near, problem: str) -> None:
        """Positions under an implausible reference block: missing (never filled as reference), with the reason."""
        for g, li in (*exact, *near):
            arr = arrays[g]
            locus = arr.loci[li]
            if not (pos <= locus.position and block_end >= locus.position + len(locus.ref) - 1):
                continue
            self._warn(f"{chrom}:{locus.position38}", f"gVCF reference block {self._build_prefix}{chrom}:{pos}-"
                                                       f"{block_end} not used: "
                                                     f"{problem}; the position is treated as missing")
            absent = arr.status[:, li] == ABSENT
            arr.status[absent, li] = UNUSABLE

    @property
    def _build_prefix(self) -> str:
        """Record positions named in reports are GRCh37 ones when the file is: say so."""
        return "" if self.build == GRCH38 else f"{GRCH37} "

    def _ref_mismatch(self, key: str, ref: str, locus: Site, arr: _GeneArrays, li: int) -> None:
        if locus.is_snv:
            self.ref_checks += 1
            self.ref_mismatches += 1
        self.discarded.add(key)
        msg = (f"Discarded genotype at this position because REF in VCF ({ref}) does not match "
               f"expected reference ({locus.ref})")
        if self.build == GRCH37:
            # e.g. a record lifted over without taking GRCh37's base as REF: its genotype says something, so
            # the position must not be filled as GRCh37's reference either
            arr.status[arr.status[:, li] == ABSENT, li] = UNUSABLE
            msg += f" on {GRCH37}; the position is treated as missing"
        self._warn(key, msg)

    def _sample_calls(self, arr: _GeneArrays, li: int, locus: Site, key: str, chrom: str,
                      mapping: AlleleMapping, gts, psf, ad):
        """Per-sample calls at one locus from one record: (usable mask, codes, phased, phase sets)."""
        g, phased = gts
        n = g.shape[0]
        # record allele index -> locus allele-table code; -3 = unusable (symbolic, N, '*', not this locus)
        codes: list[int] = []
        invalid: dict[int, str] = {}
        for ai, a in enumerate(mapping.alleles):
            if a is not None and (_VALID_BASES.match(a) or "@" in a):
                codes.append(arr.code(li, a.upper()))
                continue
            codes.append(-3)
            if a is None:
                invalid[ai] = "the allele does not describe this position"
            else:
                what = ("structural variation" if a.startswith("<") else "missing allele" if a == "*"
                        else "ambiguous allele" if "N" in a.upper() else "unknown base")
                invalid[ai] = f"{'REF' if ai == 0 else 'ALT'} uses {what} '{a}'"
        if codes[0] == -3:
            self._warn(key, f"Discarded genotype at this position because {invalid[0]}")
            self.discarded.add(key)
            return None
        code_arr = np.array(codes, dtype=np.int16)
        nonmissing = g >= 0
        sel = np.where(nonmissing, code_arr[np.maximum(g, 0)], 0)
        if invalid:  # record alleles that are unusable here: warn about those no sample carries
            carried = np.bincount(g[nonmissing].ravel(), minlength=len(codes))
            for ai, msg in invalid.items():
                if ai and not carried[ai] and mapping.exact and not mapping.alleles[ai].startswith("<"):
                    self._warn(key, msg)

        haploid_chrom = chrom in HAPLOID_CHROMOSOMES
        n_known = 1 + len(locus.alts)
        plain_alts = [a for a in mapping.alleles[1:] if a is not None and _VALID_BASES.match(a)]
        snp_for_indel = (mapping.exact and any(len(a) > 1 for a in locus.alts)
                         and not any(len(a) > 1 for a in plain_alts))
        if snp_for_indel:
            if not plain_alts:
                self._warn(key, "Genotype at this position has no ALT allele and an indel or repeat is expected; "
                                "the position cannot be validated")
            else:
                self._warn(key, f"Genotype at this position has SNP{'s' if len(plain_alts) > 1 else ''} "
                                f"({'/'.join(plain_alts)}) but an indel or repeat is expected "
                                f"({'/'.join(locus.alts)})")
        if (not haploid_chrom and not invalid and nonmissing.all()
                and (snp_for_indel or sel.max(initial=0) < n_known)):
            # the common record: every sample called on both chromosomes with alleles the definitions
            # know, so there is nothing to check sample by sample
            ok = np.ones(n, dtype=bool)
        else:
            ok = self._check_sample_calls(arr, li, locus, key, chrom, g, phased, sel, nonmissing, codes, invalid,
                                          n_known, snp_for_indel)

        # GT says heterozygous but AD shows reads for one allele only (reference-overlap style VCFs)
        if ad is not None:
            if self.ad_undeclared:
                self._warn("VCF", "AD format is not defined.  Assuming AD field is valid.")
            if ad is not None and ad.ndim == 2:
                distinct = np.where(nonmissing[:, 0] & nonmissing[:, 1] & (g[:, 0] != g[:, 1]), 2, 1)
                hom_ad = ok & (distinct > 1) & ((ad > 0).sum(axis=1) == 1)
                if hom_ad.any():
                    self._warn_samples(hom_ad, key, lambda si: (
                        f"Discarding genotype at this position because GT field indicates heterozygous "
                        f"({_gt_text(g[si], phased[si])}) but AD field indicates homozygous "
                        f"({','.join(str(int(x)) for x in ad[si] if x >= 0)})"))
                    ok &= ~hom_ad

        ps = np.where(phased, psf, 0) if psf is not None else np.zeros(n, dtype=np.int64)

        codes_gt = np.where(nonmissing, sel, g).astype(np.int16)
        if haploid_chrom:
            # chrY / chrM: the first non-missing allele only
            first_ok = g[:, 0] >= 0
            codes_gt = np.stack([
                np.where(first_ok, codes_gt[:, 0], MISSING_ALLELE),
                np.where(first_ok, NO_ALLELE, codes_gt[:, 1]),
            ], axis=1).astype(np.int16)
        return ok, codes_gt, phased, ps

    def _check_sample_calls(self, arr: _GeneArrays, li: int, locus: Site, key: str, chrom: str, g, phased, sel,
                            nonmissing, codes: list[int], invalid: dict[int, str], n_known: int,
                            snp_for_indel: bool) -> np.ndarray:
        """Which samples' calls at this locus can be used, with a warning for each one that cannot."""
        gene = arr.gdef.gene
        n_called = nonmissing.sum(axis=1)
        ok = n_called > 0
        gtp = np.column_stack([g, phased])  # what a GT's text shows
        self._warn_samples(~ok, key, lambda si: f"Ignoring: no call ({_gt_text(g[si], phased[si])})", by=gtp)
        if chrom in HAPLOID_CHROMOSOMES:
            self._warn_samples(ok & (n_called > 1), key, lambda si: (
                f"{int(n_called[si])} genotypes found (GT={_gt_text(g[si], phased[si])}, for {gene}) for "
                "haploid chromosome. Will only use first non-missing genotype."), by=gtp)
        else:
            single = ok & (n_called == 1)
            if chrom != "chrX":
                ref_only = single & (np.where(nonmissing, g, 0).max(axis=1) == 0)
                self._warn_samples(ref_only, key, lambda si: (
                    f"Ignoring: only a single genotype found (GT={_gt_text(g[si], phased[si])}).  "
                    "Since it's reference, treating this as a missing position."), by=gtp)
                self._warn_samples(single & ~ref_only, key, lambda si: (
                    f"1 genotype found (GT={_gt_text(g[si], phased[si])}, for {gene}), expecting 2."), by=gtp)
                ok &= ~ref_only
        bad = ok & (sel == -3).any(axis=1)
        if bad.any():
            self._warn_samples(bad, key, lambda si: "Discarded genotype at this position because " + next(
                invalid[int(a)] for a in g[si] if a >= 0 and codes[int(a)] == -3), by=g)
            ok &= ~bad
        if not snp_for_indel:  # alleles the definition does not list ("undocumented variations")
            und = ok & (np.where(nonmissing, sel, 0) >= n_known).any(axis=1)
            if und.any():
                as_ref = undocumented_as_reference(gene, self.options.find_combinations)

                def und_msg(si: int) -> str:
                    found = sorted({arr.alleles[li][int(c)] for c in sel[si] if c >= n_known})
                    m = (f"The genetic variation at this position does not match what is in the allele definition "
                         f"(expected {'/'.join(locus.alts)}, found {'/'.join(found)} in VCF)")
                    return m + (".  Undocumented variations will be replaced with reference." if as_ref else "")

                self._warn_samples(und, key, und_msg, by=sel)
        return ok

    def _commit(self, arr: _GeneArrays, li: int, key: str, calls, origin: str, alts: tuple, filt) -> None:
        ok, codes_gt, phased, ps = calls
        prev = arr.status[:, li] == CALLED
        dup = ok & prev
        if dup.any():
            filters = set(str(filt).split(";")) if filt else set()
            quiet = bool(filters & PREPROCESSOR_FILTERS)
            if arr.first_alts.get(li) == alts:
                # the same record twice is harmless; two different genotypes cannot both be true
                conflict = dup & ~_same_genotypes(arr.gt[:, li, :], codes_gt, arr.phased[:, li], phased)
                if not quiet and not conflict.all():
                    self._warn(key, "Duplicate entry found in VCF; first valid entry trumps others.")
            else:
                # split multi-allelic records (0/1 + 0/2 -> 1/2): combine rather than drop the second
                conflict = dup & ~self._merge_split(arr, li, codes_gt, phased, dup)
                if not quiet:
                    self._warn(key, "Duplicate entry found in VCF (split multi-allelic records); "
                                    "their genotypes were combined.")
            if conflict.any():
                old = arr.gt[:, li, :].copy()
                self._warn_samples(conflict, key, lambda si: (
                    f"Entries for this position disagree ({_call_text(arr, li, old[si], arr.phased[si, li])} and "
                    f"{_call_text(arr, li, codes_gt[si], phased[si])}); the position is treated as missing"))
                arr.status[conflict, li] = UNUSABLE
                arr.gt[conflict, li, :] = MISSING_ALLELE
        take = ok & (arr.status[:, li] == ABSENT)
        if take.any():
            if key in self.discarded:
                self._warn(key, "Duplicate entry found in VCF; this entry trumps previous invalid entry.")
            # the common record sets every sample: plain column writes, not masked ones (~1 s at 100k samples)
            rows = slice(None) if take.all() else take
            arr.gt[rows, li, :] = codes_gt[rows]
            arr.status[rows, li] = CALLED
            arr.phased[rows, li] = phased[rows]
            arr.set_phase_sets(rows, li, ps[rows])
            arr.origin.setdefault(li, origin)
            arr.first_alts.setdefault(li, alts)
        if not ok.any():
            self.discarded.add(key)

    def _apply_pending(self) -> None:
        """Calls from differently-represented records fill only what exact records left missing."""
        for arr, li, key, calls, origin in self.pending:
            ok, codes_gt, phased, ps = calls
            take = ok & (arr.status[:, li] == ABSENT)
            if take.any():
                arr.gt[take, li, :] = codes_gt[take]
                arr.status[take, li] = CALLED
                arr.phased[take, li] = phased[take]
                arr.set_phase_sets(take, li, ps[take])
                arr.origin.setdefault(li, origin)
                if not origin.startswith("gVCF"):
                    self._warn(key, f"Call read from a differently represented record ({origin})")

    def _merge_split(self, arr: _GeneArrays, li: int, new_gt: np.ndarray, phased: np.ndarray,
                     mask: np.ndarray) -> np.ndarray:
        """Combine split multi-allelic records (0/1 + 0/2 -> 1/2), vectorised over samples.
        Returns which samples merged; the others keep the first record's call."""
        merged = np.zeros(mask.shape, dtype=bool)
        idx = np.flatnonzero(mask)
        if not len(idx):
            return merged
        old = arr.gt[idx, li, :].astype(np.int64)
        new = new_gt[idx].astype(np.int64)
        old_ph, new_ph = arr.phased[idx, li], phased[idx].astype(bool)
        no_alt_new = (new <= 0).all(axis=1)  # nothing to add
        no_alt_old = ~no_alt_new & (old <= 0).all(axis=1)  # the new record carries the alt: take it
        both_phased = ~no_alt_new & ~no_alt_old & old_ph & new_ph
        clash = np.iinfo(np.int64).min
        strandwise = np.where(new <= 0, old, np.where(old <= 0, new, clash))  # alt per strand, if no clash
        phased_ok = both_phased & (strandwise != clash).all(axis=1)
        # unphased heterozygotes 0/a + 0/b -> a/b
        het = (~no_alt_new & ~no_alt_old & ~both_phased & ((old == 0).sum(axis=1) == 1)
               & ((new == 0).sum(axis=1) == 1))
        a = np.where(old[:, 0] == 0, old[:, 1], old[:, 0])
        b = np.where(new[:, 0] == 0, new[:, 1], new[:, 0])
        het_gt = np.stack([np.where(a > 0, a, b), b], axis=1)
        gt = arr.gt[idx, li, :]
        gt = np.where(no_alt_old[:, None], new, gt)
        gt = np.where(phased_ok[:, None], strandwise, gt)
        gt = np.where(het[:, None], het_gt, gt)
        arr.gt[idx, li, :] = gt.astype(arr.gt.dtype)
        arr.phased[idx, li] = np.where(no_alt_old, new_ph, np.where(het, False, old_ph))
        merged[idx] = no_alt_new | no_alt_old | phased_ok | het
        return merged

    def _record_extra(self, arr: _GeneArrays, xi: int, gts, ref, alts) -> None:
        x = arr.gdef.exemptions.extra_loci[xi]
        if xi in arr.extra or gts is None:
            return
        alleles, phased = gts
        table = [ref, *alts]
        # text per distinct genotype, spread to samples (an object array indexes like a list)
        keys = np.concatenate([alleles.reshape(len(phased), -1), np.asarray(phased).reshape(-1, 1)], axis=1)
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        texts = np.empty(len(uniq), dtype=object)
        for j, row in enumerate(uniq.tolist()):
            a = [table[i] if i >= 0 else "." for i in row[:-1] if i != NO_ALLELE]
            texts[j] = ("|" if row[-1] else "/").join(a)
        codes = inverse.reshape(-1)
        arr.extra[xi] = {"position": x.position, "rsid": x.rsid, "calls": texts[codes], "codes": codes}

    def _fill_reference(self, arr: _GeneArrays) -> None:
        # an interpolated GRCh37 position's reference base is assumed, not known: never filled (missing)
        absent = (arr.status == ABSENT) & ~np.array([s is not None and s.interpolated for s in arr.loci], bool)
        if not absent.any():
            return
        # the reference of the file's build: where GRCh37's base is a definition ALT, that allele
        fill = np.array([0 if s is None else arr.code(li, s.ref) for li, s in enumerate(arr.loci)], dtype=np.int16)
        arr.gt[absent] = np.broadcast_to(fill, absent.shape)[absent][:, None]
        haploid = _haploid_samples(arr)
        if haploid is not None:
            for si in np.flatnonzero(haploid):
                arr.gt[si, absent[si], 1] = NO_ALLELE
        arr.status[absent] = FILLED
        # homozygous reference is phase-agnostic: mark phased where the sample's other calls are phased
        called = arr.status == CALLED
        all_phased = np.where(called, arr.phased, True).all(axis=1)
        arr.phased[absent] = np.broadcast_to(all_phased[:, None], absent.shape)[absent]


def _haploid_samples(arr: _GeneArrays) -> np.ndarray | None:
    """Samples whose calls on this (chrX) gene are all haploid: reference fill must be haploid too."""
    if arr.gdef.chromosome != "chrX":
        return None
    called = arr.status == CALLED
    hap = np.where(called, arr.gt[:, :, 1] == NO_ALLELE, True).all(axis=1) & called.any(axis=1)
    return hap


def _same_genotypes(a: np.ndarray, b: np.ndarray, a_phased: np.ndarray, b_phased: np.ndarray) -> np.ndarray:
    """Per sample: do two calls at one position agree (allele order matters only when both are phased)?"""
    same_order = (a == b).all(axis=1)
    swapped = (a[:, ::-1] == b).all(axis=1)
    return same_order | (swapped & ~(a_phased & b_phased.astype(bool)))


def _implausible_block(ref: str, genes: set[str]) -> str | None:
    """Why a gVCF reference block cannot be taken as the reference at the positions it covers, if it cannot:
    blocks are short runs of confident reference calls, so one over several genes (or with an unknown
    reference base) is an artefact or a forgery, not evidence."""
    if not _VALID_BASES.match(ref):
        return f"its REF {ref!r} is not a base"
    if len(genes) > 1:
        return f"it spans several genes ({', '.join(sorted(genes))})"
    return None


def _block_mapping(locus: Site, alts, chrom: str, pos: int, end: int) -> tuple[AlleleMapping, str]:
    """A gVCF reference block asserts the reference over [pos, end]: its REF means the locus REF."""
    return AlleleMapping((locus.ref, *alts), True, False), f"gVCF reference block {chrom}:{pos}-{end}"


def _line_or_record(line: int | None, rec_no: int) -> str:
    """A record as messages name it: its line in a text VCF, else its number (BCF, region reads)."""
    return f"line {line}" if line is not None else f"record {rec_no}"


def _where(line: int | None, chrom: str, pos: int) -> str:
    return f"line {line} ({chrom}:{pos})" if line is not None else f"record {chrom}:{pos}"


def _format(rec, field: str):
    """A FORMAT field as an array, or None when absent (cyvcf2 raises KeyError if undeclared)."""
    try:
        return rec.format(field)
    except KeyError:
        return None


def _call_text(arr: _GeneArrays, li: int, g, phased) -> str:
    """A call at a locus in bases (G/A), as a person compares two records."""
    table = arr.alleles[li]
    parts = ["." if x == MISSING_ALLELE else table[int(x)] for x in g if x != NO_ALLELE]
    return ("|" if phased else "/").join(parts)


def _gt_text(g, phased) -> str:
    parts = ["." if x == MISSING_ALLELE else str(int(x)) for x in g if x != NO_ALLELE]
    return ("|" if phased else "/").join(parts)


def read_genotypes(path: Path, kb: KnowledgeBase, genes: list[str], options: ReadOptions = ReadOptions(),
                   regions: list[str] | None = None, with_sha256: bool = True) -> GenotypeSet:
    return VcfReader(Path(path), kb, genes, options, regions, with_sha256).read()
