"""Match a patient's gene reports against guideline recommendations (CPIC, DPWG).

For each guideline the patient's genotypes are all combinations of its genes' recommendation
diplotypes (an ambiguous call contributes every candidate). A recommendation applies when its lookup
keys equal the genotype's for every gene it names; recommendations keyed by exact diplotype (DPWG,
e.g. CYP2C9 *2/*2) take precedence over phenotype/score keys for the same genotype. A gene without a
usable call is looked up as "No Result". Results are memoised per combination of gene reports, so a
cohort costs one match per distinct combination (PharmCAT 3.1.1 reporter semantics).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

from permed.advice.model import DrugAdvice, GenotypeUsed, MatchedRecommendation, SourceAdvice
from permed.kb.model import Guideline, GuidelineRecommendation, KnowledgeBase
from permed.matcher.model import Message
from permed.phenotype.model import NO_RESULT, UNKNOWN_ALLELE, Diplotype, GeneReport
from permed.phenotype.notes import note_rules
from permed.phenotype.phenotyper import Phenotyper

SOURCES = ("CPIC", "DPWG")
NO_RECOMMENDATION = "No recommendation"
ACTIVITY_GENES = frozenset({"CYP2C9", "CYP2D6", "DPYD"})
# The 2024-05 DPWG data keys DPYD by DPWG's own labels; PharmCAT 3.1 looks DPWG DPYD advice up by
# the CPIC activity score (one "1.0" record). This maps the score onto the older labels.
DPWG_DPYD_KEYS = {
    "2.0": "2.0 (Normal Metabolizer)", "1.5": "1.5 (Intermediate Metabolizer)",
    "1.0": "1.0 (Intermediate Metabolizer)", "0.5": "0.5 (Phenotyping)", "0.0": "0.0 (Poor Metabolizer)",
}
# DPWG does not use CPIC's "Likely" terms; PharmCAT 3.1.1 gives them the IM/PM advice.
DPWG_ALIASES = {"Likely Intermediate Metabolizer": "Intermediate Metabolizer",
                "Likely Poor Metabolizer": "Poor Metabolizer"}
MSG_CALL_MULTIMATCH = Message(
    name="pcat-call-multimatch",
    text="More than one possible genotype leads to this same recommendation.")
MSG_SCORE_MULTIMATCH = Message(
    name="pcat-score-multimatch",
    text="The phenotype given as an outside call spans several activity scores; each matching recommendation "
    "is listed.")


def _missing_variants(gene: str) -> Message:
    return Message(name="missing-variants",
                   text=f"Some {gene} positions were missing from the input; see the {gene} section for which, "
                   "and what they could change.")


@dataclass
class _Slot:
    """One gene's diplotype inside a genotype, with the keys it can be looked up by for a source."""

    gene: str
    diplotype: Diplotype | None
    keys: list[str]
    alleles: dict[str, float]
    phenoconverted: bool = False


@dataclass
class _Annotation:
    rec: GuidelineRecommendation
    genotypes: list[tuple[_Slot, ...]] = field(default_factory=list)


def _unknown_slot(gene: str) -> _Slot:
    return _Slot(gene, None, [NO_RESULT], {})


def _dpwg_keys(gene: str, d: Diplotype) -> list[str]:
    keys = list(d.lookup_keys)
    if gene == "DPYD":
        return [DPWG_DPYD_KEYS.get(k, k) for k in keys]
    if gene in ACTIVITY_GENES:
        keys += [p for p in d.phenotypes if p not in keys]  # DPWG CYP2C9 records are keyed by phenotype
    return keys + [DPWG_ALIASES[k] for k in keys if k in DPWG_ALIASES]


class Advisor:
    """Drug advice from gene reports; uses the phenotyper's gene annotators (one set per engine)."""

    def __init__(self, kb: KnowledgeBase, phenotyper: Phenotyper | None = None):
        self.kb = kb
        self.annotator = (phenotyper or Phenotyper(kb)).annotator
        self.by_drug: dict[str, list[Guideline]] = {}
        for g in kb.guidelines:
            for d in g.drugs:
                self.by_drug.setdefault(d.name, []).append(g)
        self.drug_info = {d.name: d for g in kb.guidelines for d in g.drugs}
        self.genes = sorted({gene for g in kb.guidelines for gene in g.genes})
        self._cache: dict[tuple, tuple[list[_Annotation], tuple]] = {}
        self._source_cache: dict[tuple, tuple[SourceAdvice, tuple]] = {}
        self._drug_cache: dict[tuple, tuple[DrugAdvice, tuple]] = {}
        self._drug_rules = [r for r in note_rules() if r.drugs]

    @property
    def drugs(self) -> list[str]:
        return sorted(self.by_drug)

    # -- genotypes --------------------------------------------------------------------------------
    def _slots(self, gene: str, report: GeneReport | None, source: str, converted: bool) -> list[_Slot]:
        if report is None or not report.recommendation_diplotypes:
            return [_unknown_slot(gene)]
        out = []
        for d in report.recommendation_diplotypes:
            if d.unknown:
                out.append(_unknown_slot(gene))
                continue
            keys = _dpwg_keys(gene, d) if source == "DPWG" else list(d.lookup_keys)
            alleles = dict(Counter(a for a in d.alleles if a != UNKNOWN_ALLELE))
            out.append(_Slot(gene, d, keys, {k: float(v) for k, v in alleles.items()}, converted))
        return out

    def genotypes(self, g: Guideline, reports: dict[str, GeneReport | None],
                  converted: frozenset[str] = frozenset()) -> list[tuple[_Slot, ...]]:
        per_gene = [self._slots(gene, reports.get(gene), g.source, gene in converted) for gene in g.genes]
        return list(itertools.product(*per_gene))

    # -- matching ---------------------------------------------------------------------------------
    @staticmethod
    def _matches_diplotype(rec: GuidelineRecommendation, genotype: tuple[_Slot, ...]) -> bool:
        if not rec.lookup or not all(isinstance(v, dict) for v in rec.lookup.values()):
            return False
        slots = {s.gene: s for s in genotype}
        return all(gene in slots and slots[gene].alleles == {a: float(n) for a, n in want.items()}
                   for gene, want in rec.lookup.items())

    @staticmethod
    def _matches_keys(rec: GuidelineRecommendation, genotype: tuple[_Slot, ...]) -> bool:
        if not rec.lookup or not all(isinstance(v, str) for v in rec.lookup.values()):
            return False
        slots = {s.gene: s for s in genotype}
        return all(gene in slots and want in slots[gene].keys for gene, want in rec.lookup.items())

    def annotations(self, g: Guideline, drug: str, reports: dict[str, GeneReport | None],
                    converted: frozenset[str] = frozenset()) -> list[_Annotation]:
        # keyed by object identity; the entry keeps the reports alive so an id cannot be reused
        refs = tuple(reports.get(gene) for gene in g.genes)
        key = (g.id, drug, converted, tuple(map(id, refs)))
        hit = self._cache.get(key)
        if hit is not None:
            return hit[0]
        recs = [r for r in g.recommendations if drug in r.drugs]
        found: dict[str, _Annotation] = {}
        for genotype in self.genotypes(g, reports, converted):
            matched = [r for r in recs if self._matches_diplotype(r, genotype)]
            if not matched:
                matched = [r for r in recs if self._matches_keys(r, genotype)]
            for r in matched:
                found.setdefault(r.id, _Annotation(r)).genotypes.append(genotype)
        order = {r.id: i for i, r in enumerate(g.recommendations)}
        out = sorted(found.values(), key=lambda a: order[a.rec.id])
        if not g.recommendations and "warfarin" in [d.name for d in g.drugs] and g.source == "CPIC":
            # CPIC's warfarin guideline is a dosing algorithm rather than lookup rows; it always applies
            out = [_Annotation(WARFARIN_ALGORITHM, self.genotypes(g, reports, converted))]
        if len(self._cache) > 200_000:
            self._cache.clear()
        self._cache[key] = (out, refs)
        return out

    # -- drug advice ------------------------------------------------------------------------------
    def advise(self, reports: dict[str, GeneReport | None], medications: set[str] = frozenset(),
               converted: frozenset[str] = frozenset(), drugs: list[str] | None = None) -> list[DrugAdvice]:
        out = []
        for drug in drugs or self.drugs:
            sources = tuple(self._source_advice(drug, source, gl, reports, converted) for source in SOURCES
                            if (gl := [g for g in self.by_drug[drug] if g.source == source]))
            key = (drug, drug in medications, tuple(map(id, sources)))
            hit = self._drug_cache.get(key)
            if hit is None:
                info = self.drug_info[drug]
                if len(self._drug_cache) > 200_000:
                    self._drug_cache.clear()
                hit = self._drug_cache[key] = (DrugAdvice(
                    drug=drug, rxnorm=info.rxnorm, atc=list(info.atc), sources=list(sources),
                    on_medication_list=drug in medications), sources)
            out.append(hit[0])
        return out

    def _source_advice(self, drug: str, source: str, guidelines: list[Guideline],
                       reports: dict[str, GeneReport | None], converted: frozenset[str]) -> SourceAdvice:
        genes_all = sorted({x for g in guidelines for x in g.genes})
        refs = tuple(reports.get(x) for x in genes_all)
        key = (drug, source, converted, tuple(map(id, refs)))
        hit = self._source_cache.get(key)
        if hit is None:
            if len(self._source_cache) > 200_000:
                self._source_cache.clear()
            hit = self._source_cache[key] = (
                self._compute_source_advice(drug, source, guidelines, reports, converted), refs)
        return hit[0]

    def _compute_source_advice(self, drug: str, source: str, guidelines: list[Guideline],
                               reports: dict[str, GeneReport | None], converted: frozenset[str]) -> SourceAdvice:
        matched: list[MatchedRecommendation] = []
        messages: list[Message] = []
        genes: list[str] = []
        for g in guidelines:
            genes.extend(x for x in g.genes if x not in genes)
            for ann in self.annotations(g, drug, reports, converted):
                matched.append(self._matched(g, ann))
                if len(ann.genotypes) > 1 and MSG_CALL_MULTIMATCH not in messages:
                    messages.append(MSG_CALL_MULTIMATCH)
                if any(s.gene in ACTIVITY_GENES and s.diplotype is not None and len(s.diplotype.lookup_keys) > 1
                       for gt in ann.genotypes for s in gt) and MSG_SCORE_MULTIMATCH not in messages:
                    messages.append(MSG_SCORE_MULTIMATCH)
        missing = [x for x in genes if reports.get(x) is None or not reports[x].reportable]
        for gene in genes:
            r = reports.get(gene)
            if r is not None and r.call_source == "matcher" and r.missing_positions and not r.no_data:
                messages.append(_missing_variants(gene))
        messages.extend(self._rule_messages(drug, source, genes, reports))
        return SourceAdvice(
            source=source, guidelines=[g.id for g in guidelines],
            matched=any(m.strength != NO_RECOMMENDATION for m in matched),
            recommendations=matched, missing_genes=missing, messages=messages,
        )

    def _rule_messages(self, drug: str, source: str, genes: list[str],
                       reports: dict[str, GeneReport | None]) -> list[Message]:
        out = []
        for rule in self._drug_rules:
            if drug not in rule.drugs or rule.type == "report-as-genotype":
                continue
            if ("cpic-" in rule.name and source != "CPIC") or ("dpwg-" in rule.name and source != "DPWG"):
                continue
            if rule.gene is None:
                out.append(rule.message())
                continue
            r = reports.get(rule.gene)
            if rule.gene in genes and r is not None and not r.no_data and rule.name in {m.name for m in r.messages}:
                out.append(rule.message())
        return out

    @staticmethod
    def _matched(g: Guideline, ann: _Annotation) -> MatchedRecommendation:
        rec = ann.rec
        first = ann.genotypes[0] if ann.genotypes else ()
        used = []
        for s in first:
            if rec.lookup and s.gene not in rec.lookup:
                continue
            d = s.diplotype
            want = rec.lookup.get(s.gene)
            key = want if isinstance(want, str) else (s.keys[0] if s.keys else NO_RESULT)
            used.append(GenotypeUsed(
                gene=s.gene, diplotype=d.label if d is not None else None,
                phenotype="; ".join(d.phenotypes) if d is not None and d.phenotypes else None,
                lookup_key=key, phenoconverted=s.phenoconverted,
            ))
        return MatchedRecommendation(
            recommendation_id=rec.id, guideline_id=g.id, source=g.source, drugs=list(rec.drugs),
            population=rec.population, strength=rec.strength, action=rec.action, also=list(rec.also),
            dose_factor=rec.dose_factor, alternatives=list(rec.alternatives), summary=rec.summary,
            genotype=used, url=g.url, pmids=list(g.pmids),
        )


WARFARIN_ALGORITHM = GuidelineRecommendation(
    id="warfarin-cpic-algorithm", population=None, strength=None, lookup={}, drugs=("warfarin",),
    action="see_guideline",
    summary="CPIC doses warfarin with an algorithm that combines CYP2C9, VKORC1 and CYP4F2 genotypes with clinical "
    "factors; use the guideline's dosing figure or a validated calculator.",
)
