"""GRCh37 input (issue 14): read at the knowledge base's GRCh37 positions (PyPGx's variant table, and SNVs
interpolated between its positions), reported in GRCh38 terms; the same calls as the GRCh38 original, positions
without a GRCh37 position missing."""

from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

import pytest
from conformance import SHARED
from helpers import HEADER, cli, example_text, match, read_report, rec, write_text, write_vcf

from permed.errors import ConfigurationError, InputFileError
from permed.kb.load import load_kb
from permed.options import Options

TABLE = SHARED / "reference" / "pypgx" / "variant-table.csv"
GENE_TABLE = TABLE.with_name("gene-table.csv")
DATA = SHARED / "data" / "1kgp-grch38"
GENES = ("CYP2C19", "CYP2C9", "TPMT")
GRCH37_LENGTHS = {"1": 249250621, "2": 243199373, "4": 191154276, "6": 171115067, "7": 159138663,
                  "8": 146364022, "10": 135534747, "12": 133851895, "13": 115169878, "16": 90354753,
                  "19": 59128983, "22": 51304566, "X": 155270560}
# definition positions without a GRCh37 position, for the three genes of the acceptance test: two CYP2C9 indels
# PyPGx's table lacks (indels are not interpolated)
UNMAPPED = {"CYP2C19": [], "CYP2C9": [94942205, 94949161], "TPMT": []}
RS3758581 = (94842866, 96602623)  # CYP2C19 *38/*1 position where GRCh37's base (G) is GRCh38's ALT
RS57700608 = (94780544, 96540301)  # CYP2C19 SNV the table lacks: interpolated (offset +1,759,757 on both sides)
CYP2C9_86 = (94949184, 96708941)  # CYP2C9 *86 (rs369745682): interpolated; two 1000 Genomes carriers

needs_table = pytest.mark.skipif(not TABLE.exists(), reason="../shared/reference/pypgx not available")
pytestmark = needs_table


def _table() -> dict[tuple[str, int], tuple[int, str, str]]:
    out = {}
    with open(TABLE, newline="") as fh:
        for r in csv.DictReader(fh):
            out[("chr" + r["Chromosome"], int(r["GRCh38Position"]))] = (
                int(r["GRCh37Position"]), r["GRCh37Allele"], r["GRCh38Allele"])
    return out


def _swap_gt(sample: str, order: list[int]) -> str:
    """A sample column with GT's allele indexes renumbered (GT is the first FORMAT key in these files)."""
    gt, sep, rest = sample.partition(":")
    return re.sub(r"\d+", lambda m: str(order[int(m.group())]), gt) + sep + rest


def _interpolated() -> dict[tuple[str, int], int]:
    """The knowledge base's interpolated GRCh37 positions of definition SNVs, by GRCh38 chromosome and position."""
    return {(d.chromosome, loc.position): loc.position37 for d in load_kb().genes.values() for loc in d.loci
            if loc.grch37_interpolated}


def to_grch37(text: str, header: str = "grch37") -> str:
    """A GRCh38 VCF moved to GRCh37 with the knowledge base's mapping, as a liftover tool writes it: CHROM/POS per
    PyPGx's table, else per the KB's interpolation from that table (SNVs, GRCh38's base kept as REF, as the KB
    assumes); records neither places dropped, REF set to GRCh37's base where the table says it differs (alleles
    renumbered) and the header's contigs and ##reference made GRCh37's (`header="none"`: no build in the header
    at all)."""
    table, interpolated = _table(), _interpolated()
    out = []
    for line in text.splitlines():
        if line.startswith("##contig") or line.startswith("##reference"):
            if header == "grch37" and line.startswith("##contig"):
                cid = re.search(r"ID=([^,>]+)", line).group(1)
                length = GRCH37_LENGTHS.get(cid.removeprefix("chr"))
                out.append(f"##contig=<ID={cid},length={length},assembly=GRCh37>" if length else f"##contig=<ID={cid}>")
            continue
        if line.startswith("#CHROM") and header == "grch37":
            out.append("##reference=GRCh37")
        if line.startswith("#"):
            out.append(line)
            continue
        f = line.split("\t")
        hit = table.get((f[0], int(f[1])))
        if hit is None and (f[0], int(f[1])) in interpolated and len(f[3]) == 1:
            hit = (interpolated[(f[0], int(f[1]))], f[3], f[3])
        if hit is None:
            continue
        pos37, ref37, ref38 = hit
        f[1] = str(pos37)
        alleles = [f[3], *f[4].split(",")]
        if len(ref37) == len(ref38) == 1 and ref37 != ref38 and len(f[3]) == 1:
            new = [ref37] + [a for a in alleles if a != ref37]
            order = [new.index(a) for a in alleles]
            f[3], f[4] = new[0], ",".join(new[1:])
            f[9:] = [_swap_gt(s, order) for s in f[9:]]
        out.append("\t".join(f))
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("grch37")
    return {g: write_text(d / f"{g}.vcf", to_grch37(gzip.open(DATA / f"{g}.vcf.gz", "rt").read())) for g in GENES}


# ---- the knowledge base's mapping ------------------------------------------------------------------------
def test_every_definition_position_is_mapped_or_listed():
    kb = load_kb()
    for g in GENES:
        loci = kb.genes[g].loci
        assert [loc.position for loc in loci if loc.position37 is None] == UNMAPPED[g], g
    c19 = kb.genes["CYP2C19"]
    loc = c19.loci[c19.position_index[RS3758581[0]]]
    assert (loc.position37, loc.ref, loc.ref37, loc.grch37_source) == (RS3758581[1], "A", "G", "pypgx")
    loc = c19.loci[c19.position_index[RS57700608[0]]]
    assert (loc.position37, loc.ref37, loc.grch37_source) == (RS57700608[1], None, "interpolated")
    c9 = kb.genes["CYP2C9"]
    assert c9.loci[c9.position_index[CYP2C9_86[0]]].position37 == CYP2C9_86[1]
    # indels are mapped where a row spans their REF on both builds (TPMT rs72552736-region insertion)
    tpmt = load_kb().genes["TPMT"]
    assert all(loc.position37 for loc in tpmt.loci)
    assert any(not loc.is_snv for loc in tpmt.loci)


def test_kb_info_lists_unmapped_positions():
    res = cli("kb", "info")
    assert res.returncode == 0
    out = res.stdout.replace("\n", " ")
    assert "CYP2C9: 94942205, 94949161" in out and "CYP2C19:" not in out
    assert re.search(r"interpolated .*CYP2C19 1, CYP2C9 16,", out)
    assert re.search(r"TPMT\s.*43\s.*43", res.stdout)  # positions, of which mapped to GRCh37


# ---- where the GRCh37 positions come from -------------------------------------------------------------------
def test_the_kb_records_each_position_s_origin():
    """Every mapped locus says where its GRCh37 position comes from; interpolated ones are SNVs with GRCh38's
    base, lying strictly between two PyPGx-mapped positions of their gene with the same offset, which they take."""
    import bisect

    from permed.kb.build import grch37_anchors

    kb = load_kb()
    counts = {"pypgx": 0, "interpolated": 0, None: 0}
    for g, d in kb.genes.items():
        anchors = grch37_anchors(d)
        for loc in d.loci:
            counts[loc.grch37_source] += 1
            assert (loc.position37 is None) == (loc.grch37_source is None), (g, loc.position)
            if loc.grch37_interpolated:
                assert loc.is_snv and loc.ref37 is None and loc.ref_on_grch37 == loc.ref
                i = bisect.bisect_left(anchors, (loc.position,))
                assert 0 < i < len(anchors) and anchors[i][0] != loc.position, (g, loc.position)
                (_, lo), (_, hi) = anchors[i - 1], anchors[i]
                assert lo == hi == loc.position37 - loc.position, (g, loc.position)
    assert counts == {"pypgx": 742, "interpolated": 418, None: 41}
    source = next(s for s in kb.sources if s.name.startswith("GRCh37 coordinates"))
    assert "interpolated" in source.name and source.licence == "MIT"


def test_interpolation_predicts_pypgx_s_positions_left_out():
    """Leave-one-out: every PyPGx-mapped position whose PyPGx-mapped neighbours on both sides share an offset is
    predicted exactly from them by the rule the build uses."""
    from permed.kb.build import grch37_leave_one_out

    tested, wrong = grch37_leave_one_out(load_kb().genes)
    print(f"leave-one-out: {tested - len(wrong)} of {tested} PyPGx-mapped positions predicted exactly")
    assert tested == 705 and wrong == []


def test_interpolation_agrees_with_exon_boundaries_and_never_extrapolates():
    """Coordinates the interpolation did not use: the inner exon boundaries PyPGx's gene table gives on both
    builds that lie inside an interpolation interval all have its offset; and the rule refuses what it must
    (outside the outermost positions, across an offset change, across a pair with another offset)."""
    import bisect

    from permed.kb.build import _exon_pairs, colinear_offset, grch37_anchors

    exons = _exon_pairs(GENE_TABLE)
    kb = load_kb()
    intervals = {}
    for g, d in kb.genes.items():
        anchors = grch37_anchors(d)
        for loc in d.loci:
            if loc.grch37_interpolated:
                i = bisect.bisect_left(anchors, (loc.position,))
                intervals[(g, anchors[i - 1][0], anchors[i][0])] = loc.position37 - loc.position
    inside = [(g, p38, p37 - p38, off) for (g, lo, hi), off in intervals.items() for p38, p37 in exons.get(g, ())
              if lo < p38 < hi]
    assert len(intervals) == 121 and len(inside) == 281
    assert [x for x in inside if x[2] != x[3]] == []
    anchors = [(100, 5), (200, 5), (300, 7)]
    assert colinear_offset(anchors, 150) == 5
    assert "outside" in colinear_offset(anchors, 50) and "outside" in colinear_offset(anchors, 350)
    assert "changes" in colinear_offset(anchors, 250)
    assert "another offset" in colinear_offset(anchors, 150, [(120, 5), (170, 6)])
    assert colinear_offset(anchors, 150, [(100, 9), (120, 5), (200, 9)]) == 5  # pairs at the ends do not veto


def test_interpolated_positions_are_no_build_evidence_for_the_grch38_index():
    from permed.genotypes.locus_index import GRCH38, locus_index

    idx = locus_index(load_kb(), ["CYP2C19", "CYP2C9"], GRCH38)
    assert ("chr10", RS3758581[1]) in idx.other_sites
    assert ("chr10", RS57700608[1]) not in idx.other_sites and ("chr10", CYP2C9_86[1]) not in idx.other_sites


def test_interpolated_positions_are_no_build_evidence():
    from permed.genotypes.locus_index import GRCH37
    from permed.genotypes.vcf_reader import evidence_sites

    known = evidence_sites(load_kb())[GRCH37]
    assert ("chr10", RS3758581[1]) in known
    assert ("chr10", RS57700608[1]) not in known and ("chr10", CYP2C9_86[1]) not in known


# ---- the acceptance test: 1000 Genomes on GRCh37 gives the same calls -----------------------------------
@pytest.mark.skipif(not DATA.exists(), reason="../shared/data/1kgp-grch38 not available")
def test_1kgp_calls_are_identical_on_grch37(converted):
    ours = match([converted[g] for g in GENES], genes=GENES)
    theirs = match([DATA / f"{g}.vcf.gz" for g in GENES], genes=GENES)
    assert ours.samples == theirs.samples and len(ours.samples) == 3202
    for fi in range(3):
        assert any(n.startswith("read as GRCh37 (from the header") for n in ours.inputs[fi].notices)
    differ = []
    for si, s in enumerate(theirs.samples):
        for g in GENES:
            a, b = theirs.call(si, g), ours.call(si, g)
            # only the unmapped positions may be missing besides what was missing already
            assert set(b.missing_positions) - set(a.missing_positions) <= set(UNMAPPED[g]), (s, g)
            if (a.source_diplotypes, a.status) != (b.source_diplotypes, b.status):
                differ.append((s, g, a.source_diplotypes, b.source_diplotypes))
    assert differ == []  # every sample, every gene
    # the two CYP2C9 *86 carriers (rs369745682, a position PyPGx's table lacks) are seen through the interpolated
    # position; CYP2C9's two unmapped indels are named in a warning
    si = {s: i for i, s in enumerate(ours.samples)}
    for s in ("HG02645", "HG03563"):
        b = ours.call(si[s], "CYP2C9")
        assert b.source_diplotypes == ["*1/*86"]
        ev = {e.position: e for e in b.evidence}
        assert ev[CYP2C9_86[0]].origin == f"GRCh37 chr10:{CYP2C9_86[1]}" and ev[CYP2C9_86[0]].status == "called"
        assert any(w.name == "grch37-unmapped-positions" and "2 of this gene's 83" in w.text for w in b.warnings)
    assert not any(w.name == "grch37-unmapped-positions" for g in ("CYP2C19", "TPMT")
                   for w in ours.call(0, g).warnings)
    # the evidence names the GRCh37 record read
    ev = {e.position: e for e in ours.call(0, "CYP2C19").evidence}
    assert ev[RS3758581[0]].origin == f"GRCh37 chr10:{RS3758581[1]}" and ev[RS3758581[0]].status == "called"


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data/1kgp-grch38 not available")
def test_grch37_index_windows_match_streaming(converted, tmp_path):
    """Indexed GRCh37 files are read through windows at the GRCh37 positions (by chromosome with workers)."""
    import pysam

    gz = tmp_path / "CYP2C19.vcf.gz"
    pysam.tabix_compress(str(converted["CYP2C19"]), str(gz))
    pysam.tabix_index(str(gz), preset="vcf")
    full = match([converted["CYP2C19"]], genes=("CYP2C19",))
    win = match([gz], genes=("CYP2C19",), workers=2)
    for i, j in set(zip(full.choice["CYP2C19"].tolist(), win.choice["CYP2C19"].tolist())):
        assert full.table[i] == win.table[j]
    assert full.inputs[0].notices == win.inputs[0].notices
    assert full.inputs[0].position_warnings == win.inputs[0].position_warnings


# ---- deciding the build -------------------------------------------------------------------------------------
@pytest.mark.skipif(not DATA.exists(), reason="../shared/data/1kgp-grch38 not available")
def test_a_header_without_build_is_read_from_the_records(tmp_path):
    p = write_text(tmp_path / "tpmt.vcf", to_grch37(gzip.open(DATA / "TPMT.vcf.gz", "rt").read(), header="none"))
    cs = match([p], genes=("TPMT",))
    assert any("from the records" in n for n in cs.inputs[0].notices)
    ref = match([DATA / "TPMT.vcf.gz"], genes=("TPMT",))
    assert [c.source_diplotypes for c in cs.table] and all(
        cs.call(si, "TPMT").source_diplotypes == ref.call(si, "TPMT").source_diplotypes for si in range(0, 3202, 7))


def _one_line_refusal(res, name: str, *words: str) -> str:
    assert res.returncode == 2, res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("permed: error: ") and name in lines[0], res.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _example37(tmp_path: Path, header: str = "grch37") -> Path:
    return write_text(tmp_path / f"example37-{header}.vcf", to_grch37(example_text(), header=header))


@pytest.mark.parametrize("header", ["grch37", "none"])
def test_build_grch38_on_a_grch37_file_is_refused(tmp_path, header):
    p = _example37(tmp_path, header)
    res = cli("call", p, "--build", "GRCh38", "-o", tmp_path / "out")
    _one_line_refusal(res, p.name, "looks like GRCh37", "--build GRCh38")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("header", [True, False])
def test_build_grch37_on_a_grch38_file_is_refused(tmp_path, header):
    text = example_text()
    if not header:
        text = "\n".join(x for x in text.splitlines() if not x.startswith(("##contig", "##reference"))) + "\n"
    p = write_text(tmp_path / "patient38.vcf", text)
    res = cli("call", p, "--build", "grch37", "-o", tmp_path / "out")
    _one_line_refusal(res, p.name, "looks like GRCh38", "--build GRCh37")


def test_a_header_contradicting_the_records_is_refused(tmp_path):
    # GRCh38 contig lengths, GRCh37 records: which is right cannot be told, so nothing is guessed
    lines = to_grch37(example_text(), header="none").splitlines(keepends=True)
    head = [x for x in example_text().splitlines(keepends=True) if x.startswith("##contig")]
    p = write_text(tmp_path / "mixed.vcf", lines[0] + "".join(head) + "".join(lines[1:]))
    _one_line_refusal(cli("call", p, "-o", tmp_path / "out"), p.name, "looks like GRCh37", "assembly GRCh38",
                      "disagree")


def test_a_bad_build_option_is_a_usage_error(tmp_path):
    res = cli("call", "--example", "--build", "hg18", "-o", tmp_path / "out")
    assert res.returncode == 64 and "--build" in res.stderr
    with pytest.raises(ConfigurationError):
        Options(build="NCBI36")
    assert Options(build="grch37").build == "GRCh37"


# ---- the example patient --------------------------------------------------------------------------------
def _calls(cs) -> dict[str, list[str]]:
    return {g: cs.call(0, g).source_diplotypes for g in cs.genes}


@pytest.mark.parametrize("header", ["grch37", "none"])
def test_the_example_patient_on_grch37_gets_the_same_calls(tmp_path, header):
    from permed.examples import example_vcf

    ours = match([_example37(tmp_path, header)])
    theirs = match([example_vcf()])
    assert _calls(ours)["CYP2C19"] == ["*2/*17"] and "c.1905+1G>A" in " ".join(_calls(ours)["DPYD"])
    assert _calls(ours) == _calls(theirs)
    kb = load_kb()
    for g in theirs.genes:
        if theirs.call(0, g).status == "not_called":  # CYP2D6 without --cyp2d6-from-vcf
            continue
        # the example lists every position: only the unmapped ones are missing on GRCh37
        unmapped = {loc.position for loc in kb.genes[g].loci if loc.position37 is None}
        assert set(ours.call(0, g).missing_positions) == unmapped, g


def test_the_report_says_how_the_file_was_read(tmp_path):
    out = tmp_path / "out"
    p = _example37(tmp_path)
    res = cli("call", p, "-o", out, "--genes", "CYP2C19,CYP2C9,DPYD")
    assert res.returncode == 0, res.stderr
    rep = read_report(out / "EXAMPLE-PATIENT.report.json")
    assert rep["inputs"][0]["notices"][0].startswith("read as GRCh37 (from the header")
    assert rep["genes"]["CYP2C19"]["source_diplotypes"] == ["*2/*17"]
    names = [m["name"] for m in rep["genes"]["CYP2C9"]["warnings"]]
    assert names.count("grch37-unmapped-positions") == 1
    html = (out / "EXAMPLE-PATIENT.report.html").read_text(encoding="utf-8")
    assert "read as GRCh37" in html


# ---- positions: unmapped, differing REF, reference fill, gVCF blocks ---------------------------------------
HEADER37 = HEADER.replace("length=133797422", "length=135534747").replace("length=248956422", "length=249250621")


def test_an_unmapped_position_is_missing_and_never_filled(tmp_path):
    # a record at what would be GRCh37's place of CYP2C9's 94949161 deletion (an indel: not interpolated) cannot
    # be found: it is not looked for
    body = rec("chr10", 94949161 + 1759757, "AT", "A", "0/1") + rec("chr10", 96741053, "A", "C", "0/1")  # *3
    p = write_vcf(tmp_path / "x.vcf", body, header=HEADER37)
    for fill in (False, True):
        cs = match([p], genes=("CYP2C9",), missing_to_ref=fill)
        call = cs.call(0, "CYP2C9")
        assert 94949161 in call.missing_positions and "*1/*3" in call.source_diplotypes
        assert [w.name for w in call.warnings].count("grch37-unmapped-positions") == 1
        assert "2 of this gene's 83" in next(w.text for w in call.warnings if w.name == "grch37-unmapped-positions")


def test_an_interpolated_position_is_read_by_its_grch38_base(tmp_path):
    """CYP2C19 rs57700608: read at its interpolated GRCh37 position; a record there with another REF than the
    assumed (GRCh38's) base is discarded with a warning, the position missing, never misread."""
    body = rec("chr10", 96521657, "C", "T", "0/1") + rec("chr10", RS57700608[1], "A", "G", "0/1")
    call = match([write_vcf(tmp_path / "x.vcf", body, header=HEADER37)], genes=("CYP2C19",)).call(0, "CYP2C19")
    ev = {e.position: e for e in call.evidence}
    assert ev[RS57700608[0]].call == "A/G" and ev[RS57700608[0]].origin == f"GRCh37 chr10:{RS57700608[1]}"
    assert not any(w.name == "grch37-unmapped-positions" for w in call.warnings)
    body = rec("chr10", 96521657, "C", "T", "0/1") + rec("chr10", RS57700608[1], "C", "T", "0/1")
    cs = match([write_vcf(tmp_path / "y.vcf", body, header=HEADER37)], genes=("CYP2C19",))
    assert RS57700608[0] in cs.call(0, "CYP2C19").missing_positions
    assert any("does not match expected reference (A)" in m
               for m in cs.inputs[0].position_warnings[f"chr10:{RS57700608[0]}"])


def test_grch37_reference_is_filled_as_grch37_s_base(tmp_path):
    """rs3758581: GRCh37's reference base is GRCh38's ALT, so a GRCh37 file silent there means G/G."""
    p = write_vcf(tmp_path / "x.vcf", rec("chr10", 96521657, "C", "T", "0/1"), header=HEADER37)
    call = match([p], genes=("CYP2C19",), missing_to_ref=True).call(0, "CYP2C19")
    ev = {e.position: e for e in call.evidence}
    assert ev[RS3758581[0]].call == "G/G" and ev[RS3758581[0]].status == "reference_filled"
    assert call.source_diplotypes == ["*1/*17"]  # G at rs3758581 is *1's allele: not *38


def test_alleles_are_read_by_sequence_where_grch37_s_base_differs(tmp_path):
    body = rec("chr10", 96521657, "C", "T", "0/1") + rec("chr10", RS3758581[1], "G", "A", "0/1")
    call = match([write_vcf(tmp_path / "x.vcf", body, header=HEADER37)], genes=("CYP2C19",)).call(0, "CYP2C19")
    ev = {e.position: e for e in call.evidence}
    assert ev[RS3758581[0]].call == "G/A"
    # a record keeping GRCh38's base as REF at the GRCh37 position is not GRCh37: missing, with a warning
    body = rec("chr10", 96521657, "C", "T", "0/1") + rec("chr10", RS3758581[1], "A", "G", "0/1")
    cs = match([write_vcf(tmp_path / "y.vcf", body, header=HEADER37)], genes=("CYP2C19",))
    call = cs.call(0, "CYP2C19")
    assert RS3758581[0] in call.missing_positions
    assert any("does not match expected reference (G)" in m
               for m in cs.inputs[0].position_warnings[f"chr10:{RS3758581[0]}"])


def test_gvcf_blocks_are_read_at_grch37_positions(tmp_path):
    header = HEADER37 + '##INFO=<ID=END,Number=1,Type=Integer,Description="End">\n'
    body = (rec("chr10", 96521657, "C", "T", "0/1")
            + rec("chr10", RS3758581[1] - 5, "T", "<NON_REF>", "0/0", info=f"END={RS3758581[1] + 5}"))
    cs = match([write_vcf(tmp_path / "x.vcf", body, header=header)], genes=("CYP2C19",))
    ev = {e.position: e for e in cs.call(0, "CYP2C19").evidence}
    # the block's REF base stands for GRCh37's reference at the position it covers: G, GRCh38's ALT
    assert ev[RS3758581[0]].call == "G/G" and ev[RS3758581[0]].origin.startswith("gVCF reference block GRCh37 ")


def test_the_api_takes_build(tmp_path):
    import permed

    res = permed.call(_example37(tmp_path), build="GRCh37", genes=["CYP2C19"])
    assert res.patient("EXAMPLE-PATIENT").genes["CYP2C19"].source_diplotypes == ["*2/*17"]
    with pytest.raises(InputFileError, match="looks like GRCh37"):
        permed.call(_example37(tmp_path), build="GRCh38", genes=["CYP2C19"])


def test_the_unmapped_positions_page_is_current():
    import subprocess
    import sys

    from helpers import ROOT

    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "grch37_unmapped.py"), "--check"])
    assert res.returncode == 0, "docs/grch37-unmapped.md is stale: run scripts/grch37_unmapped.py"


def test_an_interpolated_position_is_never_filled_nor_read_from_a_reference_block(tmp_path):
    """Its GRCh37 base is only assumed: --missing-to-ref leaves rs57700608 missing (other positions are filled),
    and a gVCF reference block over it is not used, with the reason."""
    p = write_vcf(tmp_path / "x.vcf", rec("chr10", 96521657, "C", "T", "0/1"), header=HEADER37)
    call = match([p], genes=("CYP2C19",), missing_to_ref=True).call(0, "CYP2C19")
    ev = {e.position: e for e in call.evidence}
    assert RS57700608[0] in call.missing_positions and ev[RS57700608[0]].status != "reference_filled"
    assert ev[RS3758581[0]].status == "reference_filled"
    header = HEADER37 + '##INFO=<ID=END,Number=1,Type=Integer,Description="End">\n'
    body = (rec("chr10", 96521657, "C", "T", "0/1")
            + rec("chr10", RS57700608[1] - 5, "T", "<NON_REF>", "0/0", info=f"END={RS57700608[1] + 5}"))
    cs = match([write_vcf(tmp_path / "y.vcf", body, header=header)], genes=("CYP2C19",))
    assert RS57700608[0] in cs.call(0, "CYP2C19").missing_positions
    assert any("interpolated" in m for m in cs.inputs[0].position_warnings[f"chr10:{RS57700608[0]}"])
