"""`permed federate`: one PGx aggregate query sent to every node at once; each answer is checked against
the Beacon v2 count response schema and our aggregate schema before it is used.

A node that is down, slow (past the timeout), refuses (401/403/429 or a Beacon error) or answers
something that is not a valid document is marked so in the result and left out of the sums; the query as a
whole never fails because of one node.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from permed.federation import schemas
from permed.federation.beacon import API_VERSION

DEFAULT_TIMEOUT = 30.0
MAX_ANSWER = 64 * 1024 * 1024  # a node's answer larger than this is refused unread beyond it


@dataclass(frozen=True)
class NodeTarget:
    url: str
    token: str | None = None


@dataclass
class NodeAnswer:
    url: str
    status: str  # ok, down, timeout, refused, invalid, error
    detail: str = ""
    seconds: float = 0.0
    beacon_id: str | None = None
    document: dict | None = field(default=None, repr=False)

    @property
    def aggregate(self) -> dict | None:
        return self.document["info"]["pgxAggregate"] if self.status == "ok" and self.document else None

    def summary(self) -> dict:
        agg = self.aggregate or {}
        out = {"url": self.url, "status": self.status, "detail": self.detail, "seconds": round(self.seconds, 4),
               "beaconId": self.beacon_id}
        if agg:
            out.update({"k": agg["k"], "nSamples": agg["nSamples"], "privacy": agg["privacy"],
                        "withheld": agg.get("withheld", [])})
        return out


def request_body(genes, kinds, by, filters) -> dict:
    body = {"meta": {"apiVersion": API_VERSION},
            "query": {"requestedGranularity": "count", "filters": list(filters),
                      "requestParameters": {"aggregate": {"kinds": list(kinds), "by": list(by)}}}}
    if genes:
        body["query"]["requestParameters"]["aggregate"]["genes"] = list(genes)
    problems = schemas.problems("request", body)
    if problems:  # what we send is a Beacon request too
        raise ValueError(f"request is not a Beacon v2 request: {problems[0]}")
    return body


async def _ask(client, target: NodeTarget, body: dict, timeout: float) -> NodeAnswer:
    import httpx

    url = target.url.rstrip("/") + "/api/aggregate"
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    t0 = time.perf_counter()

    def done(status, detail="", doc=None, beacon_id=None):
        return NodeAnswer(target.url, status, detail[:300], time.perf_counter() - t0, beacon_id, doc)

    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", url, json=body, headers=headers) as r:
                raw = bytearray()
                async for chunk in r.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_ANSWER:
                        return done("invalid", f"answer larger than {MAX_ANSWER} bytes")
                code = r.status_code
    except TimeoutError:
        return done("timeout", f"no answer within {timeout:g} s")
    except httpx.ConnectError as exc:
        return done("down", f"cannot connect ({type(exc).__name__})")
    except httpx.HTTPError as exc:
        return done("down", f"{type(exc).__name__}: {exc}")
    try:
        doc = json.loads(bytes(raw))
    except (ValueError, UnicodeDecodeError):
        return done("invalid", f"HTTP {code}: the answer is not JSON")
    if code != 200:
        bad = schemas.problems("error", doc) if isinstance(doc, dict) else ["not an object"]
        if bad:
            return done("invalid" if code < 500 else "error", f"HTTP {code}: not a Beacon error response ({bad[0]})")
        status = "refused" if code in (400, 401, 403, 413, 429) else "error"
        return done(status, f"HTTP {code}: {doc['error'].get('errorMessage', '')}",
                    beacon_id=doc["meta"].get("beaconId"))
    bad = schemas.problems("count", doc)
    if bad:
        return done("invalid", f"not a Beacon count response: {bad[0]}")
    agg = (doc.get("info") or {}).get("pgxAggregate") if isinstance(doc.get("info"), dict) else None
    bad = schemas.problems("aggregate", agg) if agg is not None else ["info.pgxAggregate is missing"]
    if bad:
        return done("invalid", f"info.pgxAggregate: {bad[0]}")
    return done("ok", "", doc, doc["meta"].get("beaconId"))


async def federate_async(targets: list[NodeTarget], genes=(), kinds=("phenotype",), by=(), filters=(),
                         timeout: float = DEFAULT_TIMEOUT, verify: bool | str = True) -> list[NodeAnswer]:
    import httpx

    body = request_body(genes, kinds, by, filters)
    limits = httpx.Limits(max_connections=max(len(targets), 1) * 2)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=limits, verify=verify,
                                 follow_redirects=False) as client:
        return list(await asyncio.gather(*(_ask(client, t, body, timeout) for t in targets)))


def federate(nodes, query: str | None = None, *, genes=(), kinds=("phenotype",), by=(), filters=(),
             tokens=None, timeout: float = DEFAULT_TIMEOUT, verify: bool | str = True):
    """Query every node and combine the answers: a `FederatedResult` (`.rows`, `.nodes`, `.to_json()`,
    `.to_arrow()`, `.write_html(path)`). `nodes`: URLs or NodeTargets; `tokens`: one token for all, or a
    URL -> token mapping; `query`: "GENE[,GENE] KIND[,KIND]" as on the command line (or genes/kinds)."""
    from permed.federation.combine import combine

    if query:
        genes, kinds = parse_query(query)
    targets = [n if isinstance(n, NodeTarget) else NodeTarget(str(n), _token_for(str(n), tokens)) for n in nodes]
    filters = [parse_filter_text(f) if isinstance(f, str) else f for f in filters]
    answers = asyncio.run(federate_async(targets, genes, kinds, by, filters, timeout, verify))
    return combine(answers, {"genes": list(genes), "kinds": list(kinds), "by": list(by), "filters": list(filters)})


def _token_for(url: str, tokens) -> str | None:
    if tokens is None or isinstance(tokens, str):
        return tokens
    return tokens.get(url) or tokens.get(url.rstrip("/"))


def parse_query(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """"CYP2C19 phenotype", "CYP2C19,CYP2D6 phenotype,allele", "* diplotype" (every gene)."""
    parts = text.split()
    if len(parts) != 2:
        raise ValueError(f"query {text!r}: expected 'GENE KIND', e.g. 'CYP2C19 phenotype' (GENE may be a comma-"
                         "separated list or *, KIND phenotype, diplotype or allele)")
    genes = tuple(g for g in parts[0].split(",") if g and g != "*")
    kinds = tuple(k.lower() for k in parts[1].split(",") if k)
    bad = [k for k in kinds if k not in ("phenotype", "diplotype", "allele")]
    if bad or not kinds:
        raise ValueError(f"query {text!r}: kind {bad[0] if bad else ''!r} is not phenotype, diplotype or allele")
    return genes, kinds


def parse_filter_text(text: str) -> dict:
    """'CYP2D6:phenotype=Poor Metabolizer' -> a Beacon alphanumeric filter object."""
    from permed.federation.filters import FilterError, parse_filters

    try:
        f = parse_filters([text], 1)[0]
    except FilterError as exc:
        raise ValueError(str(exc).replace("filters[0]", "--filter")) from None
    return {"id": f.id, "operator": f.operator, "value": f.value}
