"""Beacon v2 documents a node answers with: the informational endpoints and the envelopes of query answers.

Only `individual` entries, and only at `boolean` or `count` granularity: `record` is never offered (the
configuration says so and a request for it is answered at the highest granularity the token allows).
"""

from __future__ import annotations

from permed import __version__
from permed.federation.cohort import NodeCohort
from permed.federation.config import NodeConfig
from permed.federation.filters import GENE_FIELDS, GROUP_IDS

API_VERSION = "v2.0.1"
INDIVIDUAL_SCHEMA = {"entityType": "individual", "schema": "beacon-v2-default-model/individuals/defaultSchema.json"}
GRANULARITIES = ("boolean", "count")


def _meta(config: NodeConfig) -> dict:
    return {"beaconId": config.node.id, "apiVersion": API_VERSION, "returnedSchemas": [INDIVIDUAL_SCHEMA]}


def info(config: NodeConfig) -> dict:
    n = config.node
    return {"meta": _meta(config), "response": {
        "id": n.id, "name": n.name, "apiVersion": API_VERSION, "environment": n.environment,
        "organization": {"id": n.organisation, "name": n.organisation, **({"contactUrl": n.contact} if n.contact
                                                                          else {})},
        "description": n.description, "version": f"v{__version__}",
        "info": {"permed": {"aggregateEndpoint": "/api/aggregate", "k": config.disclosure.k,
                            "privacy": config.privacy.mechanism}}}}


def service_info(config: NodeConfig) -> dict:
    n = config.node
    return {"id": n.id, "name": n.name, "type": {"group": "org.ga4gh", "artifact": "beacon", "version": API_VERSION},
            "description": n.description, "organization": {"name": n.organisation, "url": "https://permed.invalid/"},
            "version": __version__, "environment": n.environment}


def _entry_types() -> dict:
    return {"individual": {
        "id": "individual", "name": "Individual", "partOfSpecification": "Beacon v2.0.0",
        "description": "A person whose pharmacogenes were called; answered as counts only.",
        "ontologyTermForThisType": {"id": "NCIT:C25190", "label": "Person"},
        "defaultSchema": {"id": "beacon-v2-individual", "name": "Default schema for an individual",
                          "referenceToSchemaDefinition": INDIVIDUAL_SCHEMA["schema"], "schemaVersion": API_VERSION},
        "nonFilteredQueriesAllowed": True}}


def configuration(config: NodeConfig) -> dict:
    return {"meta": _meta(config), "response": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "maturityAttributes": {"productionStatus": {"prod": "PROD", "test": "TEST"}.get(config.node.environment,
                                                                                           "DEV")},
        "securityAttributes": {"defaultGranularity": "boolean", "securityLevels": ["CONTROLLED"]},
        "entryTypes": _entry_types()}}


def entry_types(config: NodeConfig) -> dict:
    return {"meta": _meta(config), "response": {"entryTypes": _entry_types()}}


def beacon_map(config: NodeConfig, base_url: str) -> dict:
    root = base_url.rstrip("/")
    return {"meta": _meta(config), "response": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "endpointSets": {"individual": {"entryType": "individual", "rootUrl": f"{root}/api/individuals",
                                        "endpoints": {}}}}}


def filtering_terms(config: NodeConfig, cohort: NodeCohort, vocabulary) -> dict:
    """Our PGx terms: per gene its phenotype, diplotype and allele values (only values at least k individuals
    of the cohort hold: a rarer value's mere listing would tell that someone has it), activity scores, and
    the population groups."""
    k = config.disclosure.k
    terms = []
    for gene in sorted(cohort.genes):
        for field in GENE_FIELDS:
            term = {"type": "alphanumeric", "id": f"{gene}:{field}", "label": f"{gene} {field.replace('_', ' ')}",
                    "scopes": ["individual"]}
            if field != "activity_score":
                values = [v for v in vocabulary(cohort, gene, field, k)[0] if not v.startswith("(")]
                if values:
                    term["values"] = values
            elif all(x != x for x in cohort.genes[gene].activity[:1000]):  # no score for this gene
                continue
            terms.append(term)
    for level in GROUP_IDS:
        grouping = cohort.groupings.get(level)
        if grouping is None:
            continue
        sizes = [int((grouping.codes == i).sum()) for i in range(len(grouping.labels))]
        values = [x for x, n in zip(grouping.labels, sizes) if n >= k]
        term = {"type": "alphanumeric", "id": level, "label": level, "scopes": ["individual"]}
        if values:
            term["values"] = values
        terms.append(term)
    return {"meta": _meta(config), "response": {"filteringTerms": terms}}


def request_summary(requested: str, filters_text: list[str], parameters: dict | None = None) -> dict:
    out = {"apiVersion": API_VERSION, "requestedSchemas": [INDIVIDUAL_SCHEMA], "pagination": {"skip": 0, "limit": 0},
           "requestedGranularity": requested if requested in ("boolean", "count", "record") else "boolean",
           "filters": filters_text}
    if parameters:
        out["requestParameters"] = parameters
    return out


def answer(config: NodeConfig, returned: str, requested: str, filters_text: list[str], count: int | None,
           exists: bool, info_doc: dict | None = None, parameters: dict | None = None) -> dict:
    meta = {**_meta(config), "returnedGranularity": returned,
            "receivedRequestSummary": request_summary(requested, filters_text, parameters)}
    summary = {"exists": exists}
    if returned == "count":
        summary["numTotalResults"] = int(count or 0)
    doc = {"meta": meta, "responseSummary": summary}
    if info_doc is not None:
        doc["info"] = info_doc
    return doc


def error(config: NodeConfig, status: int, message: str, requested: str = "boolean",
          filters_text: list[str] | None = None) -> dict:
    meta = {**_meta(config), "returnedGranularity": "boolean",
            "receivedRequestSummary": request_summary(requested, filters_text or [])}
    return {"meta": meta, "error": {"errorCode": status, "errorMessage": message}}
