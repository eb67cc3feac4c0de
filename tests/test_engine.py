"""The one engine: stage results saved and loaded (calls -> phenotypes -> advice) give the same reports,
the public objects behave as documented, and the published report schema is the model's."""

from __future__ import annotations

import json

import pytest
from helpers import REPORT_SCHEMA_FILE, check_report, cli, two_patient_text

import permed
from permed.engine import Inputs
from permed.errors import InputFileError
from permed.examples import example_vcf
from permed.kb.load import seal


@pytest.fixture(scope="module")
def engine():
    return permed.Engine()


def _without_time(report) -> dict:
    data = report.model_dump(mode="json", by_alias=True)
    data.pop("created")
    return data


def test_saved_stages_give_the_same_reports(engine, tmp_path):
    """calls.json -> interpret -> phenotypes.json -> advise: every patient's report equals a direct run's."""
    vcf = tmp_path / "two.vcf"
    vcf.write_text(two_patient_text())
    oc = tmp_path / "oc.tsv"
    oc.write_text("CYP2D6\t*1/*4\nCYP2C9\t*1/*2/*3\n")  # the second line is unusable: its error travels too
    inputs = Inputs.of(vcfs=vcf, outside_calls=oc, medications="codeine,omeprazole")
    direct = engine.run(inputs)
    (tmp_path / "calls.json").write_text(direct.calls.to_json())
    calls = permed.CallSet.load(tmp_path / "calls.json", engine.kb)
    assert calls.samples == ["PAT-A", "PAT-B"] and calls.options == direct.calls.options
    phenotypes = engine.interpret(calls, [oc])
    phenotypes.save(tmp_path / "phenotypes.json", engine.kb)
    loaded = permed.PhenotypeSet.load(tmp_path / "phenotypes.json", engine.kb)
    advice = engine.advise(loaded, "codeine,omeprazole")
    staged = permed.Result(kb=engine.kb, options=calls.options, calls=calls, phenotypes=loaded, advice=advice)
    for name in direct.samples:
        a, b = direct.patient(name), staged.patient(name)
        assert _without_time(a) == _without_time(b), name
        check_report(json.loads(b.dumps()))
    assert direct.patient("PAT-A").genes["CYP2D6"].outside_call
    assert [e.gene for e in loaded.outside_errors] == ["CYP2C9"] and loaded.outside_errors == phenotypes.outside_errors
    assert direct.patient("PAT-A").phenoconversion[0].inhibitor == "omeprazole"


def test_a_saved_stage_refuses_another_knowledge_base(engine, tmp_path):
    calls = engine.match(Inputs.of(example_vcf()))
    other = seal(engine.kb.model_copy(update={"kb_version": "another"}))
    with pytest.raises(InputFileError, match="made with knowledge base"):
        permed.CallSet.from_json(calls.to_json(), other, "calls.json")
    with pytest.raises(InputFileError, match=r"calls.json: schema 'permed.report/1' is not 'permed.calls/1'"):
        permed.CallSet.from_json('{"schema": "permed.report/1"}', engine.kb, "calls.json")
    with pytest.raises(InputFileError, match="calls.json: not valid JSON"):
        permed.CallSet.from_json("{", engine.kb, "calls.json")


def test_result_names_patients(engine):
    res = engine.run(Inputs.of(example_vcf()))
    assert [r.sample for r in res.patients()] == ["EXAMPLE-PATIENT"]
    with pytest.raises(KeyError, match="no sample 'P9'"):
        res.patient("P9")
    summary = {s.gene: s for s in res.summaries(0)}
    assert (summary["CYP2C19"].status, summary["CYP2C19"].call_text) == ("called", "*2/*17")
    assert (summary["CYP2D6"].status, summary["CYP2D6"].label) == ("not_called", "not called")


def test_cohort_without_advice_or_evidence(engine):
    res = engine.run(Inputs.of(example_vcf()), permed.Options(advice=False, evidence=False))
    assert res.advice is None
    report = res.patient("EXAMPLE-PATIENT")
    assert report.drugs is None and "drugs" not in json.loads(report.dumps())
    # evidence is kept only for the positions the interpretation stage reads (notes, fallbacks)
    assert len(report.genes["CYP2C19"].evidence) < len(engine.kb.genes["CYP2C19"].loci)


def test_cohort_tables_skip_per_sample_notes_without_changing_calls(engine, tmp_path):
    """`sample_warnings=False` (what `permed cohort` uses: its tables have no place for them) drops the per-sample
    notes on unusable genotypes and nothing else."""
    from helpers import rec, write_vcf

    vcf = write_vcf(tmp_path / "nocall.vcf", rec("chr10", 94781859, "G", "A", "./.", "0/1"), samples=("A", "B"))
    full = engine.run(Inputs.of(vcf), permed.Options(advice=False))
    lean = engine.run(Inputs.of(vcf), permed.Options(advice=False, sample_warnings=False))
    assert full.calls.sample_warnings[0] == {"chr10:94781859": ["Ignoring: no call (./.)"]}
    assert lean.calls.sample_warnings == {}
    for si in range(2):
        assert lean.calls.call(si, "CYP2C19") == full.calls.call(si, "CYP2C19")


def test_options_are_checked():
    with pytest.raises(permed.ConfigurationError, match="--workers: 0 is not a whole number >= 1"):
        permed.Options(workers=0)
    assert permed.Options(genes=["CYP2C19"]).genes == ("CYP2C19",)


def test_published_schema_is_the_models(tmp_path):
    res = cli("schema", "report")
    assert res.returncode == 0 and json.loads(res.stdout) == json.loads(REPORT_SCHEMA_FILE.read_text())
    schema = json.loads(res.stdout)
    assert schema["title"] == "permed.report/1" and "genes" in schema["required"]


def test_a_report_that_breaks_the_schema_is_caught(engine):
    """The schema check in the tests is not vacuous: a wrong status or a missing field fails it."""
    data = json.loads(engine.run(Inputs.of(example_vcf())).patient("EXAMPLE-PATIENT").dumps())
    check_report(data)
    bad = json.loads(json.dumps(data))
    bad["genes"]["CYP2C19"]["status"] = "probably"
    with pytest.raises(AssertionError, match="probably"):
        check_report(bad)
    del data["genes"]
    with pytest.raises(AssertionError, match="genes"):
        check_report(data)


def test_the_written_report_is_the_models_dump(engine, tmp_path):
    """The writer serialises shared entries once; its text must be exactly the model's own dump, for
    patients with VCF calls, outside calls, phenoconversion and several samples."""
    vcf = tmp_path / "two.vcf"
    vcf.write_text(two_patient_text())
    oc = tmp_path / "oc.tsv"
    oc.write_text("CYP2D6\t*1/*4\nHLA-B\t*57:01/*44:02\n")
    for options in (permed.Options(), permed.Options(advice=False, evidence=False)):
        res = engine.run(Inputs.of(vcfs=vcf, outside_calls=oc, medications="paroxetine,clopidogrel"), options)
        for si in range(len(res.samples)):
            assert res.report_json(si) == res.report(si).dumps()
            assert permed.PatientReport.loads(res.report_json(si)) == res.report(si)
