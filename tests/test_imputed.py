"""Imputed and array genotypes (issue 14): VCF GP/DS, BGEN v1.2 and PLINK 2 .pgen made from the 1KGP panel call
exactly as the unphased VCF of the same data; noisy probabilities lose calls, never make a wrong one; low
imputation quality makes positions missing; bad files are one-line errors."""

from __future__ import annotations

import gzip
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
from conformance import SHARED
from helpers import cli, match, read_report

from permed.errors import InputFileError, MissingExtraError
from permed.genotypes.imputed import bgen_sample_file, write_bgen
from permed.genotypes.probabilities import diploid_order

pgenlib = pytest.importorskip("pgenlib")
pytest.importorskip("cbgen")

DATA = SHARED / "data" / "1kgp-grch38"
GENES = ("CYP2C19", "CYP2C9", "TPMT")
N = 500  # samples of the panel used (the first ones in the files)
CYP2C19_STAR2 = ("chr10", 94781859)  # rs4244285, *2

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="../shared/data/1kgp-grch38 not available")


class Panel:
    """One gene's 1KGP records: alleles and GT as arrays (samples x 2), phase dropped."""

    def __init__(self, gene: str, n: int = N):
        self.gene = gene
        self.header: list[str] = []
        self.records: list[tuple[str, int, str, list[str], np.ndarray]] = []
        with gzip.open(DATA / f"{gene}.vcf.gz", "rt") as fh:
            for line in fh:
                if line.startswith("##"):
                    if not line.startswith("##FORMAT") and not line.startswith("##INFO"):
                        self.header.append(line.rstrip("\n"))
                    continue
                f = line.rstrip("\n").split("\t")
                if line.startswith("#"):
                    self.samples = f[9:9 + n]
                    continue
                gts = np.array([[int(a) for a in s.split(":")[0].replace("|", "/").split("/")]
                                for s in f[9:9 + n]], dtype=np.int64)
                self.records.append((f[0], int(f[1]), f[2], [f[3], *f[4].split(",")], gts))

    def gp(self, rec, noise: np.random.Generator | None = None, sure: float = 0.985) -> np.ndarray:
        """Genotype probabilities in VCF/BGEN order: certain, or (noise) the true genotype 0.4-1.0 likely."""
        k = len(rec[3])
        order = {tuple(p): i for i, p in enumerate(diploid_order(k).tolist())}
        idx = np.array([order[tuple(sorted(g))] for g in rec[4].tolist()])
        p = np.zeros((len(idx), len(order)))
        if noise is None:
            p[np.arange(len(idx)), idx] = 1.0
            return p
        # most calls sure, a few blurred down to 0.4: the most likely wrong genotype never exceeds 0.6
        true = np.where(noise.random(len(idx)) < sure, noise.uniform(0.95, 1.0, len(idx)),
                        noise.uniform(0.4, 1.0, len(idx)))
        rest = noise.dirichlet(np.ones(len(order)), len(idx)) * (1 - true)[:, None]
        rest[np.arange(len(idx)), idx] = 0
        rest *= ((1 - true) / np.maximum(rest.sum(axis=1), 1e-12))[:, None]
        p = rest
        p[np.arange(len(idx)), idx] = true
        return p

    def vcf(self, path: Path, fields: str = "GT", noise=None, info=None) -> Path:
        """The gene's VCF with FORMAT `fields` (GT unphased, GP, DS); `info(rec)` gives the INFO column."""
        out = [*self.header,
               '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
               '##FORMAT=<ID=GP,Number=G,Type=Float,Description="Genotype probabilities">',
               '##FORMAT=<ID=DS,Number=A,Type=Float,Description="ALT dosage">',
               '##INFO=<ID=R2,Number=1,Type=Float,Description="Estimated imputation accuracy">',
               "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *self.samples])]
        keys = fields.split(":")
        for rec in self.records:
            chrom, pos, rid, alleles, gts = rec
            cols = []
            if "GT" in keys:
                cols.append([f"{a}/{b}" for a, b in gts.tolist()])
            if "GP" in keys:
                cols.append([",".join(f"{x:.3f}" for x in row) for row in self.gp(rec, noise)])
            if "DS" in keys:
                cols.append([",".join(str(int((g == a).sum())) for a in range(1, len(alleles))) for g in gts])
            samples = [":".join(parts) for parts in zip(*cols)]
            out.append("\t".join([chrom, str(pos), rid, alleles[0], ",".join(alleles[1:]), ".", "PASS",
                                  info(rec) if info else ".", fields, *samples]))
        path.write_text("\n".join(out) + "\n")
        return path

    def bgen(self, path: Path, noise=None, embed: bool = True) -> Path:
        return write_bgen(path, self.samples, ((c, p, i, a, self.gp(r, noise)) for r in self.records
                                                for c, p, i, a, _ in [r]), embed_samples=embed)

    def pgen(self, path: Path, dosages: np.ndarray | None = None) -> Path:
        """.pgen/.pvar/.psam written with pgenlib (hardcalls; `dosages` per biallelic record when given)."""
        k_max = max(len(r[3]) for r in self.records)
        w = pgenlib.PgenWriter(bytes(path), len(self.samples), variant_ct=len(self.records), nonref_flags=False,
                               allele_ct_limit=k_max, dosage_present=dosages is not None)
        for i, rec in enumerate(self.records):
            if dosages is not None:
                w.append_dosages(np.asarray(dosages[i], dtype=np.float64))
            else:
                w.append_alleles(rec[4].astype(np.int32).ravel(), allele_ct=len(rec[3]))
        w.close()
        path.with_suffix(".pvar").write_text("#CHROM\tPOS\tID\tREF\tALT\n" + "".join(
            f"{c}\t{p}\t{i}\t{a[0]}\t{','.join(a[1:])}\n" for c, p, i, a, _ in self.records))
        path.with_suffix(".psam").write_text("#IID\tSEX\n" + "".join(f"{s}\tNA\n" for s in self.samples))
        return path


@pytest.fixture(scope="module")
def panels() -> dict[str, Panel]:
    return {g: Panel(g) for g in GENES}


@pytest.fixture(scope="module")
def truth(panels, tmp_path_factory) -> dict[str, list[list[str]]]:
    """The reference run: the same data as an unphased GT-only VCF."""
    d = tmp_path_factory.mktemp("truth")
    return {g: _calls(match([p.vcf(d / f"{g}.vcf")], genes=(g,)), g) for g, p in panels.items()}


def _calls(cs, gene: str) -> list[list[str]]:
    return [cs.sample_calls(i)[gene].source_diplotypes for i in range(len(cs.samples))]


def _never_confidently_wrong(cs, gene: str, expected: list[list[str]]) -> tuple[int, int]:
    """Every call that differs from the truth is missing data, not called, or ambiguous. Returns (same, lost)."""
    same = lost = 0
    for i in range(len(cs.samples)):
        call = cs.sample_calls(i)[gene]
        if call.source_diplotypes == expected[i]:
            same += 1
            continue
        lost += 1
        assert call.status != "called" or call.missing_positions or len(call.source_diplotypes) > 1, (
            cs.samples[i], gene, call.source_diplotypes, expected[i])
    return same, lost


# ---- the same calls as the VCF path ----------------------------------------------------------------------
@pytest.mark.parametrize("fields", ["GP", "DS", "GT:GP:DS"])
def test_vcf_probabilities_call_as_gt(panels, truth, tmp_path, fields):
    for g, p in panels.items():
        cs = match([p.vcf(tmp_path / f"{g}.vcf", fields)], genes=(g,))
        assert _calls(cs, g) == truth[g], (g, fields)
        assert any("--min-gp 0.9" in n for n in cs.inputs[0].notices)


def test_bgen_calls_as_vcf(panels, truth, tmp_path):
    for g, p in panels.items():
        cs = match([p.bgen(tmp_path / f"{g}.bgen")], genes=(g,))
        assert list(cs.samples) == p.samples
        assert _calls(cs, g) == truth[g], g
        notice = cs.inputs[0].notices[0]
        assert "BGEN v1.2" in notice and "--min-gp 0.9" in notice and "unphased" in notice


def test_bgen_with_sample_file_and_index(panels, truth, tmp_path):
    p = panels["CYP2C19"]
    path = p.bgen(tmp_path / "c19.bgen", embed=False)
    with pytest.raises(InputFileError, match=r"c19\.bgen: the BGEN file has no sample identifiers"):
        match([path], genes=("CYP2C19",))
    bgen_sample_file(tmp_path / "c19.sample", p.samples)
    _bgi(path)
    cs = match([path], genes=("CYP2C19",))
    assert list(cs.samples) == p.samples and _calls(cs, "CYP2C19") == truth["CYP2C19"]
    assert any("c19.bgen.bgi" in n for n in cs.inputs[0].notices)


def _bgi(path: Path) -> Path:
    """A bgenix index (SQLite, table Variant) for a BGEN, from its variant headers."""
    con = sqlite3.connect(str(path) + ".bgi")
    con.execute("CREATE TABLE Variant (chromosome TEXT, position INT, rsid TEXT, number_of_alleles INT, "
                "allele1 TEXT, allele2 TEXT, file_start_position INT, size_in_bytes INT)")
    with open(path, "rb") as fh:
        (offset,) = struct.unpack("<I", fh.read(4))
        (m,) = struct.unpack("<I", fh.read(8)[4:])
        at = offset + 4
        for _ in range(m):
            fh.seek(at)
            fields = []
            for _ in range(3):
                (ln,) = struct.unpack("<H", fh.read(2))
                fields.append(fh.read(ln).decode())
            pos, k = struct.unpack("<IH", fh.read(6))
            alleles = []
            for _ in range(k):
                (ln,) = struct.unpack("<I", fh.read(4))
                alleles.append(fh.read(ln).decode())
            (c,) = struct.unpack("<I", fh.read(4))
            end = fh.tell() + c
            con.execute("INSERT INTO Variant VALUES (?,?,?,?,?,?,?,?)",
                        (fields[2], pos, fields[1], k, alleles[0], alleles[1] if k > 1 else "", at, end - at))
            at = end
    con.commit()
    con.close()
    return Path(str(path) + ".bgi")


def test_pgen_calls_as_vcf(panels, truth, tmp_path):
    for g, p in panels.items():
        cs = match([p.pgen(tmp_path / f"{g}.pgen")], genes=(g,))
        assert _calls(cs, g) == truth[g], g
        assert "PLINK 2 .pgen" in cs.inputs[0].notices[0]


def test_grch37_bgen_calls_as_grch38(panels, tmp_path):
    """A BGEN on GRCh37 coordinates (PyPGx's table, as tests/test_grch37.py converts VCFs) calls as the GRCh37
    VCF does, its build found from the variants."""
    test_grch37 = pytest.importorskip("test_grch37")
    if not test_grch37.TABLE.exists():
        pytest.skip("../shared/reference/pypgx not available")
    p = panels["TPMT"]
    v37 = tmp_path / "tpmt37.vcf"
    v37.write_text(test_grch37.to_grch37(p.vcf(tmp_path / "tpmt.vcf").read_text()))
    p37 = Panel.__new__(Panel)
    p37.gene, p37.samples, p37.header, p37.records = "TPMT", p.samples, [], []
    for line in v37.read_text().splitlines():
        if line.startswith("#"):
            continue
        f = line.split("\t")
        gts = np.array([[int(a) for a in s.split("/")] for s in f[9:]], dtype=np.int64)
        p37.records.append((f[0], int(f[1]), f[2], [f[3], *f[4].split(",")], gts))
    expected = _calls(match([v37], genes=("TPMT",)), "TPMT")
    cs = match([p37.bgen(tmp_path / "tpmt37.bgen")], genes=("TPMT",))
    assert _calls(cs, "TPMT") == expected
    assert any(n.startswith("read as GRCh37") for n in cs.inputs[0].notices)
    with pytest.raises(InputFileError, match="--build GRCh38 was given"):
        match([tmp_path / "tpmt37.bgen"], genes=("TPMT",), build="GRCh38")


# ---- noise: calls are lost, never wrong ------------------------------------------------------------------
def test_noisy_probabilities_never_give_a_wrong_call(panels, truth, tmp_path):
    for g, p in panels.items():
        for kind in ("vcf", "bgen"):
            rng = np.random.default_rng(14)
            path = (p.vcf(tmp_path / f"{g}.vcf", "GP", noise=rng) if kind == "vcf"
                    else p.bgen(tmp_path / f"{g}.bgen", noise=rng))
            cs = match([path], genes=(g,), min_info=0)  # blurred on purpose: judge the calls, not the quality
            same, lost = _never_confidently_wrong(cs, g, truth[g])
            assert lost > 0 and same > 0, (g, kind, same, lost)
            # a stricter threshold loses more calls and still makes no wrong one
            strict = match([path], genes=(g,), min_info=0, min_gp=0.99)
            assert _never_confidently_wrong(strict, g, truth[g])[1] >= lost


def test_noisy_dosages_never_give_a_wrong_call(panels, truth, tmp_path):
    rng = np.random.default_rng(7)
    for g, p in panels.items():
        if any(len(r[3]) > 2 for r in p.records):
            continue  # pgen dosages are biallelic
        ds = [(r[4] == 1).sum(axis=1) + rng.normal(0, 0.12, len(p.samples)) for r in p.records]
        ds = [np.clip(d, 0, 2) for d in ds]
        cs = match([p.pgen(tmp_path / f"{g}.pgen", dosages=ds)], genes=(g,))
        same, lost = _never_confidently_wrong(cs, g, truth[g])
        assert lost > 0 and same > 0


def test_a_disagreeing_gt_is_missing(panels, tmp_path):
    """GT 1/1 where GP is sure of 0/0 (or the other way round): neither is believed, the position is missing."""
    path = panels["CYP2C19"].vcf(tmp_path / "c19.vcf", "GT:GP")
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        f = line.split("	")
        if not line.startswith("#") and (f[0], int(f[1])) == CYP2C19_STAR2:
            gt, gp = f[9].split(":")
            f[9] = ("1/1:" if gt == "0/0" else "0/0:") + gp
            lines[i] = "\t".join(f)
    path.write_text("\n".join(lines) + "\n")
    call = match([path], genes=("CYP2C19",)).sample_calls(0)["CYP2C19"]
    assert CYP2C19_STAR2[1] in call.missing_positions


# ---- imputation quality ----------------------------------------------------------------------------------
def test_low_imputation_quality_is_missing_for_everyone(panels, truth, tmp_path):
    p = panels["CYP2C19"]
    path = p.vcf(tmp_path / "c19.vcf", "GP",
                 info=lambda r: "R2=0.42" if (r[0], r[1]) == CYP2C19_STAR2 else "R2=0.99")
    cs = match([path], genes=("CYP2C19",))
    for i in range(len(cs.samples)):
        assert CYP2C19_STAR2[1] in cs.sample_calls(i)["CYP2C19"].missing_positions
    warning = cs.inputs[0].position_warnings["CYP2C19"]
    assert len(warning) == 1 and "--min-info 0.8" in warning[0] and "R2=0.42" in warning[0]
    # --min-info 0.4 accepts it: the calls are the reference run's
    assert _calls(match([path], genes=("CYP2C19",), min_info=0.4), "CYP2C19") == truth["CYP2C19"]


def test_bgen_quality_is_computed_from_the_probabilities(panels, tmp_path):
    p = panels["CYP2C19"]
    rng = np.random.default_rng(3)
    recs = [(r[0], r[1], r[2], r[3], p.gp(r, rng, sure=0) if (r[0], r[1]) == CYP2C19_STAR2
             else p.gp(r)) for r in p.records]
    path = write_bgen(tmp_path / "c19.bgen", p.samples, recs)
    cs = match([path], genes=("CYP2C19",))
    assert all(CYP2C19_STAR2[1] in cs.sample_calls(i)["CYP2C19"].missing_positions for i in range(len(cs.samples)))
    assert "computed from the probabilities" in cs.inputs[0].position_warnings["CYP2C19"][0]


# ---- the command line ------------------------------------------------------------------------------------
def test_call_and_cohort_take_bgen_and_pgen(panels, tmp_path):
    pytest.importorskip("pyarrow")
    p = panels["CYP2C19"]
    bgen = p.bgen(tmp_path / "c19.bgen")
    res = cli("call", bgen, "-o", tmp_path / "out", "--genes", "CYP2C19", "--min-gp", "0.95", "--format", "json")
    assert res.returncode == 0, res.stderr
    report = read_report(tmp_path / "out" / f"{p.samples[0]}.report.json")
    notices = report["inputs"][0]["notices"]
    assert "BGEN v1.2" in notices[0] and "--min-gp 0.95" in notices[0]
    res = cli("cohort", p.pgen(tmp_path / "c19.pgen"), "-o", tmp_path / "cohort", "--genes", "CYP2C19", "-q")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "cohort" / "calls.parquet").is_file()
    res = cli("call", bgen, "-o", tmp_path / "bad", "--min-gp", "0.5")
    assert res.returncode == 64 and "--min-gp" in res.stderr


# ---- bad files -------------------------------------------------------------------------------------------
def _one_line_error(path: Path, *fragments: str, extra=()) -> None:
    res = cli("call", path, "-o", path.parent / "out", *extra)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_bad_files_are_one_line_errors(panels, tmp_path):
    p = panels["TPMT"]
    good = p.bgen(tmp_path / "good.bgen").read_bytes()
    (tmp_path / "cut.bgen").write_bytes(good[: len(good) // 2])
    _one_line_error(tmp_path / "cut.bgen", "cut.bgen", "past the end of the file")
    (tmp_path / "magic.bgen").write_bytes(good[:16] + b"nope" + good[20:])
    _one_line_error(tmp_path / "magic.bgen", "magic.bgen", "not a BGEN file")
    flags_at = 4 + struct.unpack("<I", good[4:8])[0] - 4
    v11 = bytearray(good)
    v11[flags_at:flags_at + 4] = struct.pack("<I", struct.unpack("<I", good[flags_at:flags_at + 4])[0] & ~(0xF << 2)
                                             | (1 << 2))
    (tmp_path / "v11.bgen").write_bytes(bytes(v11))
    _one_line_error(tmp_path / "v11.bgen", "v11.bgen", "layout 1")
    pgen = p.pgen(tmp_path / "t.pgen")
    pgen.with_suffix(".pvar").write_text("chr6\t18125312\trs1\tA\tG\n")
    _one_line_error(pgen, "t.pvar", "line 1", "header")
    p.pgen(tmp_path / "t.pgen").with_suffix(".psam").unlink()
    _one_line_error(pgen, "t.pgen", "t.psam")
    vcf = p.vcf(tmp_path / "gp.vcf", "GP")
    lines = vcf.read_text().splitlines()
    from permed.api import engine

    positions = {loc.position for loc in engine().kb.genes["TPMT"].loci}
    i = next(i for i, ln in enumerate(lines) if not ln.startswith("#") and int(ln.split("\t")[1]) in positions)
    f = lines[i].split("\t")
    f[9] = "12,30,0"  # phred-scaled
    lines[i] = "\t".join(f)
    vcf.write_text("\n".join(lines) + "\n")
    _one_line_error(vcf, "gp.vcf", "GP of sample", "not probabilities")


def test_a_missing_extra_names_it(panels, tmp_path, monkeypatch):
    import sys

    path = panels["TPMT"].bgen(tmp_path / "t.bgen")
    monkeypatch.setitem(sys.modules, "cbgen", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'permed\[imputed\]'"):
        match([path], genes=("TPMT",))


def test_a_sequencing_callers_gp_beside_gt_leaves_the_gt_as_pharmcat_reads_it(tmp_path):
    """DRAGEN writes GP as phred-scaled posteriors (VCF 4.3), with counts that need not fit the record: beside
    a GT, in a file that declares no imputation quality, GP is not used (PharmCAT reads the GT). In an imputed
    file (R2 declared) the same GT is checked against GP: phred values are read as such, and a GT the
    probabilities do not support is missing."""
    from helpers import HEADER, rec, write_vcf

    import permed

    phred = HEADER + '##FORMAT=<ID=GP,Number=G,Type=Float,Description="Phred-scaled posterior probabilities">\n'
    star2 = ("chr10", 94781859, "G", "A")  # CYP2C19*2's splice variant
    for gp in ("39.4,0.0005,53.0,450,450,450", "0.6,0.3,0.1", "1,2"):
        vcf = write_vcf(tmp_path / "dragen.vcf", rec(*star2, f"0/1:{gp}", fmt="GT:GP"), header=phred)
        res = permed.call(vcf, genes=["CYP2C19"])
        evidence = {e.position: e for e in res.patient("S1").genes["CYP2C19"].evidence}
        assert evidence[94781859].call == "G/A" and evidence[94781859].status == "called", gp
        assert not any("probabilities" in n for n in res.patient("S1").inputs[0].notices)
    imputed = phred + '##INFO=<ID=R2,Number=1,Type=Float,Description="Imputation quality">\n'
    for gp, called in (("40,0.0004,50", True), ("3,3,10", False)):  # p(0/1) 0.9999 / 0.5: unsure
        vcf = write_vcf(tmp_path / "imputed.vcf", rec(*star2, f"0/1:{gp}", fmt="GT:GP", info="R2=0.97"),
                        header=imputed)
        ev = {e.position: e for e in permed.call(vcf, genes=["CYP2C19"]).patient("S1").genes["CYP2C19"].evidence}
        assert (ev[94781859].status == "called") is called, gp
        assert (ev[94781859].call == "G/A") if called else ev[94781859].call is None
