"""A node's queries, independent of HTTP: a Beacon request and the asking token in, (status, document) out.

Every query goes through the same steps, and every outcome is audited: the request is checked against the
Beacon request schema; the filters select a set of individuals; the query-set-size restriction refuses a
set (or its complement) of 1..k-1 individuals; the differencing check refuses a set that differs from an
earlier answered one by 1..k-1 individuals (with differential privacy on, it is answered with noise
instead); with differential privacy the token's budget is charged before any noise is drawn; then the
answer, at the granularity the token's scope allows (never `record`).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from permed.federation import aggregate, beacon, privacy, schemas
from permed.federation.cohort import NodeCohort, load_cohort
from permed.federation.config import NodeConfig
from permed.federation.filters import Filter, FilterError, mask_of, parse_filters, split_get_filters
from permed.federation.history import QueryHistory
from permed.federation.store import NodeStore
from permed.federation.tokens import SCOPES, allows

BY = ("superpopulation", "population")


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Node:
    def __init__(self, cohort_dir: Path, config: NodeConfig, cohort: NodeCohort | None = None):
        self.config = config
        self.cohort = cohort or load_cohort(cohort_dir)
        self.store = NodeStore(cohort_dir)
        self.history = QueryHistory(self.store, self.cohort.n, config.disclosure.history)
        self.lock = threading.Lock()  # history and budget change with each answer: one query at a time
        self._cache: OrderedDict[tuple, dict] = OrderedDict()  # exact aggregates are deterministic

    # --- informational endpoints
    def filtering_terms(self) -> dict:
        return beacon.filtering_terms(self.config, self.cohort, aggregate.vocabulary)

    # --- queries
    def individuals(self, token: dict, body: dict | None, params: dict | None, client: str | None) -> tuple[int, dict]:
        requested, filters_text = "boolean", []
        try:
            request = self._request(body, params)
            query = request.get("query") or {}
            requested = query.get("requestedGranularity", "boolean")
            filters = self._filters(query)
            filters_text = [f.text() for f in filters]
            returned = self._granularity(token["scope"], requested)
            with self.lock:
                mask, count = self._select(filters)
                noise = self._noise(token, 1, 0, ()) if self.config.privacy.on else None
                shown = count
                if noise is not None:
                    shown = int(max(privacy.noisy(noise, np.array([count]))[0], 0))
                k = self.config.disclosure.k
                if returned == "count" and shown < k and count > 0:
                    returned = "boolean"  # never a count below k
                self.history.remember(mask)
            info = {"permed": {"k": k, "privacy": self._privacy_info(token, noise)}}
            doc = beacon.answer(self.config, returned, requested, filters_text, shown, count > 0, info)
            self._check("boolean" if returned == "boolean" else "count", doc)
            self.store.audit(token, "individuals", "answered", filters_text, requested, returned,
                             noise.epsilon if noise else 0.0, client)
            return 200, doc
        except Refused as exc:
            self.store.audit(token, "individuals", f"refused-{exc.status}: {exc.message}", filters_text,
                             str(requested)[:20], None, 0.0, client)
            return exc.status, beacon.error(self.config, exc.status, exc.message, _granularity_text(requested),
                                            filters_text)

    def aggregate(self, token: dict, body: dict | None, client: str | None) -> tuple[int, dict]:
        filters_text: list[str] = []
        try:
            if not allows(token["scope"], "aggregate"):
                raise Refused(403, f"this token's scope is {token['scope']}; /api/aggregate needs scope aggregate")
            request = self._request(body, None)
            query = request.get("query") or {}
            filters = self._filters(query)
            filters_text = [f.text() for f in filters]
            req = self._aggregate_request((query.get("requestParameters") or {}).get("aggregate") or {})
            params = {"aggregate": {"genes": list(req.genes), "kinds": list(req.kinds), "levels": list(req.levels)}}
            with self.lock:
                mask, count = self._select(filters)
                noise = None
                if self.config.privacy.on:
                    noise = self._noise(token, len(req.levels), len(req.genes), req.kinds)
                    doc_info = aggregate.answer(self.cohort, mask, req, self.config, noise)
                else:
                    key = (hashlib.sha256(np.packbits(mask).tobytes()).hexdigest(), req)
                    doc_info = self._cache.get(key) or aggregate.answer(self.cohort, mask, req, self.config, None)
                    self._cache[key] = doc_info
                    while len(self._cache) > 32:
                        self._cache.popitem(last=False)
                self.history.remember(mask)
            doc_info = {**doc_info, "privacy": {**doc_info["privacy"], **self._privacy_info(token, noise)}}
            shown = count if noise is None else next(
                (g["n"] for g in doc_info["groups"] if g["level"] == "all" and isinstance(g["n"], int)), 0)
            doc = beacon.answer(self.config, "count", "count", filters_text, shown, count > 0,
                                {"pgxAggregate": doc_info}, params)
            self._check("count", doc)
            bad = schemas.problems("aggregate", doc_info)
            if bad:
                raise RuntimeError(f"aggregate answer does not match its schema: {bad[0]}")
            self.store.audit(token, "aggregate", "answered", filters_text, "aggregate", "aggregate",
                             noise.epsilon if noise else 0.0, client)
            return 200, doc
        except Refused as exc:
            self.store.audit(token, "aggregate", f"refused-{exc.status}: {exc.message}", filters_text, "aggregate",
                             None, 0.0, client)
            return exc.status, beacon.error(self.config, exc.status, exc.message, "count", filters_text)

    # --- steps
    def _request(self, body: dict | None, params: dict | None) -> dict:
        if body is None:  # a GET: the same request from query parameters
            params = params or {}
            query: dict = {}
            if params.get("requestedGranularity"):
                query["requestedGranularity"] = params["requestedGranularity"]
            if params.get("filters"):
                query["filters"] = split_get_filters(params["filters"])
            return {"meta": {"apiVersion": beacon.API_VERSION}, "query": query}
        if not isinstance(body, dict):
            raise Refused(400, "request body: must be a JSON object (a Beacon v2 request)")
        bad = schemas.problems("request", body)
        if bad:
            raise Refused(400, f"request body: not a Beacon v2 request: {bad[0]}")
        query = body.get("query") or {}
        for i, f in enumerate(query.get("filters") or []):
            if isinstance(f, dict) and "operator" not in f and "value" in f:
                query["filters"][i] = {**f, "operator": "="}
        return body

    def _filters(self, query: dict) -> list[Filter]:
        try:
            return parse_filters(query.get("filters"), self.config.limits.max_filters)
        except FilterError as exc:
            raise Refused(400, str(exc)) from None

    def _granularity(self, scope: str, requested) -> str:
        if requested not in ("boolean", "count", "record"):
            raise Refused(400, f"requestedGranularity: {str(requested)[:20]!r} is not boolean, count or record")
        want = "count" if requested in ("count", "record") else "boolean"  # record: never, at most a count
        return want if allows(scope, want) else "boolean"

    def _select(self, filters: list[Filter]) -> tuple[np.ndarray, int]:
        try:
            mask = mask_of(self.cohort, filters)
        except FilterError as exc:
            raise Refused(400, str(exc)) from None
        count, n, d = int(mask.sum()), self.cohort.n, self.config.disclosure
        k = d.k
        if k > 1 and d.query_set_restriction and filters:
            if 0 < count < k or 0 < n - count < k:
                raise Refused(403, f"query-set-size restriction: the filters select (or leave out) fewer than {k} "
                                   "individuals")
        if k > 1 and d.differencing and not self.config.privacy.on:
            closest = self.history.closest(mask)
            if closest is not None and closest < k:
                raise Refused(403, f"differencing check: these filters select a set that differs from an earlier "
                                   f"query's by fewer than {k} individuals")
        return mask, count

    def _noise(self, token: dict, levels: int, genes: int, kinds: tuple[str, ...]) -> privacy.Noise:
        p = self.config.privacy
        noise = privacy.plan(p, levels, genes, tuple(kinds))
        remaining = self.store.charge(token["id"], noise.epsilon, p.budget)
        if remaining is None:
            raise Refused(403, f"privacy budget exhausted: this token has spent {self.store.spent(token['id']):g} of "
                               f"epsilon {p.budget:g}; this query needs {noise.epsilon:g}")
        return noise

    def _privacy_info(self, token: dict, noise: privacy.Noise | None) -> dict:
        if noise is None:
            return {"mechanism": "none"}
        return {**noise.describe(), "epsilonSpent": noise.epsilon,
                "budgetRemaining": round(self.config.privacy.budget - self.store.spent(token["id"]), 12)}

    def _aggregate_request(self, raw: dict) -> aggregate.AggregateRequest:
        genes = raw.get("genes") or sorted(self.cohort.genes)
        kinds = raw.get("kinds") or ["phenotype"]
        by = raw.get("by") or []
        for name, value in (("genes", genes), ("kinds", kinds), ("by", by)):
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value) or len(value) > 100:
                raise Refused(400, f"requestParameters.aggregate.{name}: must be a list of at most 100 names")
        genes = [genes] if isinstance(genes, str) else genes
        kinds = [kinds] if isinstance(kinds, str) else kinds
        by = [by] if isinstance(by, str) else by
        unknown = [g for g in genes if g not in self.cohort.genes]
        if unknown:
            raise Refused(400, f"requestParameters.aggregate.genes: {', '.join(unknown[:5])} not in this node's "
                               f"cohort (it has {', '.join(sorted(self.cohort.genes))})")
        bad = [x for x in kinds if x not in ("phenotype", "diplotype", "allele")]
        if bad:
            raise Refused(400, f"requestParameters.aggregate.kinds: {bad[0]!r} is not phenotype, diplotype or allele")
        denied = [x for x in kinds if x not in self.config.disclosure.kinds]
        if denied:
            raise Refused(403, f"requestParameters.aggregate.kinds: this node does not release {denied[0]} counts")
        for x in by:
            if x not in BY:
                raise Refused(400, f"requestParameters.aggregate.by: {x!r} is not population or superpopulation")
            if x not in self.cohort.groupings:
                raise Refused(400, f"requestParameters.aggregate.by: this node's cohort has no {x} table")
        kinds_t = tuple(x for x in ("diplotype", "phenotype", "allele") if x in kinds)
        return aggregate.AggregateRequest(tuple(dict.fromkeys(genes)), kinds_t,
                                          aggregate.request_levels(self.cohort, by))

    def _check(self, name: str, doc: dict) -> None:
        """What leaves the node is a valid Beacon document (a failure here is our bug, not the caller's)."""
        bad = schemas.problems(name, doc)
        if bad:
            raise RuntimeError(f"answer does not match the Beacon {name} response schema: {bad[0]}")


def _granularity_text(requested) -> str:
    return requested if requested in ("boolean", "count", "record") else "boolean"


__all__ = ["Node", "Refused", "SCOPES"]
