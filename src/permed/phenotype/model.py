"""Typed, serialisable results of the phenotype stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from permed.matcher.model import Message

NA = "n/a"
NO_RESULT = "No Result"
INDETERMINATE = "Indeterminate"
UNKNOWN_ALLELE = "Unknown"
NOT_CALLED = "Not called"
NO_DATA = "Not called - no variant data provided"

CallSource = Literal["matcher", "outside", "none"]


def unspecified(value: str | None) -> bool:
    return value is None or not value.strip() or value.strip().lower() == NA


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Diplotype(_Model):
    """One diplotype (one allele for hemizygous genes, none for a phenotype-only outside call)."""

    gene: str
    alleles: list[str]  # allele1 first, as stored (PharmCAT keeps outside-call order)
    label: str
    phenotypes: list[str] = []
    activity_score: str | None = None
    lookup_keys: list[str] = []
    functions: list[str | None] = []  # per allele: function text
    activity_values: list[str | None] = []  # per allele: activity value (activity-score genes)
    inferred: bool = False  # derived from other diplotypes (lowest function, copy number)
    inferred_from: list[str] = []  # labels of the diplotypes it was derived from
    combination: bool = False
    outside_phenotype: bool = False
    outside_activity_score: bool = False

    @property
    def unknown_alleles(self) -> bool:
        return all(a == UNKNOWN_ALLELE for a in self.alleles)

    @property
    def unknown_phenotype(self) -> bool:
        return not self.phenotypes or NO_RESULT in self.phenotypes

    @property
    def unknown(self) -> bool:
        return self.unknown_alleles and self.unknown_phenotype

    @property
    def phenotype_only(self) -> bool:
        return self.unknown_alleles and not self.unknown_phenotype


class GeneReport(_Model):
    """Everything the interpretation stage knows about one gene of one sample (or pattern of samples)."""

    gene: str
    call_source: CallSource
    source_diplotypes: list[Diplotype]
    recommendation_diplotypes: list[Diplotype]
    print_calls: list[str]
    called: bool
    reportable: bool
    no_data: bool = False
    missing_positions: list[int] = []  # definition positions absent from the input (VCF-based reports)
    homozygous_components: list[str] = []
    messages: list[Message] = []

    @property
    def outside_call(self) -> bool:
        return self.call_source == "outside"

    @property
    def phenotypes(self) -> list[str]:
        out: list[str] = []
        for d in self.recommendation_diplotypes:
            out.extend(p for p in d.phenotypes if p not in out)
        return out

    @property
    def activity_scores(self) -> list[str]:
        out: list[str] = []
        for d in self.recommendation_diplotypes:
            if not unspecified(d.activity_score) and d.activity_score not in out:
                out.append(d.activity_score)
        return out

    @property
    def lookup_keys(self) -> list[list[str]]:
        return [d.lookup_keys for d in self.recommendation_diplotypes]
