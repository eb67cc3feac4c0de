"""Helpers that run permed on PharmCAT's conformance cases (../shared/conformance), through the engine."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from permed.engine import Engine, Inputs
from permed.genotypes.vcf_reader import ReadOptions, read_genotypes
from permed.kb.build import DEFINITION_SUFFIX, read_definition_file, read_exemptions
from permed.kb.load import load_kb, seal
from permed.kb.model import KB_SCHEMA, KnowledgeBase
from permed.matcher.gene_caller import GeneCaller, MatchOptions
from permed.matcher.patterns import sample_alleles
from permed.options import Options

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "conformance"


def have_shared() -> bool:
    return (CONFORMANCE / "matcher" / "cases.json").exists()


@cache
def case_kb(definition: str, exemptions: str | None, with_phenotypes: bool = False) -> KnowledgeBase:
    """A KB built (with permed's own converter) from the definition file(s) a case names.

    Phenotype and guideline facts, when asked for, come from the packaged KB (same PharmCAT release as
    the cases).
    """
    ex = read_exemptions(CONFORMANCE / exemptions) if exemptions else {}
    target = CONFORMANCE / definition
    paths = sorted(target.glob(f"*{DEFINITION_SUFFIX}")) if target.is_dir() else [target]
    genes = {}
    for p in paths:
        g = read_definition_file(p, ex)
        genes[g.gene] = g
    packaged = load_kb()
    kb = KnowledgeBase(
        schema=KB_SCHEMA, kb_version="conformance", built="test", sources=(), licence="test", attribution="test",
        genes=genes, phenotypes=packaged.phenotypes if with_phenotypes else {},
        phenotypes_dpwg=packaged.phenotypes_dpwg if with_phenotypes else {},
        guidelines=packaged.guidelines if with_phenotypes else (),
    )
    return seal(kb)


@cache
def case_engine(definition: str, exemptions: str | None, with_phenotypes: bool = False) -> Engine:
    return Engine(case_kb(definition, exemptions, with_phenotypes))


def load_cases(kind: str) -> list[dict]:
    return json.loads((CONFORMANCE / kind / "cases.json").read_text())


def _setup(case: dict):
    opts = case["options"]
    definition = case.get("definition") or "definitions/"
    use_ex = bool(opts.get("withExemptions")) and case.get("exemptions") is not None
    kb = case_kb(definition, case.get("exemptions") if use_ex else None)
    genes = [g for g in kb.genes if opts.get("callCyp2d6") or g != "CYP2D6"]
    gs = read_genotypes(
        CONFORMANCE / case["vcf"], kb, genes, ReadOptions(find_combinations=bool(opts.get("findCombinations")))
    )
    sample = case.get("sample")
    si = gs.samples.index(sample) if sample else 0
    options = MatchOptions(
        find_combinations=bool(opts.get("findCombinations")),
        top_candidate_only=bool(opts.get("topCandidateOnly")),
        use_exemptions=use_ex,
    )
    return gs, si, options


def run_matcher_case(case: dict):
    """(gene call or None, CallSet, sample index) for one matcher case, read and matched by the engine."""
    opts = case["options"]
    definition = case.get("definition") or "definitions/"
    use_ex = bool(opts.get("withExemptions")) and case.get("exemptions") is not None
    exemptions = case.get("exemptions") if use_ex else None
    options = Options(find_combinations=bool(opts.get("findCombinations")),
                      all_matches=not opts.get("topCandidateOnly"), cyp2d6_from_vcf=bool(opts.get("callCyp2d6")))
    calls = case_engine(definition, exemptions).match(Inputs.of(CONFORMANCE / case["vcf"]), options)
    si = calls.sample_index(case["sample"]) if case.get("sample") else 0
    gene = case["gene"]
    if gene not in calls.genes or (gene == "CYP2D6" and not options.cyp2d6_from_vcf):
        return None, calls, si
    return calls.call(si, gene), calls, si


def sample_result(case: dict):
    """The matcher's internal result (strand sequences, match data) for one matcher case."""
    gs, si, options = _setup(case)
    gg = gs.genes[case["gene"]]
    sample = sample_alleles(gg, si, options.find_combinations)
    return GeneCaller(gg.definition, options).call(sample)


@cache
def run_pipeline_case(case_id: str):
    """The engine's Result for one whole-pipeline case, computed once per test session."""
    case = next(c for c in load_cases("pipeline") if c["id"] == case_id)
    opts = case["options"]
    options = Options(
        find_combinations=bool(opts.get("findCombinations")),
        all_matches=not opts.get("topCandidateOnly", True),
        cyp2d6_from_vcf=bool(opts.get("callCyp2d6")),
    )
    vcf = case["input"].get("vcf")
    inputs = Inputs.of(vcfs=[CONFORMANCE / vcf] if vcf else [], patient="outside-only",
                       outside_calls=[CONFORMANCE / oc["file"] for oc in case["input"].get("outside_calls", [])])
    return case_engine("definitions/", "definitions/exemptions.json", with_phenotypes=True).run(inputs, options)
