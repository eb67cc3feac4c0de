"""`permed.report/1`: one patient's report as data (OUT/<sample>.report.json), with its JSON Schema.

The writer dumps this model; the service and the tests load it back. `permed schema report` prints
the schema (docs/schema/report.schema.json). Labels (diplotypes, phenotypes, statuses) are exactly
what PharmCAT prints; display wording belongs to the HTML/PDF report only.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from permed.advice.model import MatchedRecommendation, Phenoconversion
from permed.kb.model import SourceInfo
from permed.matcher.model import DiplotypeCall, Message, PositionEvidence, VariantOfInterest

REPORT_SCHEMA = "permed.report/1"

GeneStatus = Literal["called", "uncallable", "no_data", "not_called", "outside_call", "outside_call_unusable"]


def _is_none(v) -> bool:
    return v is None


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Generator(_Model):
    name: Literal["permed"] = "permed"
    version: str


class KnowledgeBaseRef(_Model):
    """Which knowledge base made the report."""

    kb_version: str
    kb_built: str
    kb_sha256: str | None
    sources: list[SourceInfo]
    licence: str


class RecordedOptions(_Model):
    """The options that change calls."""

    missing_to_ref: bool
    require_pass: bool
    find_combinations: bool
    all_matches: bool
    cyp2d6_from_vcf: bool


class InputFile(_Model):
    file: str = Field(description="the input's file name (as uploaded, for the service)")
    sha256: str
    notices: list[str] = Field(description="notes about the whole file (unsorted records, htslib warnings...)")


class OutsideCallProblem(_Model):
    gene: str
    where: str = Field(description="file:line of the outside call")
    reason: str


class OutsideCalls(_Model):
    files: list[str]
    errors: list[OutsideCallProblem]


class Medications(_Model):
    given: list[str]
    recognised: dict[str, str] = Field(description="as given -> drug name")
    inhibitors: dict[str, dict[str, str]] = Field(description="as given -> gene -> strong | moderate")
    unrecognised: list[str]


class RecommendationDiplotype(_Model):
    """A diplotype advice is looked up by (several for an ambiguous call)."""

    label: str
    haplotypes: list[str]
    phenotype: str | None
    phenotypes: list[str]
    activity_score: str | None
    lookup_key: str | None
    lookup_keys: list[str]
    functions: list[str | None]
    function_summary: str
    inferred_from: list[str]


class VcfCallSummary(_Model):
    """What the VCF said for a gene an outside call replaced (kept, not used)."""

    status: str | None
    source_diplotypes: list[str] | None


class GeneEntry(_Model):
    """One gene: the VCF-based call (its fields are absent for a gene known only from an outside call)
    and its interpretation."""

    status: GeneStatus
    source_diplotypes: list[str] = Field(description="diplotype labels exactly as PharmCAT prints them")
    diplotypes: list[DiplotypeCall] | None = Field(default=None, exclude_if=_is_none)
    haplotype_matches: list[str] | None = Field(default=None, exclude_if=_is_none)
    match_score: int | None = None
    phased: bool | None = Field(default=None, exclude_if=_is_none)
    effectively_phased: bool | None = Field(default=None, exclude_if=_is_none)
    missing_positions: list[int] | None = Field(default=None, exclude_if=_is_none)
    undocumented_positions: list[int] | None = Field(default=None, exclude_if=_is_none)
    warnings: list[Message] | None = Field(default=None, exclude_if=_is_none)
    evidence: list[PositionEvidence] | None = Field(default=None, exclude_if=_is_none)
    variants_of_interest: list[VariantOfInterest] | None = Field(default=None, exclude_if=_is_none)
    vcf_call: VcfCallSummary | None = Field(default=None, description="outside calls only")
    outside_call: bool
    called: bool
    reportable: bool = Field(description="advice can be looked up")
    print_calls: list[str] = Field(description="the call as reports show it (PharmCAT's display rules)")
    phenotypes: list[str]
    activity_score: str | None
    recommendation_diplotypes: list[RecommendationDiplotype]
    messages: list[Message]

    @model_serializer(mode="wrap")
    def _shape(self, handler):
        data = handler(self)
        if not self.outside_call:
            data.pop("vcf_call", None)  # only an outside call has a VCF call to set aside
        if self.diplotypes is None:
            data.pop("match_score", None)
        return data


class SourceEntry(_Model):
    """One source's (CPIC or DPWG) advice for a drug."""

    matched: bool = Field(description="a recommendation other than 'no recommendation' applies")
    guidelines: list[str]
    missing_genes: list[str] = Field(description="guideline genes without a usable call (looked up as No Result)")
    messages: list[Message]
    recommendations: list[MatchedRecommendation]


class DrugEntry(_Model):
    rxnorm: str | None
    atc: list[str]
    on_medication_list: bool
    matched: bool
    actionable: bool = Field(description="avoid, use an alternative or change the dose")
    sources: dict[str, SourceEntry]


class PatientReport(_Model):
    """Everything permed reports for one patient (one VCF sample)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_: Literal["permed.report/1"] = Field(default=REPORT_SCHEMA, alias="schema")
    generator: Generator
    created: str
    knowledge_base: KnowledgeBaseRef
    attribution: str
    options: RecordedOptions
    sample: str
    inputs: list[InputFile]
    gene_sources: dict[str, str] = Field(description="gene -> the input file its data came from")
    vcf_warnings: dict[str, list[str]] = Field(description='"chrom:pos" (or "VCF") -> warnings')
    outside_calls: OutsideCalls
    medications: Medications | None = Field(default=None, exclude_if=_is_none)
    phenoconversion: list[Phenoconversion] | None = Field(default=None, exclude_if=_is_none)
    actionable_drugs: list[str] | None = Field(default=None, exclude_if=_is_none)
    drugs: dict[str, DrugEntry] | None = Field(default=None, exclude_if=_is_none)
    genes: dict[str, GeneEntry]

    def dumps(self) -> str:
        """The report as written: compact JSON, one line."""
        return self.model_dump_json(by_alias=True) + "\n"

    @classmethod
    def loads(cls, text: str | bytes) -> PatientReport:
        return cls.model_validate_json(text)


def report_schema() -> dict:
    """The JSON Schema of permed.report/1 (what is written: serialisation mode)."""
    schema = PatientReport.model_json_schema(by_alias=True, mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "permed.report/1"
    return schema


def report_schema_text() -> str:
    return json.dumps(report_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
