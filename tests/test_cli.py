"""The `permed call` contract: output files, columns, report fields, determinism, several inputs.

One test runs the command as a real process; the others run it in this process (`cli`), which is the
same code without the interpreter's start-up."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
from helpers import HEADER, cli, example_text, read_report, rec, run_cli, write_vcf

from permed.examples import example_vcf
from permed.report.calls_tsv import COLUMNS

CONTRACT_COLUMNS = ["Sample", "Gene", "Source Diplotype", "Phenotype", "Activity Score", "Match Score",
                    "Missing Positions", "Phased"]


def read_calls(out: Path) -> dict[tuple[str, str], dict]:
    with open(out / "calls.tsv", newline="") as fh:
        return {(r["Sample"], r["Gene"]): r for r in csv.DictReader(fh, delimiter="\t")}


@pytest.fixture(scope="module")
def example_out(tmp_path_factory) -> Path:
    """The README's first command, as a real process: exit 0, the summary table, three files."""
    out = tmp_path_factory.mktemp("example") / "out"
    res = run_cli("call", "--example", "-o", out)
    assert res.returncode == 0, res.stderr
    assert "1 sample(s), 20 gene(s)" in res.stderr and "*2/*17" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "EXAMPLE-PATIENT.report.html", "EXAMPLE-PATIENT.report.json", "calls.tsv"]
    return out


def test_example_patient_calls(example_out):
    calls = read_calls(example_out)
    assert calls[("EXAMPLE-PATIENT", "CYP2C19")]["Source Diplotype"] == "*2/*17"
    assert calls[("EXAMPLE-PATIENT", "DPYD")]["Source Diplotype"] == "c.1905+1G>A (*2A) (heterozygous)"
    assert calls[("EXAMPLE-PATIENT", "CYP2C9")]["Source Diplotype"] == "*1/*1"
    # CYP2D6 is not called from VCF by default, and says so
    assert calls[("EXAMPLE-PATIENT", "CYP2D6")]["Status"] == "not_called"
    assert "cyp2d6-not-called" in calls[("EXAMPLE-PATIENT", "CYP2D6")]["Warnings"]


def test_calls_tsv_header_contract(example_out):
    header = (example_out / "calls.tsv").read_text().splitlines()[0].split("\t")
    assert header[: len(CONTRACT_COLUMNS)] == CONTRACT_COLUMNS
    assert header == COLUMNS
    rows = (example_out / "calls.tsv").read_text().splitlines()[1:]
    assert len(rows) == 20  # every gene PharmCAT calls from VCF, CYP2D6 included as not called
    assert all(len(r.split("\t")) == len(header) for r in rows)


def test_report_json_contract(example_out):
    report = read_report(example_out / "EXAMPLE-PATIENT.report.json")
    assert report["schema"] == "permed.report/1"
    assert report["knowledge_base"]["kb_version"].startswith("2025-11-05")
    assert "CC BY-SA 4.0" in report["knowledge_base"]["licence"]
    src = report["inputs"][0]
    assert src["file"] == "example_patient.vcf"
    assert src["sha256"] == hashlib.sha256(example_vcf().read_bytes()).hexdigest()
    cyp2c19 = report["genes"]["CYP2C19"]
    assert cyp2c19["status"] == "called"
    assert cyp2c19["source_diplotypes"] == ["*2/*17"]
    ev = {e["position"]: e for e in cyp2c19["evidence"]}
    assert ev[94781859]["call"] == "G/A" and ev[94781859]["status"] == "called"
    assert ev[94842866]["call"] == "G/G"
    assert {g["status"] for g in report["genes"].values()} <= {"called", "no_data", "uncallable", "not_called"}
    for g in report["genes"].values():
        assert isinstance(g["warnings"], list)


def test_missing_positions_reported_not_guessed(tmp_path):
    """Absent positions are missing (listed), not reference; --missing-to-ref changes that and says so."""
    lines = example_text().splitlines(keepends=True)
    drop = {"94761900", "94775367"}  # rs12248560 (*17) and rs12769205 (*2)
    kept = [x for x in lines if x.startswith("#") or x.split("\t")[1] not in drop]
    p = tmp_path / "gaps.vcf"
    p.write_text("".join(kept))
    out = tmp_path / "out"
    assert cli("call", p, "-o", out).returncode == 0
    row = read_calls(out)[("EXAMPLE-PATIENT", "CYP2C19")]
    assert row["Missing Positions"] == "94761900;94775367"
    # without the *17-defining position, *17 cannot be told from *1: the top call loses it
    assert row["Source Diplotype"] == "*1/*2"
    out_all = tmp_path / "all"
    assert cli("call", p, "-o", out_all, "--all-matches").returncode == 0
    assert "*2/*17" in read_calls(out_all)[("EXAMPLE-PATIENT", "CYP2C19")]["Source Diplotype"].split(" OR ")
    report = read_report(out / "EXAMPLE-PATIENT.report.json")
    assert report["genes"]["CYP2C19"]["missing_positions"] == [94761900, 94775367]

    out2 = tmp_path / "out2"
    assert cli("call", p, "-o", out2, "--missing-to-ref").returncode == 0
    report2 = read_report(out2 / "EXAMPLE-PATIENT.report.json")
    assert report2["options"]["missing_to_ref"] is True
    assert report2["genes"]["CYP2C19"]["missing_positions"] == []
    ev = {e["position"]: e for e in report2["genes"]["CYP2C19"]["evidence"]}
    assert ev[94761900]["status"] == "reference_filled"
    assert "reference-filled" in read_calls(out2)[("EXAMPLE-PATIENT", "CYP2C19")]["Warnings"]


def test_cyp2d6_from_vcf_carries_warning(tmp_path):
    out = tmp_path / "out"
    assert cli("call", "--example", "-o", out, "--cyp2d6-from-vcf").returncode == 0
    row = read_calls(out)[("EXAMPLE-PATIENT", "CYP2D6")]
    assert row["Source Diplotype"] == "*1/*1"
    assert "cyp2d6-from-vcf" in row["Warnings"]
    report = read_report(out / "EXAMPLE-PATIENT.report.json")
    assert any(w["name"] == "cyp2d6-from-vcf" for w in report["genes"]["CYP2D6"]["warnings"])


def _multisample(tmp_path: Path, n: int = 6) -> Path:
    """The example's positions for several samples with different CYP2C19/TPMT genotypes."""
    lines = example_text().splitlines()
    head = [x for x in lines if x.startswith("##")]
    body = [x.split("\t") for x in lines if not x.startswith("#")]
    samples = [f"P{i}" for i in range(n)]
    variants = {94781859: ["0/0", "0/1", "1/1", "0/1", "0/0", "0|1"],
                94761900: ["0/0", "0/0", "0/0", "0/1", "1/1", "1|0"]}
    out = ["\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *samples])]
    for f in body:
        pos = int(f[1])
        # rs3758581 (94842866) G/G for everyone: the allele shared by *1, *2 and *17 (not *38)
        gts = ["1/1"] * n if pos == 94842866 else variants.get(pos, ["0/0"] * n)[:n]
        out.append("\t".join(f[:9] + gts))
    p = tmp_path / "cohort.vcf"
    p.write_text("\n".join(head + out) + "\n")
    return p


def test_multisample_and_worker_count_do_not_change_output(tmp_path):
    p = _multisample(tmp_path)
    env_outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        res = cli("call", p, "-o", out, "--workers", workers)
        assert res.returncode == 0, res.stderr
        env_outs.append(out)
    a, b = env_outs
    assert (a / "calls.tsv").read_bytes() == (b / "calls.tsv").read_bytes()
    for f in a.glob("*.report.json"):
        ja, jb = read_report(f), read_report(b / f.name)
        ja.pop("created"), jb.pop("created")
        assert ja == jb
    calls = read_calls(a)
    assert calls[("P0", "CYP2C19")]["Source Diplotype"] == "*1/*1"
    # rs4244285 A/A without rs12769205 matches no defined allele: reported as not callable, not guessed
    assert calls[("P2", "CYP2C19")]["Source Diplotype"] == "Unknown/Unknown"
    assert calls[("P2", "CYP2C19")]["Status"] == "uncallable"
    assert calls[("P4", "CYP2C19")]["Source Diplotype"] == "*17/*17"
    assert calls[("P5", "CYP2C19")]["Phased"] == "no"  # one phased position does not make the gene phased


def test_reports_are_byte_identical_with_source_date_epoch(tmp_path, monkeypatch):
    p = _multisample(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764000000")
    outs = []
    for workers in ("1", "2"):
        out = tmp_path / f"e{workers}"
        assert cli("call", p, "-o", out, "--workers", workers).returncode == 0
        outs.append(out)
    for f in outs[0].iterdir():
        assert f.read_bytes() == (outs[1] / f.name).read_bytes(), f.name


def test_several_inputs_split_by_chromosome(tmp_path):
    """Per-chromosome files of the same patient combine into one report; positions never clash."""
    lines = example_text().splitlines(keepends=True)
    head = [x for x in lines if x.startswith("#")]
    body = [x for x in lines if not x.startswith("#")]
    chr10 = tmp_path / "p_chr10.vcf"
    rest = tmp_path / "p_rest.vcf"
    chr10.write_text("".join(head + [x for x in body if x.startswith("chr10\t")]))
    rest.write_text("".join(head + [x for x in body if not x.startswith("chr10\t")]))
    out = tmp_path / "out"
    res = cli("call", chr10, rest, "-o", out, "--workers", "2")
    assert res.returncode == 0, res.stderr
    calls = read_calls(out)
    assert calls[("EXAMPLE-PATIENT", "CYP2C19")]["Source Diplotype"] == "*2/*17"
    assert calls[("EXAMPLE-PATIENT", "CYP2C19")]["Input File"] == "p_chr10.vcf"
    assert calls[("EXAMPLE-PATIENT", "DPYD")]["Input File"] == "p_rest.vcf"
    assert len(list(out.glob("*.report.json"))) == 1


def test_same_gene_in_two_files_is_refused(tmp_path):
    a = write_vcf(tmp_path / "a.vcf", rec("chr10", 94761900, "C", "T", "0/1"))
    b = write_vcf(tmp_path / "b.vcf", rec("chr10", 94761900, "C", "T", "0/0"))
    res = cli("call", a, b, "-o", tmp_path / "out")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "CYP2C19" in res.stderr and "a.vcf" in res.stderr and "b.vcf" in res.stderr


def test_kb_info(tmp_path):
    res = cli("kb", "info")
    assert res.returncode == 0, res.stderr
    assert "2025-11-05-00-25" in res.stdout
    assert "CC BY-SA 4.0" in res.stdout
    assert "CYP2C19" in res.stdout


def test_sample_names_become_safe_file_names(tmp_path):
    p = write_vcf(tmp_path / "odd.vcf", rec("chr10", 94761900, "C", "T", "0/1", "0/0"),
                  samples=("../evil", "ok sample"))
    out = tmp_path / "out"
    assert cli("call", p, "-o", out).returncode == 0
    names = sorted(f.name for f in out.iterdir())
    # inside OUT, and visible: leading dots would have made `../evil` the hidden file `.._evil...`
    assert names == ["___evil.report.html", "___evil.report.json", "calls.tsv", "ok_sample.report.html",
                     "ok_sample.report.json"]
    assert not (tmp_path / "evil.report.json").exists()


def test_header_helper_is_grch38():
    assert "length=133797422" in HEADER


def test_the_call_path_imports_only_what_it_uses(tmp_path):
    """`permed call` loads no service, cluster, Parquet or PDF library (they cost start-up time)."""
    import subprocess
    import sys

    code = ("import sys, io, contextlib\nfrom permed.cli import run\n"
            "with contextlib.redirect_stderr(io.StringIO()):\n"
            f"    assert run(['call', '--example', '-o', {str(tmp_path / 'out')!r}]) == 0\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    loaded = set(res.stdout.split())
    assert {"permed", "cyvcf2", "jinja2"} <= loaded
    heavy = {"fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "dask", "distributed", "matplotlib",
             "weasyprint", "pyarrow", "duckdb", "polars", "multiprocessing", "babel"}
    assert not loaded & heavy, sorted(loaded & heavy)


def test_version_names_the_knowledge_base_too():
    from permed import __version__
    from permed.api import load_kb

    kb = load_kb()
    res = cli("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == (f"permed {__version__}, knowledge base {kb.kb_version} (built {kb.built}, "
                                  f"sha256 {kb.sha256[:12]})")
