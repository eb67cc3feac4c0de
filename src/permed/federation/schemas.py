"""What Beacon v2 documents must hold, as permed checks them at run time: our own schemas of the framework's
required structure (meta, response summaries, errors, informational responses, request bodies), written from
the GA4GH Beacon v2 framework's specification, plus our schema of the PGx aggregate that rides in a count
response's `info`. Validators for what a node sends and a client receives.

The framework's own JSON Schemas are not shipped; `official_problems` checks a document against them from a
copy of the framework (the tests do, against ../shared/reference/standards/beacon-v2).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

_STR = {"type": "string"}
_INT = {"type": "integer", "minimum": 0}
_BOOL = {"type": "boolean"}
_GRANULARITY = {"enum": ["boolean", "count", "aggregated", "record"]}


def _obj(required: list[str], properties: dict | None = None) -> dict:
    """An object with these members required (others allowed, as the framework allows them)."""
    return {"type": "object", "required": required, "properties": properties or {}}


_META_INFORMATIONAL = _obj(["beaconId", "apiVersion", "returnedSchemas"], {
    "beaconId": _STR, "apiVersion": _STR, "returnedSchemas": {"type": "array"}})
_META_RESPONSE = _obj(["beaconId", "apiVersion", "returnedSchemas", "returnedGranularity", "receivedRequestSummary"], {
    "beaconId": _STR, "apiVersion": _STR, "returnedSchemas": {"type": "array"}, "returnedGranularity": _GRANULARITY,
    "receivedRequestSummary": _obj(["apiVersion", "requestedSchemas", "pagination", "requestedGranularity"], {
        "apiVersion": _STR, "requestedSchemas": {"type": "array"}, "pagination": {"type": "object"},
        "requestedGranularity": _GRANULARITY, "filters": {"type": "array"}})})


def _informational(response: dict) -> dict:
    return _obj(["meta", "response"], {"meta": _META_INFORMATIONAL, "response": response})


SCHEMAS = {
    "info": _informational(_obj(["id", "name", "apiVersion", "environment", "organization"], {
        "id": _STR, "name": _STR, "apiVersion": _STR, "environment": {"enum": ["prod", "test", "dev", "staging"]},
        "organization": _obj(["id", "name"], {"id": _STR, "name": _STR})})),
    "service-info": _obj(["id", "name", "type", "organization", "version"], {
        "id": _STR, "name": _STR, "version": _STR,
        "type": _obj(["group", "artifact", "version"], {"group": _STR, "artifact": _STR, "version": _STR}),
        "organization": _obj(["name", "url"], {"name": _STR, "url": _STR})}),
    "configuration": _informational(_obj(["$schema", "maturityAttributes", "entryTypes"], {
        "maturityAttributes": _obj(["productionStatus"]), "entryTypes": {"type": "object"}})),
    "map": _informational(_obj(["$schema", "endpointSets"], {"endpointSets": {"type": "object"}})),
    "entry_types": _informational(_obj(["entryTypes"], {"entryTypes": {"type": "object"}})),
    "filtering_terms": _informational(_obj(["filteringTerms"], {"filteringTerms": {
        "type": "array", "items": _obj(["type", "id"], {"type": _STR, "id": _STR})}})),
    "boolean": _obj(["meta", "responseSummary"], {"meta": _META_RESPONSE,
                                                  "responseSummary": _obj(["exists"], {"exists": _BOOL})}),
    "count": _obj(["meta", "responseSummary"], {"meta": _META_RESPONSE, "responseSummary": _obj(
        ["exists", "numTotalResults"], {"exists": _BOOL, "numTotalResults": _INT})}),
    "error": _obj(["meta", "error"], {"error": _obj(["errorCode"], {"errorCode": {"type": "integer"},
                                                                  "errorMessage": _STR})}),
    "request": _obj(["meta"], {"meta": _obj(["apiVersion"], {"apiVersion": _STR}), "query": {
        "type": "object", "properties": {"filters": {"type": "array"}, "requestedGranularity": _GRANULARITY}}}),
}

# the framework's schema file of each document, for `official_problems`
OFFICIAL = {
    "info": "responses/beaconInfoResponse.json",
    "service-info": "responses/ga4gh-service-info-1-0-0-schema.json",
    "configuration": "responses/beaconConfigurationResponse.json",
    "map": "responses/beaconMapResponse.json",
    "entry_types": "responses/beaconEntryTypesResponse.json",
    "filtering_terms": "responses/beaconFilteringTermsResponse.json",
    "boolean": "responses/beaconBooleanResponse.json",
    "count": "responses/beaconCountResponse.json",
    "error": "responses/beaconErrorResponse.json",
    "request": "requests/beaconRequestBody.json",
}
_BASE = "https://permed.invalid/beacon-v2/"  # no network: every reference resolves inside the registry

# the PGx aggregate (our extension): cells are exact counts or suppressed, never sample-level data
AGGREGATE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema", "k", "nSamples", "levels", "groups", "cells", "totals", "privacy"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": "permed.aggregate/1"},
        # genes left out whole: disclosure control found no cell left to hide that would protect them
        "withheld": {"type": "array", "items": {"type": "string"}},
        "k": {"type": "integer", "minimum": 1},
        "nSamples": {"type": ["integer", "null"], "minimum": 0},
        "levels": {"type": "array", "items": {"enum": ["all", "superpopulation", "population"]}},
        "groups": {"type": "array", "items": {
            "type": "object", "required": ["level", "group", "n"], "additionalProperties": False,
            "properties": {"level": {"type": "string"}, "group": {"type": "string"}, "n": {"$ref": "#/$defs/count"}},
        }},
        "cells": {"type": "array", "items": {
            "type": "object", "required": ["gene", "kind", "value", "level", "group", "count"],
            "additionalProperties": False,
            "properties": {"gene": {"type": "string"}, "kind": {"enum": ["allele", "diplotype", "phenotype"]},
                           "value": {"type": "string"}, "level": {"type": "string"}, "group": {"type": "string"},
                           "count": {"$ref": "#/$defs/count"}},
        }},
        "totals": {"type": "array", "items": {
            "type": "object", "required": ["gene", "kind", "level", "group", "nDetermined"],
            "additionalProperties": False,
            "properties": {"gene": {"type": "string"}, "kind": {"type": "string"}, "level": {"type": "string"},
                           "group": {"type": "string"}, "nDetermined": {"$ref": "#/$defs/count"}},
        }},
        "privacy": {
            "type": "object", "required": ["mechanism"], "additionalProperties": False,
            "properties": {"mechanism": {"enum": ["none", "laplace", "gaussian"]},
                           "epsilon": {"type": "number", "minimum": 0}, "delta": {"type": "number", "minimum": 0},
                           "scale": {"type": "number", "minimum": 0},
                           "sensitivity": {"type": "number", "minimum": 0},
                           "epsilonSpent": {"type": "number", "minimum": 0},
                           "budgetRemaining": {"type": "number"}},
        },
    },
    "$defs": {
        # an exact count (never 1..k-1: those are suppressed), or a suppressed cell: "<k" (primary: 1..k-1)
        # or "complementary" (any count, hidden so that a "<k" cell cannot be derived from the totals)
        "count": {"oneOf": [
            {"type": "integer", "minimum": 0},
            {"type": "object", "required": ["suppressed"], "additionalProperties": False,
             "properties": {"suppressed": {"enum": ["<k", "complementary"]}}},
        ]},
    },
}


@cache
def validator(name: str):
    """A jsonschema validator of our schema for `name` (SCHEMAS, or "aggregate": our extension)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(AGGREGATE_SCHEMA if name == "aggregate" else SCHEMAS[name])


@cache
def _official_validator(name: str, framework_dir: str):
    """A validator of the framework's own schema for `name`, read from `framework_dir` (the framework's json/
    folder); its files refer to each other by relative paths, so each is registered under a URI of its place."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    root = Path(framework_dir)
    resources = []
    for path in sorted(root.rglob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((_BASE + path.relative_to(root).as_posix(),
                          Resource.from_contents(contents, default_specification=DRAFT202012)))
    return Draft202012Validator({"$ref": _BASE + OFFICIAL[name]}, registry=Registry().with_resources(resources))


def _messages(v, document) -> list[str]:
    out = []
    for e in sorted(v.iter_errors(document), key=lambda e: list(e.absolute_path))[:10]:
        where = "/".join(str(p) for p in e.absolute_path) or "(document)"
        out.append(f"{where}: {e.message[:200]}")
    return out


def official_problems(name: str, document, framework_dir: str | Path) -> list[str]:
    """Why `document` is not a valid `name` document by the Beacon v2 framework's own schemas (empty when
    it is), read from a copy of the framework's json/ folder."""
    return _messages(_official_validator(name, str(framework_dir)), document)


def problems(name: str, document) -> list[str]:
    """Why `document` is not a valid `name` document (empty when it is): 'path: message', first ten."""
    return _messages(validator(name), document)
