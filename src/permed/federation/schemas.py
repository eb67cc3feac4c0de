"""The Beacon v2 framework schemas (packaged, unchanged: beacon_schemas/SOURCE.txt) and our own schema of the
PGx aggregate that rides in a count response's `info`; validators for what a node sends and a client receives.

The framework's files refer to each other by relative paths, so each is registered under a file URI of its
packaged location and references resolve as they do in the source repository.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

SCHEMA_DIR = Path(__file__).parent / "beacon_schemas"
BASE = "https://permed.invalid/beacon-v2/"  # no network: every reference resolves inside the registry

# what each endpoint answers with, and what a request body must be
RESPONSES = {
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
def _registry():
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resources = []
    for path in sorted(SCHEMA_DIR.rglob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        uri = BASE + path.relative_to(SCHEMA_DIR).as_posix()
        resources.append((uri, Resource.from_contents(contents, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


@cache
def validator(name: str):
    """A jsonschema validator for RESPONSES[name], or for "aggregate" (our extension)."""
    from jsonschema import Draft202012Validator

    if name == "aggregate":
        return Draft202012Validator(AGGREGATE_SCHEMA)
    return Draft202012Validator({"$ref": BASE + RESPONSES[name]}, registry=_registry())


def problems(name: str, document) -> list[str]:
    """Why `document` is not a valid `name` document (empty when it is): 'path: message', first ten."""
    out = []
    for e in sorted(validator(name).iter_errors(document), key=lambda e: list(e.absolute_path))[:10]:
        where = "/".join(str(p) for p in e.absolute_path) or "(document)"
        out.append(f"{where}: {e.message[:200]}")
    return out
