"""Typed, serialisable gene calls: the output of the matching stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CallStatus = Literal["called", "no_data", "uncallable", "not_called"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(_Model):
    name: str
    text: str


class HaplotypeCall(_Model):
    name: str
    components: list[str] = []  # named alleles on this strand when it is a combination ("[*6 + *14]")
    partials: list[str] = []  # variants outside any named allele on this strand (HGVS)

    @property
    def combination(self) -> bool:
        return len(self.components) > 1

    @property
    def partial(self) -> bool:
        return bool(self.partials)


class DiplotypeCall(_Model):
    name: str  # as the matcher names it, e.g. "*1/*17", "[*6 + *14]/*13", or "B (reference)" (haploid)
    haplotypes: list[HaplotypeCall]
    score: int


def _is_none(v) -> bool:
    return v is None


def _is_false(v) -> bool:
    return v is False


class PositionEvidence(_Model):
    """One definition position as read for one sample (defaults are left out when written)."""

    position: int
    rsid: str | None = Field(default=None, exclude_if=_is_none)
    call: str | None = Field(default=None, exclude_if=_is_none)  # e.g. "C/T", "C|T"; absent when missing
    status: Literal["called", "missing", "reference_filled"]
    phase_set: int | None = Field(default=None, exclude_if=_is_none)
    undocumented: bool = Field(default=False, exclude_if=_is_false)
    origin: str | None = Field(default=None, exclude_if=_is_none)  # how the record was matched, when not exact


class VariantOfInterest(_Model):
    """A position reported for context only (not used for matching), e.g. CYP2C9 rs12777823."""

    position: int
    rsid: str | None = None
    call: str


class GeneCall(_Model):
    gene: str
    status: CallStatus
    source_diplotypes: list[str]  # labels exactly as PharmCAT prints them
    diplotypes: list[DiplotypeCall] = []
    haplotype_matches: list[str] = []  # unphased lowest-function genes: alleles found
    match_score: int | None = None
    phased: bool = False
    effectively_phased: bool = False
    missing_positions: list[int] = []
    undocumented_positions: list[int] = []
    warnings: list[Message] = []
    evidence: list[PositionEvidence] = []
    variants_of_interest: list[VariantOfInterest] = []
