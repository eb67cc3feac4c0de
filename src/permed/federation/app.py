"""The node's HTTP application (Starlette, run by uvicorn): Beacon v2 routes under /api and the PGx aggregate.

A pure ASGI guard sits in front, as in `permed serve`: the failed-authentication rate limit per client
address (the service's FailureLimiter), the bearer token (hashed lookup, scope, expiry) on every query
route before any body byte is read, the declared and actual body size, and the service's no-cache,
no-frame, no-sniff headers on every answer. Informational routes (/api, /api/service-info,
/api/configuration, /api/map, /api/entry_types, /api/filtering_terms) need no token: they describe the
node, and the filtering terms list only values at least k individuals hold. Every request is audited.
"""

from __future__ import annotations

import json

from permed.federation import beacon, schemas
from permed.federation.node import Node
from permed.federation.tokens import lookup, why_unusable
from permed.service.security import API_HEADERS, FailureLimiter, adding_headers, client_address, replay_body

OPEN = {"/api", "/api/", "/api/service-info", "/api/configuration", "/api/map", "/api/entry_types",
        "/api/filtering_terms"}
QUERY = {"/api/individuals", "/api/aggregate"}
SCOPE_TOKEN = "permed.node_token"


def create_app(node: Node):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    config = node.config

    def doc(name: str, document: dict, status: int = 200):
        bad = schemas.problems(name, document) if name else []
        if bad:  # our own answer is malformed: a bug, never sent as if valid
            raise RuntimeError(f"{name} document does not match its Beacon schema: {bad[0]}")
        return JSONResponse(document, status_code=status)

    async def root(request: Request):
        return doc("info", beacon.info(config))

    async def service_info(request: Request):
        return doc("service-info", beacon.service_info(config))

    async def configuration(request: Request):
        return doc("configuration", beacon.configuration(config))

    async def beacon_map(request: Request):
        return doc("map", beacon.beacon_map(config, str(request.base_url)))

    async def entry_types(request: Request):
        return doc("entry_types", beacon.entry_types(config))

    async def filtering_terms(request: Request):
        return doc("filtering_terms", node.filtering_terms())

    async def _body(request: Request):
        raw = await request.body()
        try:
            return json.loads(raw) if raw else {"meta": {"apiVersion": beacon.API_VERSION}}, None
        except (ValueError, UnicodeDecodeError):
            return None, doc("error", beacon.error(config, 400, "request body: not valid JSON"), 400)

    async def individuals(request: Request):
        from starlette.concurrency import run_in_threadpool

        token = request.scope[SCOPE_TOKEN]
        body = None
        if request.method == "POST":
            body, bad = await _body(request)
            if bad is not None:
                return bad
        params = dict(request.query_params) if request.method == "GET" else None
        status, answer = await run_in_threadpool(node.individuals, token, body, params, _client(request))
        return JSONResponse(answer, status_code=status)

    async def aggregate(request: Request):
        from starlette.concurrency import run_in_threadpool

        body, bad = await _body(request)
        if bad is not None:
            return bad
        status, answer = await run_in_threadpool(node.aggregate, request.scope[SCOPE_TOKEN], body,
                                                 _client(request))
        return JSONResponse(answer, status_code=status)

    routes = [Route("/api", root), Route("/api/", root), Route("/api/info", root),
              Route("/api/service-info", service_info), Route("/api/configuration", configuration),
              Route("/api/map", beacon_map), Route("/api/entry_types", entry_types),
              Route("/api/filtering_terms", filtering_terms),
              Route("/api/individuals", individuals, methods=["GET", "POST"]),
              Route("/api/aggregate", aggregate, methods=["POST"])]
    app = Starlette(routes=routes)
    return NodeGuard(app, node)


def _client(request) -> str | None:
    return request.client.host if request.client else None


class NodeGuard:
    """Token, rate limit, body size and headers, before any route (and before any body byte is read)."""

    def __init__(self, app, node: Node):
        self.app, self.node = app, node
        lim = node.config.limits
        self.max_body = lim.max_body_kb * 1024
        self.failures = FailureLimiter(lim.auth_failures, 60.0)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        send = adding_headers(send, API_HEADERS)
        client = client_address(scope) or "-"
        store = self.node.store
        if path not in QUERY:
            if path in OPEN or path == "/api/info":
                store.audit(None, path, "answered", client=client)
            return await self.app(scope, receive, send)
        wait = self.failures.retry_after(client)
        if wait is not None:
            if self.failures.first_refusal(client, wait):
                store.audit(None, path, "refused-429: failed authentications", client=client)
            return await _answer(send, 429, self.node.config, "too many failed authentications from this address",
                                 [(b"retry-after", str(int(wait) + 1).encode())])
        value = _bearer(scope["headers"])
        row = lookup(store, value) if value else None
        reason = why_unusable(row) if value else "missing"
        if reason is not None:
            if value:
                self.failures.fail(client)
            store.audit(row if reason != "unknown" else None, path, f"refused-401: {reason} token", client=client)
            return await _answer(send, 401, self.node.config, "a valid node token is required" if reason in
                                 ("missing", "unknown") else f"this node token is {reason}",
                                 [(b"www-authenticate", b"Bearer")])
        scope[SCOPE_TOKEN] = row
        declared = _declared(scope["headers"])
        if declared is not None and (declared < 0 or declared > self.max_body):
            store.audit(row, path, "refused-413: body too large", client=client)
            return await _answer(send, 413, self.node.config, f"request body larger than {self.max_body} bytes")
        if method == "POST":
            body, more = bytearray(), True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_body:
                    store.audit(row, path, "refused-413: body too large", client=client)
                    return await _answer(send, 413, self.node.config,
                                         f"request body larger than {self.max_body} bytes")
            receive = replay_body(bytes(body), receive)
        await self.app(scope, receive, send)


def _bearer(headers) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            return credentials.strip() or None if scheme.lower() == "bearer" else None
    return None


def _declared(headers) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


async def _answer(send, status: int, config, message: str, headers: list | None = None) -> None:
    body = json.dumps(beacon.error(config, status, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
