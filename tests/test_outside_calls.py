"""Outside calls (`--outside-calls`): parsing, precedence over VCF data, per-gene failure, outputs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from helpers import cli, read_report

from permed.kb.load import load_kb
from permed.phenotype.outside_calls import normalize_phenotype, read_outside_calls
from permed.phenotype.phenotype_set import known_genes
from permed.phenotype.phenotyper import Phenotyper


def _calls(out: Path) -> dict[str, dict]:
    with open(out / "calls.tsv", newline="") as fh:
        return {r["Gene"]: r for r in csv.DictReader(fh, delimiter="\t")}


def _report(out: Path, sample: str = "EXAMPLE-PATIENT") -> dict:
    return read_report(out / f"{sample}.report.json")


@pytest.mark.parametrize("text,expected", [
    ("PM", "Poor Metabolizer"), ("im", "Intermediate Metabolizer"), ("CYP2D6 poor metaboliser", "Poor Metabolizer"),
    ("Likely Poor Metabolizer", "Likely Poor Metabolizer"), ("extensive metabolizer", "Normal Metabolizer"),
    ("*31:01 positive", "*31:01 positive"), ("  ", None),
])
def test_phenotype_normalisation(text, expected):
    assert normalize_phenotype(text, "CYP2D6") == expected


def test_parse_rules(tmp_path):
    kb = load_kb()
    ph = Phenotyper(kb)
    f = tmp_path / "oc.tsv"
    f.write_text("# comment\n\nCYP2D6\tCYP2D6*1.001/CYP2D6*4\nHLA-A\tA*31:01:02\nMT-RNR1\tm.1555A>G/m.1555A>G\n"
                 "NAT2\t./.\nCYP2C19\t*1\nFOO1\t*1/*1\n")
    calls, errors = read_outside_calls(f, known_genes(kb).__contains__, ph.annotator)
    by = {c.gene: c for c in calls}
    assert by["CYP2D6"].alleles == ["*1", "*4"] and by["CYP2D6"].warnings
    assert by["HLA-A"].alleles == ["*31:01"]
    assert by["NAT2"].no_call
    reasons = {e.gene: (e.where, e.reason) for e in errors}
    assert set(reasons) == {"MT-RNR1", "CYP2C19", "FOO1"}
    assert reasons["CYP2C19"][0].endswith("oc.tsv:7") and "two alleles" in reasons["CYP2C19"][1]
    assert "unknown gene" in reasons["FOO1"][1]


def test_outside_call_replaces_vcf_gene_and_says_so(tmp_path):
    oc = tmp_path / "oc.tsv"
    oc.write_text("CYP2D6\t*1/*4\nCYP2C19\t*1/*1\n")
    out = tmp_path / "out"
    res = cli("call", "--example", "--outside-calls", oc, "-o", out)
    assert res.returncode == 0, res.stderr
    rows = _calls(out)
    assert rows["CYP2D6"]["Status"] == "outside_call" and rows["CYP2D6"]["Outside Call"] == "yes"
    assert rows["CYP2D6"]["Phenotype"] == "Intermediate Metabolizer" and rows["CYP2D6"]["Activity Score"] == "1.0"
    assert rows["CYP2C19"]["Source Diplotype"] == "*1/*1" and rows["CYP2C19"]["Phenotype"] == "Normal Metabolizer"
    genes = _report(out)["genes"]
    c19 = genes["CYP2C19"]
    assert c19["outside_call"] is True
    assert c19["vcf_call"]["source_diplotypes"] == ["*2/*17"]  # what the VCF said is kept, not used
    assert {"pcat-outside-call", "prefer-sample-data"} <= {m["name"] for m in c19["messages"]}
    d6 = genes["CYP2D6"]
    assert d6["recommendation_diplotypes"][0]["haplotypes"] == ["*1", "*4"]
    assert d6["recommendation_diplotypes"][0]["lookup_key"] == "1.0"
    assert genes["CYP2C9"]["outside_call"] is False


def test_bad_line_affects_only_its_gene(tmp_path):
    oc = tmp_path / "oc.tsv"
    oc.write_text("CYP2C19\t*1/*2/*3\nCYP2D6\t*1/*1\n")
    out = tmp_path / "out"
    res = cli("call", "--example", "--outside-calls", oc, "-o", out)
    assert res.returncode == 0, res.stderr
    assert "oc.tsv:1" in res.stderr and "too many alleles" in res.stderr and "Traceback" not in res.stderr
    genes = _report(out)["genes"]
    assert genes["CYP2C19"]["reportable"] is False and genes["CYP2C19"]["print_calls"] == ["Not called"]
    assert any("too many alleles" in m["text"] for m in genes["CYP2C19"]["messages"])
    assert genes["CYP2D6"]["reportable"] is True and genes["CYP2D6"]["phenotypes"] == ["Normal Metabolizer"]
    assert genes["DPYD"]["reportable"] is True
    assert _report(out)["outside_calls"]["errors"][0]["gene"] == "CYP2C19"


def test_line_without_gene_is_a_user_error(tmp_path):
    oc = tmp_path / "oc.tsv"
    oc.write_text("CYP2D6\t*1/*1\n\t*1/*2\n")
    out = tmp_path / "out"
    res = cli("call", "--example", "--outside-calls", oc, "-o", out)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "oc.tsv:2" in res.stderr
    assert not out.exists() or not any(out.iterdir())


def test_non_utf8_outside_calls(tmp_path):
    oc = tmp_path / "oc.tsv"
    oc.write_bytes(b"CYP2D6\t*1/*1\xff\n")
    res = cli("call", "--example", "--outside-calls", oc, "-o", tmp_path / "out")
    assert res.returncode == 2 and "UTF-8" in res.stderr


def test_outside_calls_only(tmp_path):
    oc = tmp_path / "patient7.tsv"
    oc.write_text("CYP2D6\t*1/*1x3\nHLA-B\t*57:01/*44:02\nCYP2C19\t\tPM\n")
    out = tmp_path / "out"
    res = cli("call", "--outside-calls", oc, "-o", out)
    assert res.returncode == 0, res.stderr
    genes = _report(out, "patient7")["genes"]
    assert set(genes) == {"CYP2D6", "HLA-B", "CYP2C19"}
    d6 = genes["CYP2D6"]
    assert d6["print_calls"] == ["*1/*1x3"]  # shown as given
    assert d6["recommendation_diplotypes"][0]["haplotypes"] == ["*1", "*1x≥3"]  # looked up as ≥3 copies
    assert d6["phenotypes"] == ["Ultrarapid Metabolizer"]
    assert "*57:01 positive" in genes["HLA-B"]["phenotypes"]
    assert genes["CYP2C19"]["phenotypes"] == ["Poor Metabolizer"]
    assert genes["CYP2C19"]["print_calls"] == ["Poor Metabolizer"]
