"""Typed, serialisable gene calls: the output of the matching stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

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


class PositionEvidence(_Model):
    position: int
    rsid: str | None = None
    call: str | None = None  # e.g. "C/T", "C|T"; None when missing
    status: Literal["called", "missing", "reference_filled"]
    phase_set: int | None = None
    undocumented: bool = False
    origin: str | None = None  # how the record was matched, when not an exact match


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
    variants_of_interest: list[dict] = []
