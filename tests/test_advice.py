"""Advice stage: recommendations for a patient, medication list, phenoconversion, report JSON fields."""

from __future__ import annotations

import pytest
from helpers import cli, read_report

import permed


@pytest.fixture(scope="module")
def kb():
    return permed.load_kb()


def _patient(kb, tmp_path, lines: str, meds: str | None = None):
    """A patient known from outside calls only, through the public API."""
    oc = tmp_path / "oc.tsv"
    oc.write_text(lines)
    return permed.call(outside_calls=oc, medications=meds, patient="P1").advice.sample(0)


def _recs(sa, drug, source="CPIC"):
    d = next(x for x in sa.drugs if x.drug == drug)
    s = next((x for x in d.sources if x.source == source), None)
    return s.recommendations if s else []


def test_codeine_poor_metabolizer_avoid(kb, tmp_path):
    sa = _patient(kb, tmp_path, "CYP2D6\t*4/*4\n")
    (rec,) = _recs(sa, "codeine")
    assert rec.action == "avoid" and rec.strength == "Strong"
    assert rec.genotype[0].lookup_key == "0.0" and rec.genotype[0].phenotype == "Poor Metabolizer"
    assert "codeine" in [d.drug for d in sa.actionable]


def test_normal_metabolizer_standard_dose(kb, tmp_path):
    sa = _patient(kb, tmp_path, "CYP2D6\t*1/*2\n")
    (rec,) = _recs(sa, "codeine")
    assert rec.action == "standard" and "codeine" not in [d.drug for d in sa.actionable]


def test_multi_gene_guideline_uses_both_genes(kb, tmp_path):
    sa = _patient(kb, tmp_path, "CYP2D6\t*1/*1\nCYP2C19\t*2/*2\n")
    recs = _recs(sa, "amitriptyline")
    assert recs and {g.gene for g in recs[0].genotype} == {"CYP2C19", "CYP2D6"}
    assert recs[0].action in ("alternative", "avoid")


def test_unknown_gene_is_no_result(kb, tmp_path):
    # CPIC TCA guidelines have rows for a missing CYP2C19 result
    sa = _patient(kb, tmp_path, "CYP2D6\t*4/*4\n")
    recs = _recs(sa, "amitriptyline")
    assert recs and any(g.gene == "CYP2C19" and g.lookup_key == "No Result" for g in recs[0].genotype)
    d = next(x for x in sa.drugs if x.drug == "amitriptyline")
    assert "CYP2C19" in d.sources[0].missing_genes


def test_phenoconversion_strong_cyp2d6_inhibitor(kb, tmp_path):
    sa = _patient(kb, tmp_path, "CYP2D6\t*1/*2\n", meds="paroxetine, codeine")
    (conv,) = sa.phenoconversions
    assert (conv.gene, conv.inhibitor, conv.strength) == ("CYP2D6", "paroxetine", "strong")
    assert conv.from_phenotypes == ["Normal Metabolizer"] and conv.to_phenotypes == ["Poor Metabolizer"]
    (rec,) = _recs(sa, "codeine")
    assert rec.action == "avoid" and rec.genotype[0].phenoconverted
    assert sa.actionable[0].drug == "codeine" and sa.actionable[0].on_medication_list


def test_phenoconversion_moderate_cyp2c19(kb, tmp_path):
    sa = _patient(kb, tmp_path, "CYP2C19\t*1/*1\n", meds="omeprazole")
    (conv,) = sa.phenoconversions
    assert conv.to_phenotypes == ["Intermediate Metabolizer"]


def test_medications_by_code(kb):
    meds = permed.Engine(kb).medications("32968; J05AF06 ,Codeine")
    assert meds.drugs == {"clopidogrel", "abacavir", "codeine"}
    assert not meds.unrecognised


def test_cli_medications_and_report_fields(tmp_path):
    oc = tmp_path / "oc.tsv"
    oc.write_text("CYP2D6\t*1/*1\n")
    out = tmp_path / "out"
    res = cli("call", "--example", "--outside-calls", oc, "--medications", "paroxetine,clopidogrel,xyzzy", "-o", out)
    assert res.returncode == 0, res.stderr
    assert "xyzzy" in res.stderr
    r = read_report(out / "EXAMPLE-PATIENT.report.json")
    assert r["medications"]["unrecognised"] == ["xyzzy"]
    assert r["phenoconversion"][0]["inhibitor"] == "paroxetine"
    assert r["actionable_drugs"][0] == "clopidogrel"  # on the list and actionable (CYP2C19 *2/*17)
    cape = r["drugs"]["capecitabine"]["sources"]
    assert cape["CPIC"]["matched"] is True
    (rec,) = cape["CPIC"]["recommendations"]
    assert rec["action"] == "dose_decrease" and rec["dose_factor"] == [0.5, 0.5]
    assert rec["url"].startswith("https://") and rec["pmids"]
    assert set(cape) == {"CPIC", "DPWG"}


def test_inhibitor_own_advice_uses_genotype(kb, tmp_path):
    sa = _patient(kb, tmp_path, "CYP2C19\t*1/*1\n", meds="omeprazole, clopidogrel")
    assert sa.phenoconversions[0].inhibitor == "omeprazole"
    ome = _recs(sa, "omeprazole")
    assert ome and all(g.phenotype == "Normal Metabolizer" and not g.phenoconverted for r in ome for g in r.genotype)
    clop = _recs(sa, "clopidogrel")
    assert clop and all(g.phenotype == "Intermediate Metabolizer" and g.phenoconverted
                        for r in clop for g in r.genotype)


def test_alternatives_exclude_drugs_named_as_unsuitable(kb):
    dpwg_cape = [r for g in kb.guidelines if g.source == "DPWG" for r in g.recommendations
                 if "capecitabine" in r.drugs]
    assert dpwg_cape and all("tegafur" not in r.alternatives for r in dpwg_cape)
