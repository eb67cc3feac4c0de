"""Advice for every sample of a phenotype set: medications, phenoconversion, matched recommendations."""

from __future__ import annotations

from dataclasses import dataclass

from permed.advice.engine import AdviceEngine
from permed.advice.medications import MedicationList, phenoconvert
from permed.advice.model import DrugAdvice, Phenoconversion
from permed.phenotype.annotate import GeneAnnotator
from permed.phenotype.phenotype_set import PhenotypeSet

PHENOCONVERTIBLE = ("CYP2D6", "CYP2C19")


@dataclass
class SampleAdvice:
    medications: MedicationList
    phenoconversions: list[Phenoconversion]
    drugs: list[DrugAdvice]

    @property
    def actionable(self) -> list[DrugAdvice]:
        """Drugs to avoid, replace or dose differently; the patient's current drugs first."""
        found = [d for d in self.drugs if d.actionable]
        return sorted(found, key=lambda d: (not d.on_medication_list, d.drug))

    @property
    def current(self) -> list[DrugAdvice]:
        """The patient's current drugs that have guidelines, whatever the advice."""
        return [d for d in self.drugs if d.on_medication_list]


def sample_advice(engine: AdviceEngine, pset: PhenotypeSet, si: int, meds: MedicationList) -> SampleAdvice:
    reports = {g: pset.report(si, g) for g in pset.genes}
    conversions = []
    for gene in PHENOCONVERTIBLE:
        r = reports.get(gene)
        if r is None:
            continue
        new, conv = phenoconvert(r, meds, _annotator(engine, gene))
        if conv is not None:
            reports[gene] = new
            conversions.append(conv)
    converted = frozenset(c.gene for c in conversions)
    if not conversions:
        return SampleAdvice(meds, conversions, engine.advise(reports, meds.drugs))
    # an inhibitor's own advice already reflects its effect on its own metabolism: use the genotype
    inhibitors = {m.drug for m in meds.items if m.drug and m.inhibits}
    original = {g: pset.report(si, g) for g in pset.genes}
    by_drug = {d.drug: d for d in engine.advise(reports, meds.drugs, converted,
                                                [x for x in engine.drugs if x not in inhibitors])}
    by_drug.update({d.drug: d for d in engine.advise(original, meds.drugs, frozenset(),
                                                     [x for x in engine.drugs if x in inhibitors])})
    return SampleAdvice(meds, conversions, [by_drug[d] for d in engine.drugs])


def _annotator(engine: AdviceEngine, gene: str) -> GeneAnnotator:
    ann = engine._annotators.get(gene)
    if ann is None:
        ann = engine._annotators[gene] = GeneAnnotator(engine.kb, gene)
    return ann


class AdviceSet:
    """Advice for the samples of a phenotype set, computed on demand (shared work is memoised)."""

    def __init__(self, engine: AdviceEngine, pset: PhenotypeSet, medications: MedicationList):
        self.engine = engine
        self.pset = pset
        self.medications = medications

    def sample(self, si: int) -> SampleAdvice:
        return sample_advice(self.engine, self.pset, si, self.medications)
