"""Advice for every sample of a phenotype set: medications, phenoconversion, matched recommendations."""

from __future__ import annotations

from dataclasses import dataclass

from permed.advice.advisor import Advisor
from permed.advice.medications import MedicationList, phenoconvert
from permed.advice.model import DrugAdvice, Phenoconversion
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


def sample_advice(advisor: Advisor, pset: PhenotypeSet, si: int, meds: MedicationList) -> SampleAdvice:
    reports = {g: pset.report(si, g) for g in pset.genes}
    conversions = []
    for gene in PHENOCONVERTIBLE:
        r = reports.get(gene)
        if r is None:
            continue
        new, conv = phenoconvert(r, meds, advisor.annotator(gene))
        if conv is not None:
            reports[gene] = new
            conversions.append(conv)
    converted = frozenset(c.gene for c in conversions)
    if not conversions:
        return SampleAdvice(meds, conversions, advisor.advise(reports, meds.drugs))
    # an inhibitor's own advice already reflects its effect on its own metabolism: use the genotype
    inhibitors = {m.drug for m in meds.items if m.drug and m.inhibits}
    original = {g: pset.report(si, g) for g in pset.genes}
    by_drug = {d.drug: d for d in advisor.advise(reports, meds.drugs, converted,
                                                 [x for x in advisor.drugs if x not in inhibitors])}
    by_drug.update({d.drug: d for d in advisor.advise(original, meds.drugs, frozenset(),
                                                      [x for x in advisor.drugs if x in inhibitors])})
    return SampleAdvice(meds, conversions, [by_drug[d] for d in advisor.drugs])


class AdviceSet:
    """Advice for the samples of a phenotype set, computed on demand (shared work is memoised by the
    advisor; the last sample's advice is kept, as the JSON and HTML writers ask for it in turn)."""

    def __init__(self, advisor: Advisor, pset: PhenotypeSet, medications: MedicationList):
        self.advisor = advisor
        self.pset = pset
        self.medications = medications
        self._last: tuple[int, SampleAdvice] | None = None

    def sample(self, si: int) -> SampleAdvice:
        if self._last is None or self._last[0] != si:
            self._last = (si, sample_advice(self.advisor, self.pset, si, self.medications))
        return self._last[1]
