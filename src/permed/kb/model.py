"""permed's own knowledge-base format: allele definitions as validated, typed facts.

The format is independent of any upstream file layout; `permed kb build` converts a
PharmCAT release into it.  Every model is frozen so a loaded KB can be shared between
threads and workers without copying.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from permed.errors import KnowledgeBaseError

KB_SCHEMA = "permed.kb/2"

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
    # where the locus sits on GRCh37 (None: no mapping, so GRCh37 input leaves it missing) and, for an
    # SNV whose GRCh37 base differs from `ref`, that base (one of `alts`: GRCh37's reference is a variant here)
    position37: int | None = Field(default=None, gt=0)
    ref37: str | None = None
    # how position37 was found: "pypgx" (a row of PyPGx's variant table gives both builds' positions) or
    # "interpolated" (an SNV between two PyPGx-mapped positions of its gene with the same GRCh38->GRCh37 offset,
    # given that offset; GRCh37's base there is assumed to be `ref`). None with a position: a KB from before
    # this field, whose positions all came from PyPGx's table
    grch37_source: Literal["pypgx", "interpolated"] | None = None

    @model_validator(mode="after")
    def _check(self) -> Locus:
        if len(self.hgvs) != len(self.alts):
            raise ValueError(f"locus {self.position}: {len(self.hgvs)} HGVS names for {len(self.alts)} ALT alleles")
        for a in (self.ref, *self.alts):
            if not a or any(c not in "ACGT" for c in a):
                raise ValueError(f"locus {self.position}: allele {a!r} is not a DNA sequence")
        if self.ref37 is not None and (self.position37 is None or not self.is_snv or self.ref37 not in self.alts):
            raise ValueError(f"locus {self.position}: GRCh37 base {self.ref37!r} must be an ALT of a mapped SNV")
        if self.grch37_source is not None and self.position37 is None:
            raise ValueError(f"locus {self.position}: a GRCh37 source without a GRCh37 position")
        if self.grch37_interpolated and (not self.is_snv or self.ref37 is not None):
            raise ValueError(f"locus {self.position}: only an SNV with GRCh38's base can be interpolated to GRCh37")
        return self

    @property
    def grch37_interpolated(self) -> bool:
        """Is the GRCh37 position inferred by colinearity rather than given by a table row?"""
        return self.grch37_source == "interpolated"

    @property
    def ref_on_grch37(self) -> str:
        return self.ref37 or self.ref

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
    position37: int | None = None  # on GRCh37, when mapped (see Locus)


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


class PhenotypeRow(NamedTuple):
    """One diplotype (1 allele for hemizygous/single-allele genes, 2 otherwise) and what it means."""

    alleles: tuple[str, ...]  # sorted; a homozygote lists its allele twice
    phenotype: str
    activity_score: str | None
    lookup_key: str


_ROW, _FIELD, _ALLELE = ";", ",", "+"


class PhenotypeTable(_Frozen):
    """A diplotype -> phenotype table in columnar form: a gene has up to 17,000 rows (G6PD), a patient
    needs a few, so each text is stored once and rows as indexes into those lists, decoded on first use.
    A row is "a1+a2,phenotype,activity score,lookup key" (indexes; an empty score index means none)."""

    alleles: tuple[str, ...] = ()
    phenotypes: tuple[str, ...] = ()
    activity_scores: tuple[str, ...] = ()
    lookup_keys: tuple[str, ...] = ()
    rows: str = ""

    @classmethod
    def of(cls, rows) -> PhenotypeTable:
        values: dict[str, dict[str, int]] = {"alleles": {}, "phenotypes": {}, "activity_scores": {},
                                             "lookup_keys": {}}

        def code(kind: str, value: str) -> str:
            return str(values[kind].setdefault(value, len(values[kind])))

        encoded = []
        for r in rows:
            r = r if isinstance(r, PhenotypeRow) else PhenotypeRow(**r)
            score = "" if r.activity_score is None else code("activity_scores", r.activity_score)
            encoded.append(_FIELD.join((_ALLELE.join(code("alleles", a) for a in r.alleles),
                                        code("phenotypes", r.phenotype), score, code("lookup_keys", r.lookup_key))))
        return cls(rows=_ROW.join(encoded), **{k: tuple(v) for k, v in values.items()})

    def _decode_row(self, row: str) -> PhenotypeRow:
        """One row (checked here rather than at load: most rows of most tables are never needed)."""
        try:
            a, p, s, k = row.split(_FIELD)
            return PhenotypeRow(tuple(self.alleles[int(i)] for i in a.split(_ALLELE)), self.phenotypes[int(p)],
                                self.activity_scores[int(s)] if s else None, self.lookup_keys[int(k)])
        except (ValueError, IndexError):
            raise KnowledgeBaseError(f"knowledge base: phenotype table row {row!r} is malformed") from None

    def decode(self) -> tuple[PhenotypeRow, ...]:
        return tuple(self._decode_row(row) for row in self.rows.split(_ROW)) if self.rows else ()

    @cached_property
    def _by_alleles(self) -> dict[str, str]:
        """Row text by its allele part ("3+7" -> "3+7,2,,5"), split from the text without decoding."""
        return {row.partition(_FIELD)[0]: row for row in self.rows.split(_ROW)} if self.rows else {}

    @cached_property
    def _allele_codes(self) -> dict[str, str]:
        return {a: str(i) for i, a in enumerate(self.alleles)}

    def lookup(self, alleles: tuple[str, ...]) -> PhenotypeRow | None:
        """The row of a diplotype (alleles sorted), decoding only that row."""
        codes = self._allele_codes
        if any(a not in codes for a in alleles):
            return None
        row = self._by_alleles.get(_ALLELE.join(codes[a] for a in alleles))
        return None if row is None else self._decode_row(row)


class GenePhenotypes(_Frozen):
    """Allele functions and diplotype -> phenotype assignments for one gene."""

    gene: str
    source: str  # where these facts come from (release / file)
    data_version: str = "unknown"
    functions: dict[str, str] = {}  # allele -> function text
    activity: dict[str, str] = {}  # allele -> activity value (activity-score genes only)
    table: PhenotypeTable = PhenotypeTable()
    # rule-based genes instead of a table: "malignant-hyperthermia" (RYR1)
    rule: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _rows_to_table(cls, data):
        """Rows given one by one (KB building, permed.kb/1 files) are stored as a table."""
        if isinstance(data, dict) and "rows" in data:
            data = dict(data)
            data["table"] = PhenotypeTable.of(data.pop("rows"))
        return data

    @property
    def is_activity_gene(self) -> bool:
        return any(v and v.strip().lower() != "n/a" for v in self.activity.values())

    @cached_property
    def rows(self) -> tuple[PhenotypeRow, ...]:
        return self.table.decode()

    def lookup(self, alleles: tuple[str, ...]) -> PhenotypeRow | None:
        """The row of a diplotype (alleles sorted)."""
        return self.table.lookup(alleles)


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


class Grch37Site(_Frozen):
    """Where a definition SNV sits on GRCh37 (its GRCh38 position, the base GRCh37 has there and the
    variant allele): lets the reader recognise a file in GRCh37 coordinates from its records."""

    chromosome: str
    position: int  # GRCh38, as in the definitions
    position37: int
    ref37: str
    alt: str


class KnowledgeBase(_Frozen):
    schema_: Literal["permed.kb/2"] = Field(alias="schema")
    kb_version: str
    built: str
    sources: tuple[SourceInfo, ...]
    licence: str
    attribution: str
    genes: dict[str, GeneDefinition]
    phenotypes: dict[str, GenePhenotypes] = {}
    phenotypes_dpwg: dict[str, GenePhenotypes] = {}  # DPWG's own assignments, where DPWG differs
    guidelines: tuple[Guideline, ...] = ()
    grch37_sites: tuple[Grch37Site, ...] = ()
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
