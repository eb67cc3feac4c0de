"""Build each patient's `PatientReport` from a run's result.

Samples sharing a gene call (or a drug's advice) share one entry object: a cohort costs one entry per
distinct call, not one per sample.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from permed import __version__
from permed.advice.model import DrugAdvice
from permed.matcher.model import GeneCall
from permed.phenotype.annotate import function_summary
from permed.phenotype.model import Diplotype, GeneReport, unspecified
from permed.report.gene_summary import summarize
from permed.report.model import (
    DrugEntry,
    GeneEntry,
    Generator,
    InputFile,
    KnowledgeBaseRef,
    Medications,
    OutsideCallProblem,
    OutsideCalls,
    PatientReport,
    RecommendationDiplotype,
    RecordedOptions,
    SourceEntry,
    VcfCallSummary,
)

if TYPE_CHECKING:
    from permed.engine.result import Result


def recommendation_diplotype(d: Diplotype) -> RecommendationDiplotype:
    return RecommendationDiplotype(
        label=d.label,
        haplotypes=list(d.alleles),
        phenotype="; ".join(d.phenotypes) if d.phenotypes else None,
        phenotypes=list(d.phenotypes),
        activity_score=None if unspecified(d.activity_score) else d.activity_score,
        lookup_key=";".join(d.lookup_keys) if d.lookup_keys else None,
        lookup_keys=list(d.lookup_keys),
        functions=list(d.functions),
        function_summary=function_summary(d),
        inferred_from=list(d.inferred_from),
    )


def gene_entry(call: GeneCall | None, report: GeneReport) -> GeneEntry:
    """One gene's entry: the VCF-based call (when any) plus its interpretation."""
    data: dict = {}
    if call is not None:
        data = {name: getattr(call, name) for name in (
            "source_diplotypes", "diplotypes", "haplotype_matches", "match_score", "phased", "effectively_phased",
            "missing_positions", "undocumented_positions", "warnings", "evidence", "variants_of_interest")}
    if report.outside_call:
        data["vcf_call"] = (VcfCallSummary(status=call.status, source_diplotypes=call.source_diplotypes)
                            if call is not None else None)
        data["source_diplotypes"] = [d.label for d in report.source_diplotypes]
    scores = report.activity_scores
    return GeneEntry(
        **data,
        status=summarize(call, report).status,
        outside_call=report.outside_call,
        called=report.called,
        reportable=report.reportable,
        print_calls=report.print_calls,
        phenotypes=report.phenotypes,
        activity_score=scores[0] if len(scores) == 1 else (" OR ".join(scores) if scores else None),
        recommendation_diplotypes=[recommendation_diplotype(d) for d in report.recommendation_diplotypes],
        messages=report.messages,
    )


def drug_entry(d: DrugAdvice) -> DrugEntry:
    return DrugEntry(
        rxnorm=d.rxnorm, atc=list(d.atc), on_medication_list=d.on_medication_list, matched=d.matched,
        actionable=d.actionable,
        sources={s.source: SourceEntry(matched=s.matched, guidelines=s.guidelines, missing_genes=s.missing_genes,
                                       messages=s.messages, recommendations=s.recommendations)
                 for s in d.sources},
    )


class ReportBuilder:
    """Patient reports of one result; entries are built once per distinct call and drug advice."""

    def __init__(self, result: Result):
        self.result = result
        kb = result.kb
        self._genes: dict[tuple[int, int], tuple[GeneEntry, GeneCall | None, GeneReport]] = {}
        self._drugs: dict[int, tuple[DrugEntry, DrugAdvice]] = {}  # holding the object keeps its id unique
        self._json: dict[int, str] = {}  # entry id -> its JSON (entries are shared and live as long as self)
        self._keys: dict[str, str] = {}  # drug and gene names as JSON strings
        self._head = dict(
            generator=Generator(version=__version__),
            created=result.created,
            knowledge_base=KnowledgeBaseRef(kb_version=kb.kb_version, kb_built=kb.built, kb_sha256=kb.sha256,
                                            sources=list(kb.sources), licence=kb.licence),
            attribution=kb.attribution,
            options=RecordedOptions(**result.options.recorded()),
            outside_calls=OutsideCalls(
                files=result.phenotypes.outside_files,
                errors=[OutsideCallProblem(gene=e.gene, where=e.where, reason=e.reason)
                        for e in result.phenotypes.outside_errors]),
        )

    def _gene(self, call: GeneCall | None, report: GeneReport) -> GeneEntry:
        key = (id(call), id(report))
        hit = self._genes.get(key)
        if hit is None:
            hit = self._genes[key] = (gene_entry(call, report), call, report)
        return hit[0]

    def _drug(self, d: DrugAdvice) -> DrugEntry:
        hit = self._drugs.get(id(d))
        if hit is None:
            hit = self._drugs[id(d)] = (drug_entry(d), d)
        return hit[0]

    def _entry_json(self, entry) -> str:
        text = self._json.get(id(entry))
        if text is None:
            text = self._json[id(entry)] = entry.model_dump_json()
        return text

    def dumps(self, si: int) -> str:
        """Sample `si`'s report as written: exactly `self.patient(si).dumps()`, with each shared gene and drug
        entry serialised once for all the samples that share it (a cohort's reports cost per distinct call)."""
        report = self.patient(si)
        head = report.model_dump_json(by_alias=True, exclude={"drugs", "genes"})[:-1]
        parts = [head]
        if report.drugs is not None:
            parts.append(',"drugs":{' + ",".join(f"{self._key(k)}:{self._entry_json(v)}"
                                                 for k, v in report.drugs.items()) + "}")
        parts.append(',"genes":{' + ",".join(f"{self._key(k)}:{self._entry_json(v)}"
                                             for k, v in report.genes.items()) + "}}\n")
        return "".join(parts)

    def _key(self, name: str) -> str:
        text = self._keys.get(name)
        if text is None:
            text = self._keys[name] = json.dumps(name, ensure_ascii=False)
        return text

    def patient(self, si: int) -> PatientReport:
        res = self.result
        cs, ps = res.calls, res.phenotypes
        called = set(cs.genes)
        advice = {}
        if res.advice is not None:
            sa = res.advice.sample(si)
            advice = dict(
                medications=Medications(**sa.medications.as_dict()),
                phenoconversion=sa.phenoconversions,
                actionable_drugs=[d.drug for d in sa.actionable],
                drugs={d.drug: self._drug(d) for d in sa.drugs},
            )
        return PatientReport(
            **self._head,
            sample=cs.samples[si],
            inputs=[InputFile(file=cs.inputs[i].file, sha256=cs.inputs[i].sha256, notices=cs.inputs[i].notices)
                    for i in cs.sample_files[si]],
            gene_sources={g: src for g in cs.genes if (src := cs.gene_source(si, g))},
            vcf_warnings=cs.sample_vcf_warnings(si),
            **advice,
            genes={g: self._gene(cs.call(si, g) if g in called else None, ps.report(si, g)) for g in ps.genes},
        )
