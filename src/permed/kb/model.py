"""permed's own knowledge-base format: allele definitions as validated, typed facts.

The format is independent of any upstream file layout; `permed kb build` converts a
PharmCAT release into it.  Every model is frozen so a loaded KB can be shared between
threads and workers without copying.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KB_SCHEMA = "permed.kb/1"

# IUPAC nucleotide codes used by some allele definitions ("wobbles").
IUPAC = {
    "A": "A", "C": "C", "G": "G", "T": "T",
    "R": "AG", "Y": "CT", "S": "CG", "W": "AT", "K": "GT", "M": "AC",
    "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG", "N": "ACGT",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Locus(_Frozen):
    """A definition position in VCF (GRCh38, left-anchored) representation."""

    position: int = Field(gt=0)
    rsid: str | None = None
    ref: str = Field(min_length=1)
    alts: tuple[str, ...]
    # genomic HGVS name per ALT allele, aligned with `alts`
    hgvs: tuple[str, ...]

    @model_validator(mode="after")
    def _check(self) -> Locus:
        if len(self.hgvs) != len(self.alts):
            raise ValueError(f"locus {self.position}: {len(self.hgvs)} HGVS names for {len(self.alts)} ALT alleles")
        for a in (self.ref, *self.alts):
            if not a or any(c not in "ACGT" for c in a):
                raise ValueError(f"locus {self.position}: allele {a!r} is not a DNA sequence")
        return self

    @property
    def is_snv(self) -> bool:
        return len(self.ref) == 1 and all(len(a) == 1 for a in self.alts)

    def hgvs_for(self, allele: str) -> str:
        """Genomic HGVS label for an observed allele ('.' = missing), as PharmCAT names partials."""
        if allele == ".":
            return f"g.{self.position}?"
        if allele == self.ref:
            return f"g.{self.position}="
        if allele in self.alts:
            return self.hgvs[self.alts.index(allele)]
        return f"g.{self.position}{self.ref}>{allele}"


class NamedAllele(_Frozen):
    """A named allele (star allele, variant name...) as a sparse map locus-index -> allele."""

    name: str = Field(min_length=1)
    id: str | None = None
    reference: bool = False
    structural: bool = False
    # locus index (into GeneDefinition.loci) -> VCF allele or IUPAC code
    defined: dict[int, str]

    @field_validator("defined")
    @classmethod
    def _check_defined(cls, v: dict[int, str]) -> dict[int, str]:
        if not v:
            raise ValueError("a named allele must define at least one position")
        return v

    @property
    def score(self) -> int:
        return len(self.defined)


class UnphasedPriority(_Frozen):
    """When unphased data yields exactly these diplotypes, report `pick` (PharmCAT exemption)."""

    diplotypes: tuple[str, ...]
    pick: str


class ExtraLocus(_Frozen):
    position: int
    rsid: str | None = None
    ref: str
    alts: tuple[str, ...]


class Exemptions(_Frozen):
    required_positions: tuple[int, ...] = ()
    ignored_alleles: tuple[str, ...] = ()
    ignored_positions: tuple[int, ...] = ()
    unphased_priorities: tuple[UnphasedPriority, ...] = ()
    extra_loci: tuple[ExtraLocus, ...] = ()
    amp1_alleles: tuple[str, ...] = ()
    amp1_positions: tuple[int, ...] = ()


class GeneDefinition(_Frozen):
    gene: str
    chromosome: str
    genome_build: str
    refseq_chromosome: str | None = None
    data_source: str | None = None
    data_version: str | None = None
    loci: tuple[Locus, ...]
    alleles: tuple[NamedAllele, ...]
    exemptions: Exemptions = Exemptions()
    suballeles: dict[str, str] = {}

    @model_validator(mode="after")
    def _check(self) -> GeneDefinition:
        if not self.chromosome.startswith("chr"):
            raise ValueError(f"{self.gene}: chromosome must be chr-prefixed, got {self.chromosome!r}")
        positions = [loc.position for loc in self.loci]
        if len(set(positions)) != len(positions):
            raise ValueError(f"{self.gene}: duplicate definition positions")
        n = len(self.loci)
        names = set()
        for a in self.alleles:
            if a.name in names:
                raise ValueError(f"{self.gene}: duplicate allele name {a.name!r}")
            names.add(a.name)
            for idx, allele in a.defined.items():
                if not 0 <= idx < n:
                    raise ValueError(f"{self.gene} {a.name}: locus index {idx} out of range")
                locus = self.loci[idx]
                if allele not in (locus.ref, *locus.alts) and not (len(allele) == 1 and allele in IUPAC):
                    raise ValueError(f"{self.gene} {a.name}: allele {allele!r} unknown at {locus.position}")
        refs = [a for a in self.alleles if a.reference]
        if len(refs) != 1:
            raise ValueError(f"{self.gene}: expected exactly one reference allele, found {len(refs)}")
        if len(refs[0].defined) != n:
            raise ValueError(f"{self.gene}: reference allele {refs[0].name!r} must define every position")
        return self

    @cached_property
    def reference_allele(self) -> NamedAllele:
        return next(a for a in self.alleles if a.reference)

    @cached_property
    def position_index(self) -> dict[int, int]:
        return {loc.position: i for i, loc in enumerate(self.loci)}


class PhenotypeRow(_Frozen):
    """One diplotype (1 allele for hemizygous/single-allele genes, 2 otherwise) and what it means."""

    alleles: tuple[str, ...]  # sorted; a homozygote lists its allele twice
    phenotype: str
    activity_score: str | None = None
    lookup_key: str


class GenePhenotypes(_Frozen):
    """Allele functions and diplotype -> phenotype assignments for one gene."""

    gene: str
    source: str  # where these facts come from (release / file)
    data_version: str = "unknown"
    functions: dict[str, str] = {}  # allele -> function text
    activity: dict[str, str] = {}  # allele -> activity value (activity-score genes only)
    rows: tuple[PhenotypeRow, ...] = ()
    # rule-based genes instead of a table: "malignant-hyperthermia" (RYR1)
    rule: str | None = None

    @property
    def is_activity_gene(self) -> bool:
        return any(v and v.strip().lower() != "n/a" for v in self.activity.values())

    @cached_property
    def index(self) -> dict[tuple[str, ...], PhenotypeRow]:
        return {r.alleles: r for r in self.rows}


class DrugInfo(_Frozen):
    name: str  # lower case, as ClinPGx names it
    pharmgkb_id: str | None = None
    rxnorm: str | None = None
    atc: tuple[str, ...] = ()


class GuidelineRecommendation(_Frozen):
    """One recommendation of a guideline, as structured facts (no guideline text is stored)."""

    id: str
    population: str | None = None
    strength: str | None = None  # CPIC: Strong/Moderate/Optional/No recommendation; DPWG: as classified
    lookup: dict[str, str | dict[str, int]]  # gene -> lookup key, or -> {allele: copies} (diplotype-keyed)
    drugs: tuple[str, ...]
    action: str  # avoid | alternative | dose_decrease | dose_increase | monitor | standard | no_recommendation
    #              | see_guideline
    also: tuple[str, ...] = ()  # secondary actions named by the same recommendation
    dose_factor: tuple[float, float] | None = None  # fraction of the standard dose (low, high)
    alternatives: tuple[str, ...] = ()  # other drugs the recommendation names
    dosing_information: bool = False
    alternate_drug_available: bool = False
    other_guidance: bool = False
    summary: str  # permed's own words, written from the facts above


class Guideline(_Frozen):
    id: str
    source: str  # CPIC | DPWG
    name: str
    url: str | None = None
    version: str = ""
    data_version: str = ""
    drugs: tuple[DrugInfo, ...]
    genes: tuple[str, ...]
    pmids: tuple[str, ...] = ()
    has_recommendations: bool = True
    recommendations: tuple[GuidelineRecommendation, ...] = ()


class SourceInfo(_Frozen):
    name: str
    release: str
    data_version: str
    url: str
    licence: str


class KnowledgeBase(_Frozen):
    schema_: Literal["permed.kb/1"] = Field(alias="schema")
    kb_version: str
    built: str
    sources: tuple[SourceInfo, ...]
    licence: str
    attribution: str
    genes: dict[str, GeneDefinition]
    phenotypes: dict[str, GenePhenotypes] = {}
    phenotypes_dpwg: dict[str, GenePhenotypes] = {}  # DPWG's own assignments, where DPWG differs
    guidelines: tuple[Guideline, ...] = ()
    sha256: str | None = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def provenance(self) -> dict:
        """Short provenance block copied into every output."""
        return {
            "kb_version": self.kb_version,
            "kb_built": self.built,
            "kb_sha256": self.sha256,
            "sources": [s.model_dump() for s in self.sources],
            "licence": self.licence,
        }
