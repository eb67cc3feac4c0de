"""One patient's report as an HL7 FHIR R4 bundle shaped after the Genomics Reporting IG (`--format fhir`,
`OUT/<sample>.fhir.json`, and the service's `/samples/{id}/fhir`).

Built from `PatientReport` alone (what the service stores), checked with fhir.resources' models (R4B: the
R4-compatible models the library ships; no element here differs between R4 and R4B), so a bundle that
does not parse is never written. Mapping (docs/fhir.md):

- `DiagnosticReport` (genomic-report, LOINC 51969-4): every result, the recommended-action Tasks and the
  genomic study; `conclusion` names the actionable drugs and the genes without a call.
- per called gene: a `Genotype` Observation (the diplotype label exactly as PharmCAT prints it; a PharmVar
  coding for PharmVar genes, as the IG's example codes it), one `Haplotype` per allele, a `Variant` per
  position carrying a non-reference allele, and a gene-level `TherapeuticImplication` with the phenotype
  (LOINC answer code where one exists) and the activity score. An ambiguous call is a Genotype with both
  labels in text, no coding and interpretation "indeterminate"; a gene without a call has no Genotype: it is
  listed as uncalled in the `GenomicStudyAnalysis` regions, with its missing positions.
- per drug, source and population with a recommendation: a `TherapeuticImplication` (medication by RxNorm,
  the phenotypes used, our summary, evidence level, the guideline page and PubMed ids as related artifacts);
  for actionable advice a `MedicationRecommendation` Task (LOINC LL4049-4 answer), focused on a
  `MedicationStatement` when the drug is on the patient's medication list.
- `Provenance` names permed's version (a `Device`), the knowledge base and the inputs' SHA-256.

Facts: LOINC codes and answer codes, profile and extension URLs from the IG source (HL7, CC0); HGNC ids
from HGNC (genenames.org); which genes PharmVar names (pharmvar.org).
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

from permed.kb.wording import action_label, population_label, summary
from permed.report.model import DrugEntry, GeneEntry, PatientReport

IG = "http://hl7.org/fhir/uv/genomics-reporting"
BASE = "http://hl7.org/fhir/StructureDefinition"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HGNC = "http://www.genenames.org"
PHARMVAR = "http://www.pharmvar.org"
DBSNP = "http://www.ncbi.nlm.nih.gov/projects/SNP"
REFSEQ = "http://www.ncbi.nlm.nih.gov/refseq"
TBD = f"{IG}/CodeSystem/tbd-codes-cs"
OBSCAT = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBSINT = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
RELATED_ARTIFACT = f"{BASE}/workflow-relatedArtifact"
# our own identifiers and codes (no public code system has them)
PERMED_CODES = "urn:permed:fhir:codes"
SAMPLE_ID = "urn:permed:vcf-sample"
REPORT_ID = "urn:permed:report"
SHA256_ID = "urn:permed:sha256"
_NAMESPACE = uuid.UUID("5b0c7d6e-2f4a-4c49-9a53-6d1b8f0e7a21")  # permed's: ids are stable for the same report

BUNDLE_TYPES = ("transaction", "collection")

HGNC_IDS = {  # HGNC (genenames.org) ids of the knowledge base's genes; CYP4F2 is named by symbol only
    "ABCG2": "HGNC:74", "CACNA1S": "HGNC:1397", "CFTR": "HGNC:1884", "CYP2B6": "HGNC:2615",
    "CYP2C19": "HGNC:2621", "CYP2C9": "HGNC:2623", "CYP2D6": "HGNC:2625", "CYP3A4": "HGNC:2637",
    "CYP3A5": "HGNC:2638", "DPYD": "HGNC:3012", "G6PD": "HGNC:4057", "HLA-B": "HGNC:4932",
    "IFNL3": "HGNC:18365", "NAT2": "HGNC:7646", "NUDT15": "HGNC:23063", "RYR1": "HGNC:10483",
    "SLCO1B1": "HGNC:10959", "TPMT": "HGNC:12014", "UGT1A1": "HGNC:12530", "VKORC1": "HGNC:23663",
}
# genes whose star alleles PharmVar names: their diplotypes get a PharmVar coding (the IG example's form)
PHARMVAR_GENES = frozenset({"CYP2B6", "CYP2C19", "CYP2C9", "CYP2D6", "CYP3A4", "CYP3A5", "CYP4F2", "DPYD",
                            "NUDT15", "SLCO1B1"})
# LOINC answers of the IG's GeneticTherapeuticImplicationsVS, by the phenotype label CPIC and DPWG use
PHENOTYPE_ANSWERS = {
    "Ultrarapid Metabolizer": ("LA10315-2", "Ultrarapid metabolizer"),
    "Rapid Metabolizer": ("LA25390-8", "Rapid metabolizer"),
    "Normal Metabolizer": ("LA25391-6", "Normal metabolizer"),
    "Intermediate Metabolizer": ("LA10317-8", "Intermediate metabolizer"),
    "Poor Metabolizer": ("LA9657-3", "Poor metabolizer"),
    "Increased Function": ("LA25392-4", "Increased function"),
    "Normal Function": ("LA25393-2", "Normal function"),
    "Decreased Function": ("LA25395-7", "Decreased function"),
    "Poor Function": ("LA25394-0", "Poor function"),
}
# LOINC LL4049-4 (medication usage suggestion) answers for the actions that change a prescription
TASK_CODES = {
    "avoid": ("LA26421-0", "Consider alternative medication"),
    "alternative": ("LA26421-0", "Consider alternative medication"),
    "dose_decrease": ("LA26422-8", "Decrease dose"),
    "dose_increase": ("LA26423-6", "Increase dose"),
}
GRCH38 = ("LA26806-2", "GRCh38")
NOT_A_RESULT = frozenset({"No Result", "n/a", "Indeterminate", ""})


def profile(name: str) -> str:
    return f"{IG}/StructureDefinition/{name}"


def _coding(system: str, code: str, display: str | None = None) -> dict:
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def _concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict:
    out = {"coding": [_coding(system, code, display)]}
    if text:
        out["text"] = text
    return out


def _gene_concept(gene: str) -> dict:
    hgnc = HGNC_IDS.get(gene)
    return _concept(HGNC, hgnc, gene, gene) if hgnc else {"text": gene}


_CATEGORIES = [{"coding": [_coding(OBSCAT, "laboratory")]}, {"coding": [_coding(V2_0074, "GE", "Genetics")]}]


class _Builder:
    """Collects the bundle's resources; references are urn:uuid fullUrls, stable for the same report."""

    def __init__(self, report: PatientReport, patient_ref: str | None, lang: str, kb):
        from permed.report.i18n import translations

        self.r = report
        # positions and reference alleles for Variant observations: only from the KB that made the report
        same = kb is not None and (kb.sha256 == report.knowledge_base.kb_sha256 if kb.sha256 else
                                   kb.kb_version == report.knowledge_base.kb_version)
        self.kb = kb if same else None
        self._ = translations(lang).gettext
        self.seed = "|".join([report.sample, report.created, *[i.sha256 for i in report.inputs]])
        self.entries: list[tuple[str, dict]] = []  # (fullUrl, resource)
        self.when = report.created
        if patient_ref is None:
            self.patient = self.add("patient", {
                "resourceType": "Patient", "meta": {"profile": [f"{BASE}/Patient"]},
                "identifier": [{"system": SAMPLE_ID, "value": report.sample}]})
        else:
            self.patient = patient_ref

    def url(self, key: str) -> str:
        return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{self.seed}|{key}')}"

    def add(self, key: str, resource: dict) -> str:
        full = self.url(key)
        resource = {"resourceType": resource.pop("resourceType"), "id": full.removeprefix("urn:uuid:"),
                    **{k: v for k, v in resource.items() if v is not None and v != []}}
        self.entries.append((full, resource))
        return full

    def observation(self, key: str, prof: str, code: dict, **fields) -> str:
        return self.add(key, {"resourceType": "Observation", "meta": {"profile": [profile(prof)]},
                              "status": "final", "category": _CATEGORIES, "code": code,
                              "subject": {"reference": self.patient}, "effectiveDateTime": self.when,
                              "issued": self.when, **fields})


def fhir_bundle(report: PatientReport, *, bundle_type: str = "transaction", patient_ref: str | None = None,
                lang: str = "en", kb=None) -> dict:
    """The bundle as a JSON-ready dict, validated against the FHIR models. `kb`: the knowledge base that
    made the report, for Variant observations (their reference alleles); without it they are left out."""
    if bundle_type not in BUNDLE_TYPES:
        raise ValueError(f"bundle type must be one of {', '.join(BUNDLE_TYPES)}")
    b = _Builder(report, patient_ref, lang, kb)
    _ = b._
    genotype_refs: dict[str, str] = {}
    results: list[str] = []
    for gene, entry in report.genes.items():
        refs = _gene_findings(b, gene, entry)
        if refs:
            genotype_refs[gene] = refs[0]
            results.extend(refs)
    tasks: list[str] = []
    for drug, entry in (report.drugs or {}).items():
        implications, drug_tasks = _drug_advice(b, drug, entry, genotype_refs)
        results.extend(implications)
        tasks.extend(drug_tasks)
    study = _genomic_study(b)
    report_ref = b.add("report", {
        "resourceType": "DiagnosticReport", "meta": {"profile": [profile("genomic-report")]},
        "extension": ([{"url": profile("recommended-action"), "valueReference": {"reference": t}} for t in tasks]
                      + [{"url": profile("genomic-study-reference"), "valueReference": {"reference": study}}]),
        "identifier": [{"system": REPORT_ID, "value": b.url("report").removeprefix("urn:uuid:")}],
        "status": "final",
        "category": [{"coding": [_coding(V2_0074, "GE", "Genetics")]}],
        "code": _concept(LOINC, "51969-4", "Genetic analysis report", _("Pharmacogenomic report")),
        "subject": {"reference": b.patient}, "effectiveDateTime": b.when, "issued": b.when,
        "result": [{"reference": r} for r in results],
        "conclusion": _conclusion(report, _),
    })
    _provenance(b, report_ref)
    bundle = {"resourceType": "Bundle", "identifier": {"system": REPORT_ID, "value": report_ref.removeprefix(
        "urn:uuid:")}, "type": bundle_type, "timestamp": b.when, "entry": []}
    for full, resource in b.entries:
        e = {"fullUrl": full, "resource": resource}
        if bundle_type == "transaction":
            e["request"] = {"method": "POST", "url": resource["resourceType"]}
            if resource["resourceType"] == "Patient":  # one Patient per sample name, however often it is sent
                e["request"]["ifNoneExist"] = f"identifier={quote(SAMPLE_ID, safe=':')}|{quote(report.sample)}"
        bundle["entry"].append(e)
    return validate(bundle)


def fhir_bundle_json(report: PatientReport, *, bundle_type: str = "transaction", patient_ref: str | None = None,
                     lang: str = "en", kb=None) -> str:
    """The bundle as written to OUT/<sample>.fhir.json."""
    return json.dumps(fhir_bundle(report, bundle_type=bundle_type, patient_ref=patient_ref, lang=lang, kb=kb),
                      ensure_ascii=False, separators=(",", ":")) + "\n"


def validate(bundle: dict) -> dict:
    """`bundle` after fhir.resources has parsed it (unknown elements, wrong types and codes are errors)."""
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle)
    return bundle


def check_fhir_options(bundle_type: str, patient_ref: str | None, n_samples: int | None = None) -> None:
    """Refuse a bundle type or patient reference that cannot be written (before any work is done)."""
    import re

    from permed.errors import ConfigurationError

    if bundle_type not in BUNDLE_TYPES:
        raise ConfigurationError(f"--fhir-bundle {bundle_type!r}: give one of {', '.join(BUNDLE_TYPES)}")
    if patient_ref is None:
        return
    if not re.fullmatch(r"Patient/[A-Za-z0-9\-.]{1,64}", patient_ref):
        raise ConfigurationError(f"--fhir-patient {patient_ref!r}: give a reference like Patient/123 (a FHIR id: "
                                 "letters, digits, '-' and '.', at most 64 characters)")
    if n_samples is not None and n_samples > 1:
        raise ConfigurationError(f"--fhir-patient names one patient, but the input has {n_samples} samples")


# ---- genes ---------------------------------------------------------------------------------------
def _gene_findings(b: _Builder, gene: str, e: GeneEntry) -> list[str]:
    """Genotype first, then haplotypes, variants and the gene's phenotype implication; [] without a call."""
    _ = b._
    if not e.called or not e.source_diplotypes:
        return []
    ambiguous = len(e.source_diplotypes) > 1
    label = " or ".join(e.source_diplotypes) if ambiguous else e.source_diplotypes[0]
    text = f"{gene} {label}"
    components = [{"code": _concept(LOINC, "48018-6", "Gene studied [ID]"),
                   "valueCodeableConcept": _gene_concept(gene)}]
    if not e.outside_call:
        components.append({"code": _concept(LOINC, "62374-4", "Human reference sequence assembly version"),
                           "valueCodeableConcept": _concept(LOINC, *GRCH38)})
    fields: dict = {"component": components}
    haplotypes: list[str] = []
    variants = {} if e.outside_call else _variants(b, gene, e)
    if ambiguous:
        fields["valueCodeableConcept"] = {"text": text}
        fields["interpretation"] = [_concept(OBSINT, "IND", "Indeterminate")]
        fields["note"] = [{"text": _("The data fit more than one diplotype; no single genotype is reported.")}]
    else:
        value = {"text": text}
        if gene in PHARMVAR_GENES:
            value["coding"] = [_coding(PHARMVAR, gene, text)]
        fields["valueCodeableConcept"] = value
        rd = e.recommendation_diplotypes[0] if e.recommendation_diplotypes else None
        for i, hap in enumerate(rd.haplotypes if rd else ()):
            hv = {"text": f"{gene} {hap}"}
            if gene in PHARMVAR_GENES:
                hv["coding"] = [_coding(PHARMVAR, gene, f"{gene} {hap}")]
            from_variants = [{"reference": variants[k]} for k in _defining(b, gene, hap) if k in variants]
            haplotypes.append(b.observation(f"haplotype/{gene}/{i}", "haplotype",
                                            _concept(LOINC, "84414-2", "Haplotype Name"),
                                            valueCodeableConcept=hv, component=components[:1],
                                            derivedFrom=from_variants))
    if e.outside_call:
        fields["method"] = {"text": _("outside call")}
    derived = haplotypes + list(variants.values())
    if derived:
        fields["derivedFrom"] = [{"reference": r} for r in derived]
    genotype = b.observation(f"genotype/{gene}", "genotype", _concept(LOINC, "84413-4", "Genotype display name"),
                             **fields)
    refs = [genotype, *haplotypes, *variants.values()]
    phenotypes = [p for p in e.phenotypes if p not in NOT_A_RESULT]
    if e.reportable and len(set(phenotypes)) == 1 and not ambiguous:
        refs.append(_gene_implication(b, gene, e, phenotypes[0], genotype))
    return refs


def _phenotype_concept(gene: str | None, phenotype: str, _) -> dict:
    shown = f"{gene} {_(phenotype)}" if gene else _(phenotype)
    answer = PHENOTYPE_ANSWERS.get(phenotype)
    return _concept(LOINC, answer[0], answer[1], shown) if answer else {"text": shown}


def _gene_implication(b: _Builder, gene: str, e: GeneEntry, phenotype: str, genotype: str) -> str:
    _ = b._
    code = {"coding": [_coding(TBD, "therapeutic-implication", "Therapeutic Implication"),
                       _coding(LOINC, "53040-2", "Genetic variation's effect on drug metabolism")],
            "text": _("%(gene)s phenotype") % {"gene": gene}}
    components = [{"code": _concept(TBD, "therapeutic-implication"),
                   "valueCodeableConcept": _phenotype_concept(gene, phenotype, _)}]
    score = e.activity_score
    if score is not None and score not in NOT_A_RESULT:
        comp = {"code": _concept(PERMED_CODES, "activity-score", "Activity score")}
        try:
            comp["valueQuantity"] = {"value": float(score)}
        except ValueError:  # e.g. "≥3.0": kept as printed
            comp["valueString"] = score
        components.append(comp)
    return b.observation(f"phenotype/{gene}", "therapeutic-implication", code, component=components,
                         derivedFrom=[{"reference": genotype}])


def _defining(b: _Builder, gene: str, haplotype: str) -> list[tuple[int, str]]:
    """(position, allele) pairs that define a named allele (nothing for the reference allele)."""
    gdef = b.kb.genes.get(gene) if b.kb is not None else None
    if gdef is None:
        return []
    for allele in gdef.alleles:
        if allele.name == haplotype and not allele.reference:
            return [(gdef.loci[i].position, a) for i, a in allele.defined.items()]
    return []


def _variants(b: _Builder, gene: str, e: GeneEntry) -> dict[tuple[int, str], str]:
    """A Variant per definition position and allele the sample carries that is not the reference
    ((position, allele) -> reference); without the report's KB, none (the reference allele is unknown)."""
    gdef = b.kb.genes.get(gene) if b.kb is not None else None
    if gdef is None or not e.evidence:
        return {}
    refseq = gdef.refseq_chromosome
    loci = {locus.position: locus for locus in gdef.loci}
    out = {}
    for ev in e.evidence:
        locus = loci.get(ev.position)
        if locus is None or ev.status != "called" or not ev.call:
            continue
        alleles = ev.call.replace("|", "/").split("/")
        alts = sorted({a for a in alleles if a != locus.ref and a != "."})
        if not alts:
            continue
        for alt in alts:
            zygosity = (("LA6705-3", "Homozygous") if all(a == alt for a in alleles)
                        else ("LA6706-1", "Heterozygous"))
            comps = [
                {"code": _concept(LOINC, "48018-6", "Gene studied [ID]"), "valueCodeableConcept": _gene_concept(gene)},
                {"code": _concept(LOINC, "62374-4", "Human reference sequence assembly version"),
                 "valueCodeableConcept": _concept(LOINC, *GRCH38)},
                {"code": _concept(LOINC, "53034-5", "Allelic state"),
                 "valueCodeableConcept": _concept(LOINC, *zygosity)},
                {"code": _concept(LOINC, "69547-8", "Genomic ref allele [ID]"), "valueString": locus.ref},
                {"code": _concept(LOINC, "69551-0", "Genomic alt allele [ID]"), "valueString": alt},
                {"code": _concept(LOINC, "92822-6", "Genomic coordinate system [Type]"),
                 "valueCodeableConcept": _concept(LOINC, "LA30102-0", "1-based character counting")},
                {"code": _concept(LOINC, "81254-5", "Genomic allele start-end"),
                 "valueRange": {"low": {"value": ev.position}}},
            ]
            if refseq:
                comps.insert(2, {"code": _concept(LOINC, "48013-7", "Genomic reference sequence ID"),
                                 "valueCodeableConcept": _concept(REFSEQ, refseq)})
            if ev.rsid:
                comps.append({"code": _concept(LOINC, "81252-9", "Discrete genetic variant"),
                              "valueCodeableConcept": _concept(DBSNP, ev.rsid)})
            out[(ev.position, alt)] = b.observation(
                f"variant/{gene}/{ev.position}/{alt}", "variant",
                _concept(LOINC, "69548-6", "Genetic variant assessment"),
                valueCodeableConcept=_concept(LOINC, "LA9633-4", "Present"), component=comps)
    return out


# ---- drugs ---------------------------------------------------------------------------------------
def _drug_advice(b: _Builder, drug: str, entry: DrugEntry, genotype_refs: dict[str, str]
                 ) -> tuple[list[str], list[str]]:
    _ = b._
    implications: list[str] = []
    tasks: list[str] = []
    statement = None
    medication = {"text": _(drug)}
    if entry.rxnorm:
        medication["coding"] = [_coding(RXNORM, entry.rxnorm, drug)]
    for source, s in entry.sources.items():
        for rec in s.recommendations:
            if rec.action == "no_recommendation":
                continue
            derived = [genotype_refs[g.gene] for g in rec.genotype if g.gene in genotype_refs]
            if not derived:  # the IG needs the finding an implication rests on; none: the conclusion says so
                continue
            key = f"{drug}/{source}/{rec.recommendation_id}"
            comps = [{"code": _concept(LOINC, "51963-7", "Medication assessed [ID]"),
                      "valueCodeableConcept": medication}]
            for g in rec.genotype:
                if g.phenotype and g.phenotype not in NOT_A_RESULT:
                    comps.append({"code": _concept(TBD, "therapeutic-implication"),
                                  "valueCodeableConcept": _phenotype_concept(g.gene, g.phenotype, _)})
            population = population_label(rec.population, _)
            if population:
                comps.append({"code": _concept(LOINC, "81259-4", "Associated phenotype"),
                              "valueCodeableConcept": {"text": population}})
            if rec.strength:
                comps.append({"code": _concept(LOINC, "93044-6", "Level of evidence"),
                              "valueCodeableConcept": {"text": f"{source} {rec.strength}"}})
            comps.append({"code": _concept(TBD, "knowledge-base", "Knowledge Base"),
                          "valueCodeableConcept": {"text": source}})
            text = summary(rec.action, rec.also, rec.dose_factor, _(drug), rec.alternatives, _)
            converted = [g.gene for g in rec.genotype if g.phenoconverted]
            if converted:
                text += " " + _("Adjusted for a drug interaction: %(genes)s.") % {"genes": ", ".join(converted)}
            missing = [m for m in s.missing_genes if m not in genotype_refs]
            if missing:
                text += " " + _("gene not tested: %(genes)s") % {"genes": ", ".join(missing)}
            comps.append({"code": _concept(TBD, "conclusion-string", "Conclusion Text"), "valueString": text})
            artifacts = []
            if rec.url:
                artifacts.append({"url": RELATED_ARTIFACT, "valueRelatedArtifact": {
                    "type": "documentation", "label": source, "display": _("Guideline"), "url": rec.url}})
            for pmid in rec.pmids:
                artifacts.append({"url": RELATED_ARTIFACT, "valueRelatedArtifact": {
                    "type": "citation", "citation": f"PMID:{pmid}", "url": f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/"}})
            code = {"coding": [_coding(TBD, "therapeutic-implication", "Therapeutic Implication")],
                    "text": f"{_(drug)} ({source})"}
            implication = b.observation(f"implication/{key}", "therapeutic-implication", code,
                                        extension=artifacts or None, component=comps,
                                        derivedFrom=[{"reference": r} for r in dict.fromkeys(derived)])
            implications.append(implication)
            if rec.action in TASK_CODES:
                if entry.on_medication_list and statement is None:
                    statement = b.add(f"medication/{drug}", {
                        "resourceType": "MedicationStatement", "meta": {"profile": [f"{BASE}/MedicationStatement"]},
                        "status": "active", "medicationCodeableConcept": medication,
                        "subject": {"reference": b.patient}})
                tasks.append(_task(b, key, rec, text, implication, statement, entry))
    return implications, tasks


def _task(b: _Builder, key: str, rec, text: str, implication: str, statement: str | None, entry: DrugEntry) -> str:
    _ = b._
    code, display = TASK_CODES[rec.action]
    task = {"resourceType": "Task", "meta": {"profile": [profile("medication-recommendation")]},
            "status": "requested", "intent": "proposal",
            "code": _concept(LOINC, code, display, action_label(rec.action, _)),
            "description": text, "for": {"reference": b.patient}, "authoredOn": b.when,
            "reasonReference": {"reference": implication}}
    if statement:
        task["focus"] = {"reference": statement}
    inputs = []
    for alt in rec.alternatives:
        known = (b.r.drugs or {}).get(alt)
        value = {"text": _(alt)}
        if known is not None and known.rxnorm:
            value["coding"] = [_coding(RXNORM, known.rxnorm, alt)]
        inputs.append({"type": {"text": "alternative medication"}, "valueCodeableConcept": value})
    if inputs:
        task["input"] = inputs
    return b.add(f"task/{key}", task)


# ---- study, conclusion, provenance ---------------------------------------------------------------
def _genomic_study(b: _Builder) -> str:
    _ = b._
    r = b.r
    regions: list[dict] = []
    notes: list[str] = []
    for gene in r.genes:
        regions.append({"url": "studied", "valueCodeableConcept": _gene_concept(gene)})
    for gene, e in r.genes.items():
        state = "called" if e.called else "uncalled"
        regions.append({"url": state, "valueCodeableConcept": _gene_concept(gene)})
        if not e.called:
            notes.append(_("%(gene)s: no call (%(status)s).") % {"gene": gene, "status": e.status})
        if e.missing_positions:
            notes.append(_("%(gene)s: positions missing from the input (GRCh38): %(positions)s.") % {
                "gene": gene, "positions": ", ".join(str(p) for p in e.missing_positions)})
    description = " ".join(notes) if notes else _("Every studied gene was called.")
    analysis = b.add("study/analysis", {
        "resourceType": "Procedure", "meta": {"profile": [profile("genomic-study-analysis")]},
        "extension": [
            {"url": profile("genomic-study-analysis-genome-build"), "valueCodeableConcept": _concept(LOINC, *GRCH38)},
            {"url": profile("genomic-study-analysis-regions"),
             "extension": [{"url": "description", "valueString": description}, *regions]},
            *[{"url": profile("genomic-study-analysis-input"), "extension": [
                {"url": "type", "valueCodeableConcept": _concept(f"{IG}/CodeSystem/genomic-study-data-format-cs",
                                                                 "vcf", "VCF")},
                {"url": "generatedBy", "valueIdentifier": {"system": SHA256_ID, "value": i.sha256}}]}
              for i in r.inputs],
        ],
        "status": "completed", "category": {"coding": [_coding(OBSCAT, "laboratory")]},
        "subject": {"reference": b.patient}, "performedDateTime": b.when,
    })
    return b.add("study", {
        "resourceType": "Procedure", "meta": {"profile": [profile("genomic-study")]},
        "extension": [{"url": profile("genomic-study-analysis-ext"), "valueReference": {"reference": analysis}}],
        "status": "completed", "category": {"coding": [_coding(OBSCAT, "laboratory")]},
        "code": {"coding": [_coding(f"{IG}/CodeSystem/genomic-study-type-cs", "snp", "SNP Detection")],
                 "text": _("Pharmacogenomic genotyping")},
        "subject": {"reference": b.patient}, "performedDateTime": b.when,
        "note": [{"text": description}],
    })


def _conclusion(r: PatientReport, _) -> str:
    parts = []
    if r.actionable_drugs:
        parts.append(_("Actionable: %(drugs)s.") % {"drugs": ", ".join(_(d) for d in r.actionable_drugs)})
    uncalled = [g for g, e in r.genes.items() if not e.called]
    ambiguous = [g for g, e in r.genes.items() if e.called and len(e.source_diplotypes) > 1]
    if uncalled:
        parts.append(_("Not called: %(genes)s.") % {"genes": ", ".join(uncalled)})
    if ambiguous:
        parts.append(_("Ambiguous: %(genes)s.") % {"genes": ", ".join(ambiguous)})
    return " ".join(parts) or _("No actionable result.")


def _provenance(b: _Builder, report_ref: str) -> None:
    r = b.r
    kb = r.knowledge_base
    device = b.add("device", {
        "resourceType": "Device", "meta": {"profile": [f"{BASE}/Device"]},
        "deviceName": [{"name": "permed", "type": "manufacturer-name"}],
        "version": [{"type": {"text": "software"}, "value": r.generator.version},
                    {"type": {"text": "knowledge base"}, "value": kb.kb_version}]})
    targets = [{"reference": full} for full, res in b.entries if res["resourceType"] not in ("Patient", "Device")]
    entities = [{"role": "source", "what": {"identifier": {"system": SHA256_ID, "value": i.sha256},
                                            "display": i.file}} for i in r.inputs]
    entities.append({"role": "source", "what": {
        "identifier": {"system": SHA256_ID, "value": kb.kb_sha256} if kb.kb_sha256 else None,
        "display": f"permed knowledge base {kb.kb_version} ({kb.licence})"}})
    for e in entities:
        if e["what"].get("identifier") is None:
            e["what"].pop("identifier", None)
    b.add("provenance", {
        "resourceType": "Provenance", "meta": {"profile": [f"{BASE}/Provenance"]},
        "target": [{"reference": report_ref}, *[t for t in targets if t["reference"] != report_ref]],
        "recorded": r.created,
        "agent": [{"type": _concept("http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                    "assembler", "Assembler"), "who": {"reference": device}}],
        "entity": entities})
