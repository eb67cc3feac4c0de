"""Phenotype stage: annotation rules, lowest-function inference, fallbacks and notes, checked on facts."""

from __future__ import annotations

import json

import pytest

from permed.kb.load import load_kb
from permed.kb.policy import KEY_RSIDS
from permed.matcher.model import DiplotypeCall, GeneCall, HaplotypeCall, PositionEvidence
from permed.phenotype.annotate import GeneAnnotator, function_summary, normalize_activity
from permed.phenotype.notes import note_rules
from permed.phenotype.phenotyper import Phenotyper


@pytest.fixture(scope="module")
def kb():
    return load_kb()


@pytest.fixture(scope="module")
def ph(kb):
    return Phenotyper(kb)


def _call(gene, *pairs, status="called", phased=False, evidence=(), missing=()):
    dips = [DiplotypeCall(name="/".join(p), score=1, haplotypes=[HaplotypeCall(name=n) for n in p]) for p in pairs]
    return GeneCall(gene=gene, status=status, source_diplotypes=["/".join(p) for p in pairs] or ["Unknown/Unknown"],
                    diplotypes=dips, phased=phased, evidence=list(evidence), missing_positions=list(missing))


def test_activity_normalisation():
    assert normalize_activity("1") == "1.0"
    assert normalize_activity("≥3") == "≥3.0"
    assert normalize_activity("1.25") == "1.25"
    assert normalize_activity(" ") is None


def test_function_gene_lookup(kb):
    ann = GeneAnnotator(kb, "CYP2C19")
    d = ann.diplotype(["*2", "*17"])
    assert d.label == "*2/*17"
    assert d.phenotypes == ["Intermediate Metabolizer"] and d.lookup_keys == ["Intermediate Metabolizer"]
    assert d.activity_score is None
    # a name the table does not know: no phenotype, but still a known diplotype
    odd = ann.diplotype(["*1", "g.94781859G>A"])
    assert odd.phenotypes == ["n/a"] and not odd.unknown


def test_activity_gene_lookup(kb):
    ann = GeneAnnotator(kb, "CYP2C9")
    d = ann.diplotype(["*1", "*2"])
    assert (d.phenotypes, d.activity_score, d.lookup_keys) == (["Intermediate Metabolizer"], "1.5", ["1.5"])
    assert function_summary(d) == "One 0.5 (Decreased function) allele and one 1.0 (Normal function) allele"
    # untabled activity-gene diplotype is indeterminate, never a guessed score
    dpyd = GeneAnnotator(kb, "DPYD").diplotype(["*1", "*5"])
    assert dpyd.phenotypes == ["Indeterminate"] and dpyd.activity_score == "n/a"


def test_unknown_alleles_give_no_result(kb):
    d = GeneAnnotator(kb, "TPMT").unknown()
    assert d.unknown and d.phenotypes == ["No Result"] and d.lookup_keys == ["No Result"]
    assert GeneAnnotator(kb, "G6PD").unknown().alleles == ["Unknown"]


def test_phenotype_only_activity_lookup_keys(kb):
    d = GeneAnnotator(kb, "CYP2D6").diplotype([], phenotype="Intermediate Metabolizer")
    assert d.activity_score == "n/a"
    assert d.lookup_keys == ["0.25", "0.5", "0.75", "1.0"]
    assert d.label == "Intermediate Metabolizer"


def test_hla_allele_presence(kb):
    d = GeneAnnotator(kb, "HLA-B").diplotype(["*15:02", "*44:03"])
    assert d.phenotypes == ["*15:02 positive", "*57:01 negative", "*58:01 negative"]


def test_g6pd_hemizygous_and_heterozygous(kb):
    ann = GeneAnnotator(kb, "G6PD")
    male = ann.diplotype(["B (reference)"])
    assert male.label == "B (reference)" and male.phenotypes == ["Normal"]
    female = ann.diplotype(["B (reference)", "Chatham"])
    assert female.label == "B (reference)/Chatham" and female.phenotypes != ["n/a"]


def test_dpyd_phased_lowest_function_per_strand(ph):
    call = _call("DPYD", ("c.498G>A", "[c.2846A>T + c.2933A>G]"), phased=True)
    rep = ph.report(call)
    (rec,) = rep.recommendation_diplotypes
    assert sorted(rec.alleles) == ["c.2933A>G", "c.498G>A"]  # c.2933A>G (0.0) beats c.2846A>T (0.5) on its strand
    assert rep.print_calls == [rep.source_diplotypes[0].label]


def test_dpyd_unphased_two_lowest(ph):
    call = GeneCall(gene="DPYD", status="called", source_diplotypes=["x"],
                    haplotype_matches=["c.498G>A", "c.2582A>G", "c.2846A>T", "c.2933A>G"])
    rep = ph.report(call)
    assert sorted(rep.recommendation_diplotypes[0].alleles) == ["c.2846A>T", "c.2933A>G"]
    assert rep.print_calls == ["c.498G>A", "c.2582A>G", "c.2846A>T", "c.2933A>G"]
    assert rep.recommendation_diplotypes[0].activity_score == "0.5"


def test_slco1b1_rs4149056_fallback(ph):
    ev = [PositionEvidence(position=21178615, rsid="rs4149056", call="T/C", status="called")]
    rep = ph.report(_call("SLCO1B1", status="uncallable", evidence=ev))
    assert not rep.called and rep.reportable
    (rec,) = rep.recommendation_diplotypes
    assert rec.alleles == ["*1", "*5"] and rec.phenotypes == ["Decreased Function"]
    assert rep.print_calls == ["rs4149056 C/rs4149056 T"]
    assert "slco1b1-rs4149056-only" in {m.name for m in rep.messages}
    # without that position there is nothing to fall back on
    missing = [PositionEvidence(position=21178615, rsid="rs4149056", status="missing")]
    rep2 = ph.report(_call("SLCO1B1", status="uncallable", evidence=missing))
    assert not rep2.reportable and rep2.print_calls == ["Not called"]


def test_no_data_is_not_called(ph):
    rep = ph.report(_call("TPMT", status="no_data"))
    assert rep.print_calls == ["Not called - no variant data provided"] and not rep.reportable


def test_ambiguity_note_needs_unphased_het(ph):
    het = [PositionEvidence(position=94761900, rsid="rs12248560", call="C/T", status="called")]
    rep = ph.report(_call("CYP2C19", ("*1", "*4"), evidence=het))
    assert "CYP2C19 *1/*4 warning" in {m.name for m in rep.messages}
    phased = ph.report(_call("CYP2C19", ("*1", "*4"), evidence=het, phased=True))
    assert "CYP2C19 *1/*4 warning" not in {m.name for m in phased.messages}
    hom = [PositionEvidence(position=94761900, rsid="rs12248560", call="C/C", status="called")]
    hom_rep = ph.report(_call("CYP2C19", ("*1", "*4"), evidence=hom))
    assert "CYP2C19 *1/*4 warning" not in {m.name for m in hom_rep.messages}


def test_reference_allele_note(ph):
    rep = ph.report(_call("CYP2C19", ("*38", "*38")))
    assert [m.name for m in rep.messages] == ["reference-allele"]
    assert ph.report(_call("CFTR", ("ivacaftor non-responsive CFTR sequence",) * 2)).messages == []


def test_note_catalogue_positions_are_always_extracted():
    """Notes read genotypes at these rsids, so the matcher must keep them even in cohort runs."""
    rsids = {r.variant for r in note_rules() if r.variant} | {x for r in note_rules() for x in r.variants_missing}
    assert rsids | {"rs4149056"} == set(KEY_RSIDS)


def test_note_texts_are_ours():
    raw = json.dumps([r.text for r in note_rules()])
    assert "Warning!" not in raw and "we can't" not in raw.lower()
    assert all(r.text or r.type == "report-as-genotype" for r in note_rules())


def test_ryr1_susceptibility_rule(kb):
    ann = GeneAnnotator(kb, "RYR1")
    assert ann.diplotype(["Reference", "Reference"]).phenotypes == ["Uncertain Susceptibility"]
    assert ann.diplotype(["Reference", "c.103T>C"]).phenotypes == ["Malignant Hyperthermia Susceptibility"]
    assert ann.diplotype(["Reference", "c.152C>A"]).phenotypes == ["Uncertain Susceptibility"]
