"""OUT/<sample>.report.json: versioned per-sample report (schema permed.report/1)."""

from __future__ import annotations

import datetime as _dt
import json
import os

from permed import __version__
from permed.advice.advice_set import AdviceSet
from permed.advice.model import DrugAdvice
from permed.phenotype.annotate import function_summary
from permed.phenotype.model import Diplotype, GeneReport, unspecified
from permed.phenotype.phenotype_set import PhenotypeSet
from permed.pipeline import CallSet
from permed.report.calls_tsv import gene_status

SCHEMA = "permed.report/1"


class SampleReportWriter:
    """Builds report JSON; each distinct gene call is serialised once and shared by every sample."""

    def __init__(self, callset: CallSet, pset: PhenotypeSet, created: str | None = None,
                 advice: AdviceSet | None = None):
        self.callset = callset
        self.pset = pset
        self.advice = advice
        self._drug_fragments: dict[int, tuple[str, DrugAdvice]] = {}  # holds the object: ids stay unique
        self._fragments: dict[int, str] = {}
        if created is None:
            # SOURCE_DATE_EPOCH (reproducible-builds convention) pins the timestamp for byte-identical reruns
            epoch = os.environ.get("SOURCE_DATE_EPOCH")
            now = (_dt.datetime.fromtimestamp(int(epoch), _dt.UTC) if epoch and epoch.isdigit()
                   else _dt.datetime.now(_dt.UTC))
            created = now.replace(microsecond=0).isoformat()
        self.created = created
        self._head = {
            "schema": SCHEMA,
            "generator": {"name": "permed", "version": __version__},
            "created": created,
            "knowledge_base": callset.kb.provenance(),
            "attribution": callset.kb.attribution,
            "options": callset.options.as_dict(),
        }

    def _fragment(self, call, report: GeneReport) -> str:
        key = (id(call), id(report))
        frag = self._fragments.get(key)
        if frag is None:
            data = gene_json(call, report)
            frag = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
            self._fragments[key] = frag
        return frag

    def render(self, si: int) -> str:
        cs = self.callset
        head = dict(self._head)
        head["sample"] = cs.samples[si]
        head["inputs"] = [
            {"file": cs.inputs[i].file, "sha256": cs.inputs[i].sha256, "notices": cs.inputs[i].notices}
            for i in cs.sample_files[si]
        ]
        head["gene_sources"] = {g: src for g in cs.genes if (src := cs.gene_source(si, g))}
        head["vcf_warnings"] = cs.sample_vcf_warnings(si)
        head["outside_calls"] = {
            "files": self.pset.outside_files,
            "errors": [{"gene": e.gene, "where": e.where, "reason": e.reason} for e in self.pset.outside_errors],
        }
        drugs_part = ""
        if self.advice is not None:
            sa = self.advice.sample(si)
            head["medications"] = sa.medications.as_dict()
            head["phenoconversion"] = [c.model_dump(mode="json") for c in sa.phenoconversions]
            head["actionable_drugs"] = [d.drug for d in sa.actionable]
            drugs_part = ',"drugs":{' + ",".join(f'"{d.drug}":{self._drug_fragment(d)}' for d in sa.drugs) + "}"
        body = json.dumps(head, separators=(",", ":"), ensure_ascii=False)[:-1] + drugs_part
        called = set(cs.genes)
        genes = ",".join(
            f'"{g}":{self._fragment(cs.call(si, g) if g in called else None, self.pset.report(si, g))}'
            for g in self.pset.genes
        )
        return body + ',"genes":{' + genes + "}}\n"


    def _drug_fragment(self, d: DrugAdvice) -> str:
        hit = self._drug_fragments.get(id(d))
        if hit is None:
            hit = self._drug_fragments[id(d)] = (
                json.dumps(drug_json(d), separators=(",", ":"), ensure_ascii=False), d)
        return hit[0]


def drug_json(d: DrugAdvice) -> dict:
    return {
        "rxnorm": d.rxnorm, "atc": d.atc, "on_medication_list": d.on_medication_list,
        "matched": d.matched, "actionable": d.actionable,
        "sources": {s.source: {
            "matched": s.matched, "guidelines": s.guidelines, "missing_genes": s.missing_genes,
            "messages": [m.model_dump() for m in s.messages],
            "recommendations": [r.model_dump(mode="json") for r in s.recommendations],
        } for s in d.sources},
    }


def diplotype_json(d: Diplotype) -> dict:
    return {
        "label": d.label,
        "haplotypes": list(d.alleles),
        "phenotype": "; ".join(d.phenotypes) if d.phenotypes else None,
        "phenotypes": list(d.phenotypes),
        "activity_score": None if unspecified(d.activity_score) else d.activity_score,
        "lookup_key": ";".join(d.lookup_keys) if d.lookup_keys else None,
        "lookup_keys": list(d.lookup_keys),
        "functions": list(d.functions),
        "function_summary": function_summary(d),
        "inferred_from": list(d.inferred_from),
    }


def gene_json(call, report: GeneReport) -> dict:
    """One gene's entry: the VCF-based call (when any) plus its interpretation."""
    if call is not None:
        data = call.model_dump(mode="json", exclude={"gene", "evidence"})
        # evidence rows omit default fields (phase set, flags) to keep reports small
        data["evidence"] = [e.model_dump(mode="json", exclude_defaults=True) for e in call.evidence]
    else:
        data = {}
    if report.outside_call:
        data["vcf_call"] = {k: data.get(k) for k in ("status", "source_diplotypes")} if call is not None else None
        data["source_diplotypes"] = [d.label for d in report.source_diplotypes]
    data["status"] = gene_status(call, report)
    scores = report.activity_scores
    data.update({
        "outside_call": report.outside_call,
        "called": report.called,
        "reportable": report.reportable,
        "print_calls": report.print_calls,
        "phenotypes": report.phenotypes,
        "activity_score": scores[0] if len(scores) == 1 else (" OR ".join(scores) if scores else None),
        "recommendation_diplotypes": [diplotype_json(d) for d in report.recommendation_diplotypes],
        "messages": [m.model_dump() for m in report.messages],
    })
    return data
