"""CYP2D6 outside calls in copy-number-aware callers' formats: Cyrius, Aldy, StellarPGx, PyPGx.

The files below are written by hand in each tool's documented shape, with our own samples and calls:
* Cyrius: TSV `Sample, Genotype, Filter`; Filter PASS, More_than_one_possible_genotype (two genotypes
  joined by ";"), Not_assigned_to_haplotypes (alleles joined by "_"), LowQ_high_CN; Genotype None =
  no call. https://github.com/Illumina/Cyrius (README.md, "Interpreting the output"; star_caller.py
  writes the header).
* Aldy: `.aldy` file, header `#Sample Gene SolutionID Major Minor Copy Allele Location Type Coverage Effect
  dbSNP Code Status`, `#Solution N:` comments, one row per allele copy and variant; duplications are
  written as repeated copies (`*1/*4+*4`), `-like` marks a novel function-changing variant.
  https://github.com/0xTCG/aldy (README.rst, "Output"; aldy/diplotype.py OUTPUT_COLS).
* StellarPGx: one `<sample>_2d6.alleles` report per sample with `Result:`, `Activity score:`,
  `Metaboliser status:` blocks. https://github.com/SBIMB/StellarPGx (README.md, "Expected output").
* PyPGx: `data.tsv` of `results.zip` (SampleTable[Results]): unnamed sample column, `Genotype, Phenotype,
  Haplotype1, Haplotype2, AlternativePhase, VariantData, CNV`; the archive holds `metadata.txt`
  (`key=value`) and `data.tsv` in a folder. https://pypgx.readthedocs.io (tutorials, "GeT-RM WGS
  tutorial"; pypgx/sdk/utils.py Archive).

Expected phenotypes and activity scores are CPIC's (the KB's CYP2D6 tables): *1 1.0, *2 1.0, *4 0,
*5 0, *10 0.25, *36 0, *68 0, *13 0, *2x2 2.0; score 0 Poor, 0.25-1.0 Intermediate, 1.25-2.25 Normal,
above 2.25 Ultrarapid Metabolizer.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from helpers import cli, read_report, two_patient_text

import permed
from permed.examples import example_vcf
from permed.phenotype.caller_formats import detect_format

CYRIUS = (
    "Sample\tGenotype\tFilter\n"
    "NORMAL\t*1/*2\tPASS\n"
    "DUP\t*1/*2x2\tPASS\n"
    "DEL\t*4/*5\tPASS\n"
    "HYBRID\t*1/*10+*36\tPASS\n"
    "NOCALL\tNone\tNone\n"
    "TWO\t*1/*46;*43/*45\tMore_than_one_possible_genotype\n"
    "UNASSIGNED\t*1_*2_*68\tNot_assigned_to_haplotypes\n"
    "HIGHCN\t*1/*1x5\tLowQ_high_CN\n"
)

ALDY_HEADER = "#" + "\t".join(("Sample Gene SolutionID Major Minor Copy Allele Location Type Coverage Effect dbSNP "
                               "Code Status").split()) + "\n"
ALDY = ALDY_HEADER + (
    "#Solution 1: *1, *4.001, *4.001\n"
    "A1\tCYP2D6\t1\t*1/*4+*4\t1;4.001;4.001\t0\t1\t\t\t\t\t\t\t\n"
    "A1\tCYP2D6\t1\t*1/*4+*4\t1;4.001;4.001\t1\t4.001\t42128945\tSNP.CT\t30\tDISRUPTING\trs3892097\t\tNORMAL\n"
    "A1\tCYP2D6\t1\t*1/*4+*4\t1;4.001;4.001\t2\t4.001\t42128945\tSNP.CT\t30\tDISRUPTING\trs3892097\t\tNORMAL\n"
    "#Solution 1: *36, *10, *36, *10\n"
    "A2\tCYP2D6\t1\t*36+*10/*36+*10\t36;10;36;10\t0\t36\t\t\t\t\t\t\t\n"
    "#Solution 1: *1, *2\n"
    "A3\tCYP2D6\t1\t*1/*2\t1;2\t0\t1\t\t\t\t\t\t\t\n"
    "#Solution 2: *1, *41\n"
    "A3\tCYP2D6\t2\t*1/*41\t1;41\t0\t1\t\t\t\t\t\t\t\n"
    "#Solution 1: *2, *5\n"
    "A4\tCYP2D6\t1\t*2/*5\t2;5\t0\t2\t\t\t\t\t\t\t\n"
    "#Solution 2: *2, *5\n"
    "A4\tCYP2D6\t2\t*2/*5\t2.001;5\t0\t2.001\t\t\t\t\t\t\t\n"
    "#Solution 1: *1-like, *4\n"
    "A5\tCYP2D6\t1\t*1-like/*4\t1;4\t0\t1\t\t\t\t\t\t\t\n"
    "A1\tCYP2C19\t1\t*1/*2\t1;2\t0\t1\t\t\t\t\t\t\t\n"
)

STELLAR_TEMPLATE = """--------------------------------------------

CYP2D6 Star Allele Calling with StellarPGx

--------------------------------------------

Initially computed CN = {cn}


Core variants:
42126611~C>G~0/1


Candidate alleles:
['{cand}']


Result:
{result}


Activity score:
{score}


Metaboliser status:
{status}
"""

PYPGX = (
    "\tGenotype\tPhenotype\tHaplotype1\tHaplotype2\tAlternativePhase\tVariantData\tCNV\n"
    "P1\t*2x2/*10\tNormal Metabolizer\t*10;*2;\t*2;\t;\t*10:22-42523943-A-G:0.4;*2:default;\tDuplication\n"
    "P2\t*4/*5\tPoor Metabolizer\t*4;\t*5;\t;\t*4:22-42524947-C-T:1.0;\tDeletionHet\n"
    "P3\tIndeterminate\tIndeterminate\t;\t;\t;\t;\tUnknown\n"
    "P4\t*68+*4/*1\tIntermediate Metabolizer\t*68;*4;\t*1;\t;\t;\tTandem2A\n"
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _d6(res, sample: str):
    return res.patient(sample).genes["CYP2D6"]


def _texts(gene) -> str:
    return " | ".join(m.text for m in gene.messages)


@pytest.fixture(scope="module")
def cyrius_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("cyrius")
    return permed.call(outside_calls=_write(d, "cyrius.tsv", CYRIUS), medications="codeine")


@pytest.mark.parametrize("sample,call,phenotype,score", [
    ("NORMAL", "*1/*2", "Normal Metabolizer", "2.0"),
    ("DUP", "*1/*2x2", "Ultrarapid Metabolizer", "3.0"),  # 1.0 + 2 x 1.0
    ("DEL", "*4/*5", "Poor Metabolizer", "0.0"),
    ("HYBRID", "*1/*36 + *10", "Normal Metabolizer", "1.25"),  # 1.0 + 0 + 0.25, hybrid written first
])
def test_cyrius_calls(cyrius_run, sample, call, phenotype, score):
    g = _d6(cyrius_run, sample)
    assert g.status == "outside_call" and g.outside_call
    assert g.print_calls == [call]
    assert g.phenotypes == [phenotype] and g.activity_score == score


@pytest.mark.parametrize("sample,reason", [
    ("NOCALL", "Cyrius made no call"),
    ("TWO", "cannot tell the possible genotypes apart"),
    ("UNASSIGNED", "could not assign them to the two haplotypes"),
    ("HIGHCN", "low quality (high copy number)"),
])
def test_cyrius_uncertain_calls_are_not_called(cyrius_run, sample, reason):
    g = _d6(cyrius_run, sample)
    assert g.status == "outside_call_unusable" and not g.reportable
    assert g.print_calls == ["Not called"]
    assert reason in _texts(g) and "cyrius.tsv:" in _texts(g)


def test_outside_calls_only_gives_one_patient_per_row(cyrius_run):
    assert cyrius_run.samples == ["NORMAL", "DUP", "DEL", "HYBRID", "NOCALL", "TWO", "UNASSIGNED", "HIGHCN"]


def test_codeine_advice_from_a_cyrius_row(cyrius_run):
    um = cyrius_run.patient("DUP")
    (rec,) = um.drugs["codeine"].sources["CPIC"].recommendations
    assert rec.action == "avoid" and rec.genotype[0].lookup_key == "3.0"
    assert "codeine" in um.actionable_drugs
    nm = cyrius_run.patient("NORMAL")
    assert nm.drugs["codeine"].sources["CPIC"].recommendations[0].action == "standard"
    assert cyrius_run.patient("DEL").drugs["codeine"].sources["CPIC"].recommendations[0].action == "avoid"


def test_aldy(tmp_path):
    res = permed.call(outside_calls=_write(tmp_path, "NA.CYP2D6.aldy", ALDY))
    assert res.samples == ["A1", "A2", "A3", "A4", "A5"]
    a1 = _d6(res, "A1")  # *4+*4: two copies of *4 on one chromosome
    assert a1.print_calls == ["*1/*4x2"] and a1.phenotypes == ["Intermediate Metabolizer"]
    assert a1.activity_score == "1.0"
    a2 = _d6(res, "A2")
    assert a2.print_calls == ["*36 + *10/*36 + *10"] and a2.activity_score == "0.5"
    assert a2.phenotypes == ["Intermediate Metabolizer"]
    a3 = _d6(res, "A3")  # two equally good solutions that differ: never pick one
    assert a3.print_calls == ["Not called"] and "2 equally good solutions (*1/*2; *1/*41)" in _texts(a3)
    a4 = _d6(res, "A4")  # solutions that differ in sub-alleles only agree on the major diplotype
    assert a4.print_calls == ["*2/*5"] and a4.phenotypes == ["Intermediate Metabolizer"]
    a5 = _d6(res, "A5")
    assert a5.print_calls == ["Not called"] and "novel variant" in _texts(a5)
    assert any("CYP2C19 ignored" in w for w in res.phenotypes.outside_warnings)


def _stellar(tmp_path: Path, sample: str, result: str, score: str = "1.0", status: str = "x") -> Path:
    return _write(tmp_path, f"{sample}_2d6.alleles",
                  STELLAR_TEMPLATE.format(cn=3, cand="2.v1_4.v1", result=result, score=score, status=status))


def test_stellarpgx_one_file_per_sample(tmp_path):
    files = [
        _stellar(tmp_path, "ST1", "*2/*68+*4", "1.0", "Intermediate metaboliser (IM)"),
        _stellar(tmp_path, "ST2", "*1/*1x2", "3.0", "Ultrarapid metaboliser (UM)"),
        _stellar(tmp_path, "ST3", "Possible novel allele or suballele present: interpret with caution",
                 "Indeterminate", "Indeterminate"),
        _stellar(tmp_path, "ST4", "*1/*2 or *1/*41", "Indeterminate", "Indeterminate"),
        _stellar(tmp_path, "ST5", "*1/*2\tPossible CYP2D6 gene deletion (*5) present"),
    ]
    res = permed.call(outside_calls=files)
    assert res.samples == ["ST1", "ST2", "ST3", "ST4", "ST5"]
    st1 = _d6(res, "ST1")
    assert st1.print_calls == ["*2/*68 + *4"] and st1.activity_score == "1.0"
    assert st1.phenotypes == ["Intermediate Metabolizer"]
    st2 = _d6(res, "ST2")
    assert st2.print_calls == ["*1/*1x2"] and st2.phenotypes == ["Ultrarapid Metabolizer"]
    for sample, why in (("ST3", "novel allele"), ("ST4", "several possible genotypes"),
                        ("ST5", "gene deletion (*5) present")):
        g = _d6(res, sample)
        assert g.print_calls == ["Not called"] and why in _texts(g), sample


def test_pypgx_data_tsv_and_results_zip(tmp_path):
    res = permed.call(outside_calls=_write(tmp_path, "data.tsv", PYPGX))
    p1 = _d6(res, "P1")
    assert p1.print_calls == ["*2x2/*10"] and p1.activity_score == "2.25"
    assert p1.phenotypes == ["Normal Metabolizer"]
    assert _d6(res, "P2").phenotypes == ["Poor Metabolizer"] and _d6(res, "P2").activity_score == "0.0"
    p3 = _d6(res, "P3")
    assert p3.print_calls == ["Not called"] and "Indeterminate (CNV Unknown)" in _texts(p3)
    assert _d6(res, "P4").print_calls == ["*1/*68 + *4"] and _d6(res, "P4").activity_score == "1.0"

    archive = tmp_path / "results.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("tmp1234/metadata.txt", "Gene=CYP2D6\nAssembly=GRCh38\nSemanticType=SampleTable[Results]\n")
        zf.writestr("tmp1234/data.tsv", PYPGX)
    res = permed.call(outside_calls=archive)
    assert _d6(res, "P1").activity_score == "2.25" and res.samples == ["P1", "P2", "P3", "P4"]


def test_pypgx_archive_of_another_gene_is_refused(tmp_path):
    archive = tmp_path / "results.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("t/metadata.txt", "Gene=CYP2C19\nSemanticType=SampleTable[Results]\n")
        zf.writestr("t/data.tsv", PYPGX)
    res = cli("call", "--outside-calls", archive, "-o", tmp_path / "out")
    assert res.returncode == 2 and "CYP2C19" in res.stderr and "results.zip" in res.stderr


def test_copy_numbers_and_notation():
    """Copy numbers beyond the table follow CPIC's rule; what cannot be valued is not called."""
    from permed.api import engine
    from permed.phenotype.caller_formats import _NotCalled, resolve_genotype

    ann = engine().phenotyper.annotator("CYP2D6")
    assert resolve_genotype("*1/*1x3", "T", ann)[:2] == (["*1", "*1x3"], None)  # looked up as *1x≥3
    names, score, notes = resolve_genotype("*10/*10x3", "T", ann)  # 0.25 + 3 x 0.25
    assert names == ["*10", "*10x3"] and score == "1.0" and "CPIC" in notes[0]
    assert resolve_genotype("*1/*4xN", "T", ann)[1] == "1.0"  # any number of no-function copies is 0
    assert resolve_genotype("*4A+*68/*1", "T", ann)[0] == ["*68 + *4", "*1"]  # legacy letter: core allele
    assert resolve_genotype("*1/*10+*36+*36", "T", ann)[0] == ["*1", "*36x2 + *10"]
    for bad, why in (("*1/*2xN", "number of *2 copies"), ("*1/*999", "not in the knowledge base"),
                     ("*5/*other", "not a CYP2D6 star allele"), ("*41+rs368858603/*2", "rs368858603"),
                     ("*1/*2/*3", "two haplotypes")):
        with pytest.raises(_NotCalled, match=why.replace("*", r"\*")):
            resolve_genotype(bad, "T", ann)


def test_format_detection(tmp_path):
    assert detect_format(CYRIUS.encode(), CYRIUS) == "cyrius"
    assert detect_format(ALDY.encode(), ALDY) == "aldy"
    assert detect_format(b"", "# Aldy v1.3\nSample\tGene\tSolutionID\tMajor\n") == "aldy"
    stellar = STELLAR_TEMPLATE.format(cn=2, cand="1_2", result="*1/*2", score="2.0", status="NM")
    assert detect_format(stellar.encode(), stellar) == "stellarpgx"
    assert detect_format(PYPGX.encode(), PYPGX) == "pypgx"
    assert detect_format(b"PK\x03\x04rest", None) == "pypgx"
    assert detect_format(b"CYP2D6\t*1/*4\n", "CYP2D6\t*1/*4\n") == "pharmcat"


def test_format_can_be_forced(tmp_path):
    f = _write(tmp_path, "calls.txt", CYRIUS)
    res = permed.call(outside_calls=f, outside_calls_format="cyrius")
    assert _d6(res, "DUP").activity_score == "3.0"
    # read as PharmCAT's TSV, the Cyrius rows name no known gene: every sample's CYP2D6 stays uncalled
    res = cli("call", example_vcf(), "--outside-calls", f, "--outside-calls-format", "pharmcat",
              "-o", tmp_path / "o1", "--format", "json")
    assert res.returncode == 0 and "unknown gene 'Sample'" in res.stderr
    assert read_report(tmp_path / "o1" / "EXAMPLE-PATIENT.report.json")["genes"]["CYP2D6"]["outside_call"] is False
    res = cli("call", "--outside-calls", f, "--outside-calls-format", "aldy", "-o", tmp_path / "o2")
    assert res.returncode == 2 and "calls.txt:1: not in Aldy's format" in res.stderr
    res = cli("call", "--outside-calls", f, "--outside-calls-format", "stargazer", "-o", tmp_path / "o3")
    assert res.returncode == 64 and "--outside-calls-format" in res.stderr


@pytest.mark.parametrize("name,text,where,what", [
    ("short.tsv", "Sample\tGenotype\tFilter\nS1\t*1/*2\tPASS\nS2\t*1/*4\n", "short.tsv:3", "TAB-separated fields"),
    ("nosample.tsv", "Sample\tGenotype\tFilter\n\t*1/*2\tPASS\n", "nosample.tsv:2", "names no sample"),
    ("x.aldy", ALDY_HEADER + "A1\tCYP2D6\n", "x.aldy:2", "TAB-separated fields"),
    ("two_2d6.alleles", STELLAR_TEMPLATE * 2, "two_2d6.alleles:", "one file per sample"),
    ("res_2d6.alleles", "CYP2D6 Star Allele Calling with StellarPGx\n\nActivity score:\n1.0\n", "res_2d6.alleles",
     "no 'Result:' line"),
    ("p.tsv", "\tGenotype\tPhenotype\tHaplotype1\tHaplotype2\n\t*1/*2\tNM\t*1;\t*2;\n", "p.tsv:2", "names no sample"),
])
def test_bad_files_are_one_line_errors(tmp_path, name, text, where, what):
    f = _write(tmp_path, name, text)
    res = cli("call", example_vcf(), "--outside-calls", f, "-o", tmp_path / "out")
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert where in res.stderr and what in res.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_binary_file_is_a_user_error(tmp_path):
    f = tmp_path / "cyrius.tsv"
    f.write_bytes(b"Sample\tGenotype\tFilter\nS1\t*1/*2\xff\tPASS\n")
    res = cli("call", "--outside-calls", f, "-o", tmp_path / "out")
    assert res.returncode == 2 and "UTF-8" in res.stderr and "cyrius.tsv" in res.stderr


def test_samples_matched_by_name_with_a_vcf(tmp_path):
    vcf = _write(tmp_path, "two.vcf", two_patient_text())
    f = _write(tmp_path, "cyrius.tsv", "Sample\tGenotype\tFilter\nPAT-A\t*1/*2x2\tPASS\nPAT-Z\t*4/*5\tPASS\n")
    out = tmp_path / "out"
    res = cli("call", vcf, "--outside-calls", f, "-o", out, "--format", "json")
    assert res.returncode == 0, res.stderr
    assert "1 sample(s) not in the VCF ignored: PAT-Z" in res.stderr
    a = read_report(out / "PAT-A.report.json")["genes"]
    assert a["CYP2D6"]["print_calls"] == ["*1/*2x2"] and a["CYP2D6"]["phenotypes"] == ["Ultrarapid Metabolizer"]
    assert a["CYP2C19"]["source_diplotypes"] == ["*2/*17"]  # the other genes still come from the VCF
    b = read_report(out / "PAT-B.report.json")["genes"]["CYP2D6"]
    assert b["print_calls"] == ["Not called"] and b["reportable"] is False
    assert any("no CYP2D6 row for this sample" in m["text"] for m in b["messages"])
    assert not (out / "PAT-Z.report.json").exists()


def test_example_patient_and_duplicate_rows(tmp_path):
    f = _write(tmp_path, "c.tsv", "Sample\tGenotype\tFilter\nEXAMPLE-PATIENT\t*1/*4\tPASS\n")
    g = _d6(permed.call(example_vcf(), outside_calls=f), "EXAMPLE-PATIENT")
    assert g.print_calls == ["*1/*4"] and g.phenotypes == ["Intermediate Metabolizer"] and g.activity_score == "1.0"
    f = _write(tmp_path, "d.tsv", "Sample\tGenotype\tFilter\nEXAMPLE-PATIENT\t*1/*4\tPASS\n"
               "EXAMPLE-PATIENT\t*1/*1\tPASS\n")
    g = _d6(permed.call(example_vcf(), outside_calls=f), "EXAMPLE-PATIENT")
    assert g.print_calls == ["Not called"] and "another row at" in _texts(g)


def test_pharmcat_format_still_applies_to_every_sample(tmp_path):
    vcf = _write(tmp_path, "two.vcf", two_patient_text())
    f = _write(tmp_path, "oc.tsv", "CYP2D6\t*1/*4\n")
    res = permed.call(vcf, outside_calls=f)
    assert [_d6(res, s).print_calls for s in ("PAT-A", "PAT-B")] == [["*1/*4"], ["*1/*4"]]


def test_cohort_matches_samples_by_name(tmp_path):
    vcf = _write(tmp_path, "two.vcf", two_patient_text())
    f = _write(tmp_path, "cyrius.tsv", "Sample\tGenotype\tFilter\nPAT-B\t*4/*5\tPASS\nPAT-A\t*1/*10+*36\tPASS\n")
    tables = permed.cohort([vcf], outside_calls=f)
    rows = {r["sample"]: r for r in tables.calls.to_pylist() if r["gene"] == "CYP2D6"}
    assert (rows["PAT-A"]["diplotype"], rows["PAT-A"]["phenotype"], rows["PAT-A"]["activity_score"]) == (
        "*1/*36 + *10", "Normal Metabolizer", "1.25")
    assert (rows["PAT-B"]["phenotype"], rows["PAT-B"]["activity_score"]) == ("Poor Metabolizer", "0.0")
    assert rows["PAT-A"]["outside_call"] and rows["PAT-A"]["status"] == "outside_call"
    out = tmp_path / "cohort"
    res = cli("cohort", vcf, "--outside-calls", f, "--outside-calls-format", "cyrius", "-o", out, "-q")
    assert res.returncode == 0, res.stderr
    q = cli("query", out, "--sql", "SELECT sample, phenotype FROM calls WHERE gene = 'CYP2D6' ORDER BY sample",
            "--format", "tsv")
    assert q.stdout.splitlines()[1:] == ["PAT-A\tNormal Metabolizer", "PAT-B\tPoor Metabolizer"]


def test_many_unused_rows_are_summarised(tmp_path):
    """A cohort's no-calls are each explained in the sample's report; the log lists the first ones only."""
    rows = "".join(f"S{i}\tNone\tNone\n" for i in range(30))
    res = permed.call(outside_calls=_write(tmp_path, "c.tsv", "Sample\tGenotype\tFilter\n" + rows))
    warnings = res.phenotypes.outside_warnings
    assert len(warnings) == 11 and "c.tsv:2: sample S0: Cyrius made no call" in warnings[0]
    assert warnings[-1].endswith("c.tsv: 20 more CYP2D6 row(s) not used (see each sample's report)")
    assert "Cyrius made no call" in _texts(_d6(res, "S29"))
