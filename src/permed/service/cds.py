"""CDS Hooks 2.0 services inside `permed serve`: pharmacogenomic cards while a clinician orders a drug
(order-select, order-sign) and a summary when a patient's record is opened (patient-view).

The EHR names its patient (`context.patientId`); the lab has linked that FHIR Patient id to a stored
patient (an upload and a VCF sample in it) of the organisation the EHR's JWT issuer is configured for
(cds_auth.py). Drafted medications are matched to the knowledge base's drugs by RxNorm ingredient code or
by a drug name in the coding's display or the concept's text (whole words, any case): a clinical-drug
code ("clopidogrel 75 MG Oral Tablet") matches by its name, a brand name alone does not. Each matched drug
with advice to avoid it, use another or change its dose gets one card from the stored report.

The medication list (the prefetched active medications, the other draft orders and the medications
stored with the upload) can hold a CYP2D6 or CYP2C19 inhibitor the stored report did not know; then the
advice is computed again from the stored phenotypes with that list (phenoconversion), once per upload,
sample and set of inhibitors (cached). A call reads no file once its patient is in memory.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from permed.advice.medications import inhibitor_data
from permed.advice.model import MatchedRecommendation, Phenoconversion
from permed.errors import PermedError
from permed.kb.wording import DRUG_INDICATIONS, action_label, population_label
from permed.report.builder import drug_entry
from permed.report.model import DrugEntry, PatientReport
from permed.report.naming import ReportFiles

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PREFIX = "/cds-services"
MAX_SUMMARY = 139  # the specification: a summary of fewer than 140 characters
ADVICE_CACHE = 10_000  # recomputed advice kept (upload, sample, inhibitors)
PATIENT_CACHE = 10_000  # stored patients (report and phenotypes) kept in memory
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# worst first: the card's indicator and the advice its summary names
SEVERITY = {"avoid": 0, "alternative": 1, "dose_decrease": 2, "dose_increase": 2}
INDICATOR = {"avoid": "critical", "alternative": "warning", "dose_decrease": "warning", "dose_increase": "warning"}
ENDED = frozenset({"stopped", "cancelled", "completed", "entered-in-error", "not-taken", "revoked"})
MEDICATION_TYPES = frozenset({"MedicationRequest", "MedicationOrder", "MedicationStatement"})
MAX_RESOURCES = 2000  # medication resources read from one request


class Service(NamedTuple):
    id: str
    hook: str
    title: str
    description: str


_MEDICATION_PREFETCH = {
    "medicationRequests": "MedicationRequest?patient={{context.patientId}}&status=active",
    "medicationStatements": "MedicationStatement?patient={{context.patientId}}&status=active",
}
SERVICES = {s.id: s for s in (
    Service("permed-pgx-order-select", "order-select", "permed pharmacogenomics (order selected)",
            "Pharmacogenomic advice (CPIC, DPWG) for a drug just selected, from the patient's stored genotype; "
            "inhibitors on the medication list are taken into account (phenoconversion)."),
    Service("permed-pgx-order-sign", "order-sign", "permed pharmacogenomics (order signed)",
            "Pharmacogenomic advice (CPIC, DPWG) for the drugs of the orders about to be signed, from the "
            "patient's stored genotype; inhibitors on the medication list are taken into account."),
    Service("permed-pgx-patient-view", "patient-view", "permed pharmacogenomics summary",
            "One card naming the genes and drugs with actionable pharmacogenomic advice for the patient."),
)}


def discovery() -> dict:
    """The discovery document (GET /cds-services)."""
    return {"services": [{"hook": s.hook, "title": s.title, "description": s.description, "id": s.id,
                          "prefetch": dict(_MEDICATION_PREFETCH),
                          "usageRequirements": "The lab links the EHR's Patient id to the patient's stored "
                                               "genotype in permed (POST /api/v1/samples/{id}/patient-link)."}
                         for s in SERVICES.values()]}


class BadRequest(Exception):
    """A CDS request that does not follow the specification (400, with this message)."""


# ---- medications named by FHIR resources ------------------------------------------------------------------

def _words(text: str) -> tuple[str, ...]:
    return tuple(w for w in re.split(r"[^a-z0-9]+", text.lower()) if w)


class MedicationNames:
    """Finds the knowledge base's drugs and the known CYP inhibitors in FHIR medication concepts: by RxNorm
    ingredient code, or by a name appearing as whole words in a coding's display or the concept's text."""

    def __init__(self, kb):
        self.by_rxnorm: dict[str, str] = {}
        self.rxnorm_of: dict[str, str] = {}
        names: set[str] = set()
        for by in inhibitor_data()["inhibitors"].values():
            for listed in by.values():
                names.update(listed)
        self.inhibitors = frozenset(names)
        for g in kb.guidelines:
            for d in g.drugs:
                names.add(d.name)
                if d.rxnorm:
                    self.by_rxnorm[d.rxnorm] = d.name
                    self.rxnorm_of[d.name] = d.rxnorm
        self.kb_drugs = frozenset(self.rxnorm_of) | {d.name for g in kb.guidelines for d in g.drugs}
        self._by_first: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for name in names:
            words = _words(name)
            if words:
                self._by_first.setdefault(words[0], []).append((words, name))
        for entries in self._by_first.values():
            entries.sort(key=lambda e: -len(e[0]))  # the longest name first ("peginterferon alfa-2b")

    def in_text(self, text: str) -> list[str]:
        words = _words(text)
        found = []
        for i, w in enumerate(words):
            for name_words, name in self._by_first.get(w, ()):
                if words[i:i + len(name_words)] == name_words:
                    found.append(name)
                    break
        return found

    def in_concept(self, concept) -> list[str]:
        """Drug and inhibitor names of a CodeableConcept, in order, each once."""
        if not isinstance(concept, dict):
            return []
        found: list[str] = []
        for coding in concept.get("coding") or ():
            if not isinstance(coding, dict):
                continue
            code = coding.get("code")
            if coding.get("system") == RXNORM and isinstance(code, str) and code in self.by_rxnorm:
                found.append(self.by_rxnorm[code])
            display = coding.get("display")
            if isinstance(display, str):
                found += self.in_text(display)
        text = concept.get("text")
        if isinstance(text, str):
            found += self.in_text(text)
        return list(dict.fromkeys(found))

    def in_resource(self, resource: dict, medications: dict[str, dict]) -> list[str]:
        """The names a MedicationRequest/MedicationStatement (R4, or R5's CodeableReference) names; a
        referenced Medication is looked up among the resource's contained ones and the bundle's."""
        concept = resource.get("medicationCodeableConcept")
        if concept is None and isinstance(resource.get("medication"), dict):  # R5: medication.concept
            concept = resource["medication"].get("concept")
            reference = (resource["medication"].get("reference") or {}).get("reference")
        else:
            reference = (resource.get("medicationReference") or {}).get("reference")
        if concept is None and isinstance(reference, str):
            if reference.startswith("#"):
                contained = {c.get("id"): c for c in resource.get("contained") or () if isinstance(c, dict)}
                concept = (contained.get(reference[1:]) or {}).get("code")
            else:
                concept = (medications.get(reference) or {}).get("code")
        return self.in_concept(concept)


def _resources(bundle) -> list[dict]:
    """The resources of a Bundle (or a single resource), at most MAX_RESOURCES."""
    if not isinstance(bundle, dict):
        return []
    if bundle.get("resourceType") != "Bundle":
        return [bundle]
    out = []
    for entry in bundle.get("entry") or ():
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            out.append(entry["resource"])
            if len(out) >= MAX_RESOURCES:
                break
    return out


def _medication_index(resources: list[dict]) -> dict[str, dict]:
    return {f"Medication/{r.get('id')}": r for r in resources if r.get("resourceType") == "Medication"}


# ---- what cards are made from -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Stored:
    """A linked patient's stored results, as loaded (and verified) once."""

    upload_id: int
    job_id: int
    sample: str
    report: PatientReport
    phenotypes: Path | None  # the job's phenotype file (verified), None for jobs from before it was kept
    key: str  # the report's digest (or job id): changes when the job is run again


@dataclass(frozen=True)
class Advice:
    """The drugs' advice for one patient and medication list."""

    key: tuple
    drugs: dict[str, DrugEntry]
    conversions: tuple[Phenoconversion, ...]
    note: str | None  # why phenoconversion could not be applied (an old job), for the cards' detail


class Draft(NamedTuple):
    """A drafted medication order and the drug it names."""

    drug: str
    resource: dict


def _md(text: str) -> str:
    """Text shown literally in Markdown (drug names, guideline wording)."""
    return re.sub(r"([\\`*_{}\[\]<>()#+!|~])", r"\\\1", text)


def _code(text: str) -> str:
    """A label shown as code (diplotypes: `*2/*17` would otherwise turn into emphasis)."""
    return "`" + text.replace("`", "'") + "`"


def _shorten(text: str, limit: int = MAX_SUMMARY) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:—-")
    return cut + "…"


def _recommendations(entry: DrugEntry) -> list[MatchedRecommendation]:
    """What applies (no "no recommendation" rows): actionable first, worst first, sources in report order."""
    recs = [r for src in entry.sources.values() for r in src.recommendations if r.action != "no_recommendation"]
    return sorted(recs, key=lambda r: SEVERITY.get(r.action, 9))


class CardText(NamedTuple):
    indicator: str
    summary: str
    detail: str
    source: dict
    alternatives: tuple[str, ...]


def card_text(drug: str, entry: DrugEntry, advice: Advice) -> CardText | None:
    """The parts of a drug's card that depend only on the patient's advice (cached per advice and drug),
    or None when nothing actionable applies."""
    if not entry.actionable:
        return None
    recs = _recommendations(entry)
    worst = recs[0]
    conversions = {c.gene: c for c in advice.conversions}
    genotypes = {}
    for r in recs:
        for g in r.genotype:
            genotypes.setdefault(g.gene, g)
    phenos = []
    for g in genotypes.values():
        if g.phenotype:
            conv = conversions.get(g.gene) if g.phenoconverted else None
            phenos.append(f"{g.gene} {g.phenotype}" + (f" with {conv.inhibitor}" if conv else ""))
    alternatives = tuple(dict.fromkeys(a for r in recs if r.actionable for a in r.alternatives))
    summary = f"{drug[:1].upper()}{drug[1:]}: {action_label(worst.action).lower()}"
    if phenos:
        summary += f" ({'; '.join(phenos)})"
    if worst.population not in (None, "general"):
        summary += " for some patient groups"
    if alternatives:
        summary += f"; consider {' or '.join(alternatives)}"
    lines = ["**Pharmacogenomic result**", ""]
    for g in genotypes.values():
        label = _code(g.diplotype) if g.diplotype else "no call"
        conv = conversions.get(g.gene) if g.phenoconverted else None
        if conv is not None:
            before = ", ".join(dict.fromkeys(conv.from_phenotypes)) or "unknown"
            lines.append(f"- **{g.gene}**: genotype {label}; phenotype from the genotype: {_md(before)}. "
                         f"Phenoconversion: {_md(conv.inhibitor)} is a {conv.strength} {g.gene} inhibitor, so this "
                         f"advice uses **{_md(g.phenotype or '')}**.")
        else:
            lines.append(f"- **{g.gene}**: genotype {label}; phenotype {_md(g.phenotype or 'unknown')}.")
    if advice.note:
        lines += ["", f"_{_md(advice.note)}_"]
    lines += ["", "**Recommendations**", ""]
    for r in recs:
        who = population_label(r.population)
        head = f"{r.source}" + (f", {r.strength}" if r.strength and r.strength != "N/A" else "")
        head += f"; {_md(who)}" if who else ""
        cite = f" [Guideline]({r.url})" if r.url else ""
        if r.pmids:
            cite += " · PMID " + ", ".join(r.pmids)
        lines.append(f"- **{action_label(r.action)}** ({head}): {_md(r.summary)}{cite}")
    source = {"label": f"{worst.source} guideline"}
    if worst.url:
        source["url"] = worst.url
    return CardText(INDICATOR.get(worst.action, "info"), _shorten(summary), "\n".join(lines), source, alternatives)


class CdsHooks:
    """Cards for CDS calls. `results(upload_id)` answers a finished upload's stored results (app.py's
    cache of finished jobs) or None; `load(upload_id, sample, done)` loads and verifies a stored patient."""

    def __init__(self, engine, names: MedicationNames):
        self.engine = engine
        self.names = names
        self._advice: OrderedDict[tuple, Advice] = OrderedDict()
        self._texts: OrderedDict[tuple, CardText | None] = OrderedDict()
        self._phenotypes: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()
        self._compute = threading.Lock()  # recomputations one at a time: the advisor memoises shared work

    # -- the request ------------------------------------------------------------------------------------------
    @staticmethod
    def parse(service: Service, body: bytes) -> dict:
        """The request, checked for what this service needs (BadRequest otherwise)."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise BadRequest("the request body is not JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("the request body is not a JSON object")
        if data.get("hook") != service.hook:
            raise BadRequest(f"this service answers the hook {service.hook!r}")
        if not isinstance(data.get("hookInstance"), str):
            raise BadRequest("hookInstance is missing")
        context = data.get("context")
        if not isinstance(context, dict):
            raise BadRequest("context is missing")
        patient = context.get("patientId")
        if not isinstance(patient, str) or not FHIR_ID.match(patient):
            raise BadRequest("context.patientId is missing or not a FHIR id")
        if service.hook != "patient-view" and not isinstance(context.get("draftOrders"), dict):
            raise BadRequest("context.draftOrders is missing")
        if not isinstance(data.get("prefetch", {}) or {}, dict):
            raise BadRequest("prefetch is not an object")
        return data

    def drafts(self, service: Service, context: dict) -> tuple[list[Draft], list[str]]:
        """(the drafted orders to advise on, with the drug each names; every drug name the draft orders
        give, for the medication list)."""
        if service.hook == "patient-view":
            return [], []
        resources = _resources(context.get("draftOrders"))
        meds = _medication_index(resources)
        selections = context.get("selections")
        selected = None
        if service.hook == "order-select" and isinstance(selections, list) and selections:
            selected = {s for s in selections if isinstance(s, str)}
        drafts, names = [], []
        for r in resources:
            if r.get("resourceType") not in MEDICATION_TYPES:
                continue
            found = self.names.in_resource(r, meds)
            names += found
            if selected is not None and f"{r.get('resourceType')}/{r.get('id')}" not in selected:
                continue
            drafts += [Draft(d, r) for d in found if d in self.names.kb_drugs]
        return drafts, names

    def prefetched(self, prefetch: dict | None) -> list[str]:
        """Drug and inhibitor names of the prefetched active medications."""
        names: list[str] = []
        for key in _MEDICATION_PREFETCH:
            resources = _resources((prefetch or {}).get(key))
            meds = _medication_index(resources)
            for r in resources:
                if r.get("resourceType") in MEDICATION_TYPES and r.get("status") not in ENDED:
                    names += self.names.in_resource(r, meds)
        return names

    # -- advice -----------------------------------------------------------------------------------------------
    def stored_names(self, stored: Stored) -> list[str]:
        meds = stored.report.medications
        return [n for given in (meds.given if meds else ()) for n in self.names.in_text(given)]

    def advice_key(self, stored: Stored, names: list[str]) -> tuple | None:
        """None when the stored report's advice holds for this medication list (no inhibitor it did not
        know); else the key of the advice to compute."""
        inhibitors = tuple(sorted({n for n in names if n in self.names.inhibitors}))
        if set(inhibitors) <= set(self.stored_names(stored)):
            return None
        return (stored.upload_id, stored.key, stored.sample, inhibitors)

    def stored_advice(self, stored: Stored) -> Advice:
        key = (stored.upload_id, stored.key, stored.sample, None)
        hit = self.cached_advice(key)
        if hit is None:
            report = stored.report
            hit = Advice(key, dict(report.drugs or {}), tuple(report.phenoconversion or ()), None)
            with self._lock:
                self._advice[key] = hit
        return hit

    def cached_advice(self, key: tuple) -> Advice | None:
        with self._lock:
            hit = self._advice.get(key)
            if hit is not None:
                self._advice.move_to_end(key)
            return hit

    def compute_advice(self, stored: Stored, key: tuple, names: list[str]) -> Advice:
        """Advice with the medication list (in a worker thread: it reads the phenotype file once)."""
        hit = self.cached_advice(key)
        if hit is not None:
            return hit
        inhibitors = key[3]
        why = "this result was stored before permed kept the phenotypes it needs; run the job again to apply it"
        advice = None
        if stored.phenotypes is not None:
            with self._compute:
                try:
                    pset = self._phenotype_set(stored)
                except _NoPhenotypes:
                    why = "the stored phenotypes cannot be read with the loaded knowledge base; run the job again"
                else:
                    si = pset.samples.index(stored.sample)
                    meds = sorted(set(self.stored_names(stored)) | set(names))
                    sample = self.engine.advise(pset, meds).sample(si)
                    advice = Advice(key, {d.drug: drug_entry(d) for d in sample.drugs},
                                    tuple(sample.phenoconversions), None)
        if advice is None:  # the stored advice, saying what it could not take into account
            note = f"Not adjusted for {', '.join(inhibitors)} on the medication list (phenoconversion): {why}."
            advice = Advice(key, dict(stored.report.drugs or {}), tuple(stored.report.phenoconversion or ()), note)
        with self._lock:
            self._advice[key] = advice
            while len(self._advice) > ADVICE_CACHE:
                self._advice.popitem(last=False)
        return advice

    def _phenotype_set(self, stored: Stored):
        from permed.phenotype.phenotype_set import PhenotypeSet

        key = (stored.upload_id, stored.key)
        pset = self._phenotypes.get(key)
        if pset is None:
            try:
                pset = PhenotypeSet.load(stored.phenotypes, self.engine.kb)
            except PermedError as exc:  # e.g. made with another knowledge base
                raise _NoPhenotypes(str(exc)) from None
            self._phenotypes[key] = pset
            while len(self._phenotypes) > 16:  # whole uploads (cohorts can be large): a few only
                self._phenotypes.popitem(last=False)
        return pset

    # -- cards ------------------------------------------------------------------------------------------------
    def text(self, drug: str, advice: Advice) -> CardText | None:
        key = (advice.key, drug)
        with self._lock:
            if key in self._texts:
                return self._texts[key]
        entry = advice.drugs.get(drug)
        text = card_text(drug, entry, advice) if entry is not None else None
        with self._lock:
            self._texts[key] = text
            while len(self._texts) > ADVICE_CACHE * 4:
                self._texts.popitem(last=False)
        return text

    def order_cards(self, drafts: list[Draft], advice: Advice, link: dict) -> list[dict]:
        cards = []
        seen = set()
        for draft in drafts:
            if (draft.drug, id(draft.resource)) in seen:
                continue
            seen.add((draft.drug, id(draft.resource)))
            text = self.text(draft.drug, advice)
            if text is None:
                continue
            card = {"uuid": str(uuid.uuid4()), "summary": text.summary, "indicator": text.indicator,
                    "detail": text.detail, "source": dict(text.source)}
            suggestions = self._suggestions(draft, text.alternatives)
            if suggestions:
                card["suggestions"] = suggestions
                card["selectionBehavior"] = "at-most-one"
            card["links"] = [dict(link)]
            cards.append(card)
        return cards

    def _suggestions(self, draft: Draft, alternatives: tuple[str, ...]) -> list[dict]:
        """Replace the draft order by one naming an alternative drug (the user picks at most one)."""
        r = draft.resource
        rid = r.get("id")
        if not alternatives or not isinstance(rid, str) or r.get("resourceType") != "MedicationRequest":
            return []
        out = []
        for alt in alternatives:
            concept: dict = {"text": alt}
            code = self.names.rxnorm_of.get(alt)
            if code:
                concept = {"coding": [{"system": RXNORM, "code": code, "display": alt}], "text": alt}
            new = {"resourceType": "MedicationRequest", "status": "draft", "intent": r.get("intent") or "order",
                   "medicationCodeableConcept": concept}
            for field in ("subject", "encounter", "requester"):
                if isinstance(r.get(field), dict):
                    new[field] = r[field]
            out.append({"uuid": str(uuid.uuid4()), "label": f"Order {alt} instead of {draft.drug}",
                        "actions": [
                            {"type": "delete", "description": f"Remove the draft order for {draft.drug}",
                             "resourceId": f"MedicationRequest/{rid}"},
                            {"type": "create", "description": f"Draft an order for {alt} (dose to be chosen)",
                             "resource": new}]})
        return out

    def summary_card(self, advice: Advice, on_list: set[str], link: dict) -> list[dict]:
        """patient-view: one card naming the actionable genes and drugs, or none."""
        drugs = [d for d, e in advice.drugs.items() if e.actionable and (d not in DRUG_INDICATIONS or d in on_list)]
        if not drugs:
            return []
        drugs.sort(key=lambda d: (d not in on_list, d))
        genes: dict[str, tuple[str | None, str | None]] = {}
        for d in drugs:
            for r in _recommendations(advice.drugs[d]):
                if r.actionable:
                    for g in r.genotype:
                        genes.setdefault(g.gene, (g.diplotype, g.phenotype))
        current = [d for d in drugs if d in on_list]
        summary = f"Pharmacogenomic results on file: {len(drugs)} drug{'s' if len(drugs) > 1 else ''} need attention"
        summary += f", {len(current)} on the medication list" if current else f" ({', '.join(drugs[:3])}…)"
        lines = ["**Genes with actionable results**", ""]
        for gene, (diplotype, phenotype) in sorted(genes.items()):
            lines.append(f"- **{gene}**: {_code(diplotype) if diplotype else 'no call'}, {_md(phenotype or 'unknown')}")
        lines += ["", "**Drugs to avoid, replace or dose differently**", ""]
        for d in drugs:
            worst = _recommendations(advice.drugs[d])[0]
            mark = " (on the medication list)" if d in on_list else ""
            lines.append(f"- {_md(d)}{mark}: {action_label(worst.action)}")
        if advice.conversions:
            lines += ["", "Phenoconversion applied: " + "; ".join(
                f"{_md(c.inhibitor)} ({c.strength} {c.gene} inhibitor)" for c in advice.conversions) + "."]
        if advice.note:
            lines += ["", f"_{_md(advice.note)}_"]
        return [{"uuid": str(uuid.uuid4()), "summary": _shorten(summary), "indicator": "info",
                 "detail": "\n".join(lines), "source": {"label": "permed (CPIC and DPWG guidelines)"},
                 "links": [dict(link)]}]


class _NoPhenotypes(Exception):
    pass


def report_link(base_url: str, upload_id: int, sample: str) -> dict:
    url = f"{base_url.rstrip('/')}/api/v1/samples/{upload_id}/report?format=html&sample={quote(sample, safe='')}"
    return {"label": "Pharmacogenomic report (permed)", "url": url, "type": "absolute"}


def report_name(sample: str) -> str:
    return ReportFiles.for_sample(sample).json

