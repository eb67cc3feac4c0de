"""Typed, serialisable results of the advice stage."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from permed.matcher.model import Message

ACTIONABLE = frozenset({"avoid", "alternative", "dose_decrease", "dose_increase"})


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Phenoconversion(_Model):
    gene: str
    inhibitor: str  # the medication, as given
    strength: str  # strong | moderate
    from_keys: list[str]  # lookup keys from the genotype
    to_keys: list[str]  # lookup keys advice uses
    from_phenotypes: list[str]
    to_phenotypes: list[str]


class GenotypeUsed(_Model):
    """What one gene contributed to a match: the diplotype and the key it was looked up by."""

    gene: str
    diplotype: str | None  # label of the recommendation diplotype (None when the gene was not reportable)
    phenotype: str | None
    lookup_key: str
    phenoconverted: bool = False


class MatchedRecommendation(_Model):
    recommendation_id: str
    guideline_id: str
    source: str
    drugs: list[str]
    population: str | None
    strength: str | None
    action: str
    also: list[str]
    dose_factor: tuple[float, float] | None
    alternatives: list[str]
    summary: str
    genotype: list[GenotypeUsed]
    url: str | None
    pmids: list[str]

    @property
    def actionable(self) -> bool:
        """Avoid the drug, use another, or change its dose."""
        return self.action in ACTIONABLE


class SourceAdvice(_Model):
    """One source's (CPIC or DPWG) advice for one drug."""

    source: str
    guidelines: list[str]  # guideline ids
    matched: bool  # a recommendation (other than "no recommendation") applies
    recommendations: list[MatchedRecommendation]
    missing_genes: list[str] = []  # guideline genes without a usable call
    messages: list[Message] = []


class DrugAdvice(_Model):
    drug: str
    rxnorm: str | None = None
    atc: list[str] = []
    sources: list[SourceAdvice]
    on_medication_list: bool = False

    @property
    def actionable(self) -> bool:
        return any(r.actionable for s in self.sources for r in s.recommendations)

    @property
    def matched(self) -> bool:
        return any(s.matched for s in self.sources)
