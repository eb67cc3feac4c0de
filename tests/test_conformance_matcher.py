"""PharmCAT's named-allele-matcher test cases (../shared/conformance/matcher): all 198 must pass."""

from __future__ import annotations

import pytest
from conformance import have_shared, load_cases, run_matcher_case, sample_result

from permed.matcher.names import match_name_key

pytestmark = pytest.mark.skipif(not have_shared(), reason="../shared/conformance is not available")

CASES = load_cases("matcher") if have_shared() else []


def phased_reduce(names: list[str]) -> str:
    """Merge diplotypes that share a strand: 'a/b' + 'a/c' -> 'a/b+c' (PharmCAT's phased output)."""
    left: list[str] = []
    right: list[str] = []
    for n in names:
        a, b = n.split("/")
        if a not in left:
            left.append(a)
        if b not in right:
            right.append(b)
    return "+".join(left) + "/" + "+".join(right)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_matcher_case(case):
    call, calls, si = run_matcher_case(case)
    exp = case["expect"]
    warnings = calls.sample_vcf_warnings(si)
    names = [d.name for d in call.diplotypes] if call else []

    if "gene_call_count" in exp:
        assert (1 if call else 0) == exp["gene_call_count"]
    if "diplotypes" in exp:
        assert names == exp["diplotypes"]
    if "diplotype_count_min" in exp:
        assert len(names) >= exp["diplotype_count_min"]
    if "vcf_warning_count" in exp:
        assert len(warnings) == exp["vcf_warning_count"], warnings
    for key, subs in exp.get("vcf_warnings", {}).items():
        assert len(warnings[key]) == len(subs)
        for msg, sub in zip(warnings[key], subs):
            assert sub in msg
    if "haplotypes" in exp:
        haps = {h.name for d in call.diplotypes for h in d.haplotypes}
        assert sorted(haps, key=match_name_key) == exp["haplotypes"]
    if "haplotype_matches" in exp:
        assert call.haplotype_matches == exp["haplotype_matches"]
    if "haplotype_count" in exp:
        haps = {h.name for d in call.diplotypes for h in d.haplotypes}
        assert len(haps) == exp["haplotype_count"]
    if "haplotype_component_names" in exp:
        comps = {c for d in call.diplotypes for h in d.haplotypes for c in (h.components or [h.name])}
        assert comps == set(exp["haplotype_component_names"])
    if "has_partial_haplotype" in exp:
        assert any(h.partial for d in call.diplotypes for h in d.haplotypes) == exp["has_partial_haplotype"]
    if "first_diplotype" in exp:
        first = call.diplotypes[0].haplotypes
        for i, key in enumerate(("haplotype1", "haplotype2")):
            want = exp["first_diplotype"][key]
            if want.get("combination") is not None:
                assert first[i].combination == want["combination"], (key, first[i])
            if want.get("partial") is not None:
                assert first[i].partial == want["partial"], (key, first[i])
    if "gene_warning_count" in exp:
        assert len(call.warnings) == exp["gene_warning_count"], call.warnings
    if "gene_warning_names" in exp:
        assert [w.name for w in call.warnings] == exp["gene_warning_names"]
    if "gene_warning_message_contains" in exp:
        assert exp["gene_warning_message_contains"] in call.warnings[0].text
    if "missing_position_count" in exp:
        assert len(call.missing_positions) == exp["missing_position_count"]
    if "undocumented_variation_position_count" in exp:
        assert len(call.undocumented_positions) == exp["undocumented_variation_position_count"]
    n_def = len(calls.kb.genes[case["gene"]].loci) if call else 0
    present = sum(1 for e in call.evidence if e.status != "missing") if call else 0
    if "variant_count_equals_definition" in exp:
        assert (present == n_def) == exp["variant_count_equals_definition"]
    if "variant_count" in exp:
        assert exp["variant_count"] == "definition variant count - 1" and present == n_def - 1
    if "variants_of_interest" in exp:
        got = [{"rsid": v.rsid, "vcf_call": v.call} for v in call.variants_of_interest]
        assert got == exp["variants_of_interest"]
    if "is_phased" in exp:
        assert call.phased == exp["is_phased"]
    if "phased_reduced_output" in exp:
        assert phased_reduce(names) == exp["phased_reduced_output"]
    if "sequences" in exp:
        # facts about the strand sequences behind the single diplotype (RYR1 cases)
        res = sample_result(case)
        assert len(res.diplotypes) == 1
        d = res.diplotypes[0]
        assert len(d.hap1.sequences) == 1 and len(d.hap2.sequences) == 1
        assert len(d.sequence_pairs) == 1
        if "both are identical" in exp["sequences"]:
            assert d.hap1.sequences == d.hap2.sequences
            assert d.sequence_pairs[0][0] == d.sequence_pairs[0][1]
    if "sample_permutations" in exp:
        res = sample_result(case)
        data = res.data
        assert len(data.alleles) == exp["num_sample_alleles"]
        assert len(data.missing) == exp["missing_position_count"]
        assert len(data.positions) == exp["num_positions"]
        assert len(data.haplotypes) == exp["num_haplotypes"]
        assert {data.sequence_text(p) for p in data.permutations} == set(exp["sample_permutations"])


def test_every_case_runs():
    assert len(CASES) == 198
