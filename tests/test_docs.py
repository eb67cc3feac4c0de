"""The documentation's examples run: docs/api.md and the package's docstrings (doctest), and the
README's Python API example exactly as written, on files made for it."""

from __future__ import annotations

import doctest
import gzip
import importlib
from pathlib import Path

from cyvcf2 import VCF, Writer
from helpers import ROOT, example_text, two_patient_text

DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_api_page_examples():
    result = doctest.testfile(str(ROOT / "docs" / "api.md"), module_relative=False, optionflags=DOCTEST_FLAGS)
    assert result.attempted >= 30 and result.failed == 0, result


def test_docstring_examples():
    for name in ("permed.api", "permed.examples"):
        result = doctest.testmod(importlib.import_module(name), optionflags=DOCTEST_FLAGS)
        assert result.attempted >= 1 and result.failed == 0, (name, result)


def _write_bcf(text: str, path: Path, keep) -> None:
    plain = path.with_suffix(".vcf")
    plain.write_text("".join(x for x in text.splitlines(keepends=True) if x.startswith("#") or keep(x)))
    src = VCF(str(plain))
    out = Writer(str(path), src, mode="wb")
    for rec in src:
        out.write_record(rec)
    out.close()
    plain.unlink()


def test_the_issued_example_runs_as_written(tmp_path, monkeypatch):
    """The four lines of docs/api.md's first example, on a patient P1 and a cohort split by chromosome."""
    with gzip.open(tmp_path / "patient.vcf.gz", "wt") as fh:
        fh.write(example_text().replace("EXAMPLE-PATIENT", "P1"))
    cohort_text = two_patient_text("C1", "C2")
    _write_bcf(cohort_text, tmp_path / "chr10.bcf", lambda line: line.startswith("chr10\t"))
    _write_bcf(cohort_text, tmp_path / "chr22.bcf", lambda line: not line.startswith("chr10\t"))
    (tmp_path / "pop.tsv").write_text("sample\tpopulation\tsuperpopulation\nC1\tGBR\tEUR\nC2\tCHB\tEAS\n")
    source = (ROOT / "docs" / "api.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    assert source.startswith("import permed\nres = permed.call(")
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(source.replace("res.patient(\"P1\").genes[\"CYP2C19\"].phenotypes",
                                "phenotypes = res.patient(\"P1\").genes[\"CYP2C19\"].phenotypes"),
                 "docs/api.md", "exec"), names)
    assert names["phenotypes"] == ["Intermediate Metabolizer"]
    cohort = names["cohort"]
    calls = cohort.calls
    assert calls.num_rows == 2 * 20 and set(calls.column("sample").to_pylist()) == {"C1", "C2"}
    by = {(r["sample"], r["gene"]): r for r in calls.to_pylist()}
    assert by[("C1", "CYP2C19")]["diplotype"] == "*2/*17" and by[("C2", "CYP2C19")]["diplotype"] == "*38/*38"
    assert cohort.samples.to_pylist()[0] == {"sample": "C1", "superpopulation": "EUR", "population": "GBR"}
    assert cohort.to_polars()["frequencies"].height == cohort.frequencies.num_rows
