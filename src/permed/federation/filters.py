"""Beacon v2 alphanumeric filters over a node's cohort: `<GENE>:phenotype`, `<GENE>:diplotype`,
`<GENE>:allele`, `<GENE>:activity_score`, `population`, `superpopulation`; several filters are ANDed.

Operators: `=` and `!` (not equal) for every id, `<`, `<=`, `>`, `>=` for activity scores (numbers); text
compares without regard to case, and `%` in a value matches any run of characters (Beacon's wildcard).
For `allele`, `=` selects individuals carrying the allele, `!` those not carrying it. In GET requests a
filter is written `ID OP VALUE` (e.g. `CYP2C19:phenotype=Poor Metabolizer`), several separated by commas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from permed.federation.cohort import NodeCohort

GENE_FIELDS = ("phenotype", "diplotype", "allele", "activity_score")
GROUP_IDS = ("population", "superpopulation")
OPERATORS = ("=", "!", "<", ">", "<=", ">=")
_TEXT_OPS = ("=", "!")
_GET_FILTER = re.compile(r"^\s*([^=!<>]+?)\s*(>=|<=|=|!|<|>)\s*(.*?)\s*$")


class FilterError(ValueError):
    """A filter this node cannot apply: answered as a Beacon error (400), naming the filter."""


@dataclass(frozen=True)
class Filter:
    id: str
    operator: str
    value: str

    def text(self) -> str:
        return f"{self.id}{self.operator}{self.value}"


def parse_filters(raw, max_filters: int) -> list[Filter]:
    """Filters from a request body's `query.filters` (objects) or a GET's strings."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise FilterError("filters: must be a list")
    if len(raw) > max_filters:
        raise FilterError(f"filters: {len(raw)} given, at most {max_filters} allowed")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            m = _GET_FILTER.match(item)
            if not m:
                raise FilterError(f"filters[{i}]: {item[:80]!r} is not ID OPERATOR VALUE (e.g. "
                                  "'CYP2C19:phenotype=Poor Metabolizer'); ontology filters are not supported")
            fid, op, value = m.groups()
        elif isinstance(item, dict):
            fid, op, value = item.get("id"), item.get("operator", "="), item.get("value")
            if not isinstance(fid, str) or not fid:
                raise FilterError(f"filters[{i}]: no 'id'")
            if value is None:
                raise FilterError(f"filters[{i}] {fid}: ontology and custom filters are not supported; give an "
                                  "alphanumeric filter with 'operator' and 'value'")
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise FilterError(f"filters[{i}] {fid}: 'value' must be text")
            value = str(value)
        else:
            raise FilterError(f"filters[{i}]: must be an object or text")
        if op not in OPERATORS:
            raise FilterError(f"filters[{i}] {fid}: operator {str(op)[:10]!r} is not one of {' '.join(OPERATORS)}")
        if len(value) > 200:
            raise FilterError(f"filters[{i}] {fid}: value longer than 200 characters")
        out.append(Filter(fid.strip(), op, value.strip()))
    return out


def split_get_filters(text: str | None) -> list[str]:
    return [x for x in (text or "").split(",") if x.strip()]


def _pattern(value: str) -> re.Pattern:
    return re.compile("^" + ".*".join(re.escape(p) for p in value.split("%")) + "$", re.IGNORECASE | re.DOTALL)


def _label_mask(labels: list[str], value: str) -> np.ndarray:
    pat = _pattern(value)
    return np.array([bool(pat.match(x)) for x in labels], dtype=bool)


def mask_of(cohort: NodeCohort, filters: list[Filter]) -> np.ndarray:
    """Which of the cohort's individuals every filter selects."""
    mask = np.ones(cohort.n, dtype=bool)
    for f in filters:
        mask &= _one(cohort, f)
    return mask


def _one(cohort: NodeCohort, f: Filter) -> np.ndarray:
    if f.id in GROUP_IDS:
        grouping = cohort.groupings.get(f.id)
        if grouping is None:
            raise FilterError(f"filter {f.id}: this node has no {f.id} table")
        if f.operator not in _TEXT_OPS:
            raise FilterError(f"filter {f.id}: operator {f.operator} does not apply (use = or !)")
        hit = _label_mask(grouping.labels, f.value)[grouping.codes] if grouping.labels else np.zeros(cohort.n, bool)
        return hit if f.operator == "=" else ~hit
    gene, _, field = f.id.partition(":")
    if field not in GENE_FIELDS:
        raise FilterError(f"filter {f.id}: unknown id (use GENE:phenotype, GENE:diplotype, GENE:allele, "
                          "GENE:activity_score, population or superpopulation)")
    codes = cohort.genes.get(gene) or cohort.genes.get(gene.upper())
    if codes is None:
        raise FilterError(f"filter {f.id}: gene {gene} is not in this node's cohort")
    if field == "activity_score":
        try:
            x = float(f.value)
        except ValueError:
            raise FilterError(f"filter {f.id}: value {f.value[:40]!r} is not a number") from None
        a = codes.activity
        with np.errstate(invalid="ignore"):
            return {"=": a == x, "!": ~(a == x), "<": a < x, ">": a > x, "<=": a <= x, ">=": a >= x}[f.operator]
    if f.operator not in _TEXT_OPS:
        raise FilterError(f"filter {f.id}: operator {f.operator} applies to activity_score only (use = or !)")
    if field == "allele":
        lab = np.append(_label_mask(codes.allele_labels, f.value), False)  # code -1 (no allele) -> False
        hit = lab[codes.allele1] | lab[codes.allele2]
    else:
        labels = codes.labels(field)
        hit = _label_mask(labels, f.value)[getattr(codes, field)]
    return hit if f.operator == "=" else ~hit
