"""The Snakemake wrapper (workflows/snakemake/Snakefile) runs permed over several VCFs, with Snakemake
installed from PyPI into a venv of its own (as a pipeline would have it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import two_patient_text

from permed.examples import example_vcf

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = "snakemake==9.27.1"


@pytest.fixture(scope="module")
def snakemake(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("snakemake-venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([venv / "bin" / "pip", "install", "-q", SNAKEMAKE], check=True, capture_output=True)
    return venv / "bin" / "snakemake"


def test_the_snakefile_calls_every_vcf_and_the_cohort(snakemake, tmp_path):
    two = tmp_path / "two.vcf"
    two.write_text(two_patient_text(), encoding="utf-8")
    config = tmp_path / "config.yaml"
    permed = Path(sys.executable).parent / "permed"
    config.write_text(f"vcfs:\n  example: {example_vcf()}\n  two: {two}\nout: {tmp_path / 'res'}\n"
                      f"formats: html,fhir\ncohort: true\npermed: {permed}\n", encoding="utf-8")
    run = subprocess.run([snakemake, "-s", ROOT / "workflows" / "snakemake" / "Snakefile", "--cores", "2",
                          "--configfile", config, "--directory", tmp_path], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    res = tmp_path / "res"
    assert (res / "calls" / "example" / "EXAMPLE-PATIENT.fhir.json").is_file()
    assert {p.name for p in (res / "calls" / "two").glob("*.report.html")} == {"PAT-A.report.html",
                                                                               "PAT-B.report.html"}
    calls = (res / "calls" / "two" / "calls.tsv").read_text(encoding="utf-8")
    assert "PAT-A" in calls and "*2/*17" in calls
    assert (res / "cohort" / "calls.parquet").is_file()
    # a second run has nothing to do
    again = subprocess.run([snakemake, "-s", ROOT / "workflows" / "snakemake" / "Snakefile", "--cores", "2",
                            "--configfile", config, "--directory", tmp_path], capture_output=True, text=True)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
