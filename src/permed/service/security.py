"""The request guard: a pure ASGI middleware in front of the API that refuses what must never reach a
route, before any body byte is read.

FastAPI reads and parses a JSON body before a route's dependencies run, so authentication in a
dependency would come after a 1.5 GB body had been read. Here, in order: header sizes (431), the
failed-authentication rate limit per client address (429), the token (401), the declared
Content-Length against the limit of the route (413), and a non-upload body read whole only up to its
limit (413). Every refusal, here or in a route (403, 404 of another organisation's row, 413 ...),
writes an audit row with the client address and the token id, never the token. Every /api response
gets headers that keep it out of caches, frames and content sniffing.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from permed.service.limits import Limits
from permed.service.tokens import usable

OPEN_PATHS = frozenset({"/api/v1/health"})
UPLOAD = ("POST", "/api/v1/samples")
# /api answers are patient data or about it: never cached, framed, sniffed or followed by a Referer
API_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; "
           "base-uri 'none'; form-action 'none'")
API_HEADERS = [(b"content-security-policy", API_CSP.encode()), (b"x-content-type-options", b"nosniff"),
               (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store")]
SCOPE_TOKEN = "permed.token"  # the authenticated ApiToken, for the routes' dependencies
SCOPE_UPLOAD = "permed.audit_upload"  # set by a route that hid another organisation's row: named in the audit
SCOPE_CDS = "permed.cds_caller"  # the verified CDS Hooks caller (cds_auth.Caller)
CDS_PREFIX = "/cds-services"
CDS_ALLOW = [(b"access-control-allow-methods", b"GET, POST, OPTIONS"),
             (b"access-control-allow-headers", b"authorization, content-type"), (b"access-control-max-age", b"600")]
_clock = time.monotonic  # (tests move it forward instead of waiting a minute)
MAX_TRACKED_CLIENTS = 100_000  # failure counters kept at most (oldest dropped): addresses cannot grow memory


def client_address(scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


class FailureLimiter:
    """Failed authentications per client address in a sliding window."""

    def __init__(self, max_failures: int, window: float):
        self.max, self.window = max_failures, window
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()
        self._reported: dict[str, float] = {}  # client -> end of the block its 429 was audited for

    def retry_after(self, client: str, now: float | None = None) -> float | None:
        """Seconds until `client` may try again, or None when it is not blocked."""
        fails = self._fails.get(client)
        if not fails or self.max <= 0:
            return None
        now = _clock() if now is None else now
        while fails and fails[0] <= now - self.window:
            fails.popleft()
        if len(fails) < self.max:
            return None
        return max(fails[-self.max] + self.window - now, 0.001)

    def fail(self, client: str) -> None:
        fails = self._fails.get(client)
        if fails is None:
            if len(self._fails) >= MAX_TRACKED_CLIENTS:
                self._fails.popitem(last=False)
            fails = self._fails[client] = deque(maxlen=max(self.max, 1))
        fails.append(_clock())

    def first_refusal(self, client: str, retry_after: float) -> bool:
        """True once per block: the first 429 of a block is audited, not every one (they are unbounded)."""
        until = _clock() + retry_after
        if self._reported.get(client, 0) >= until - 0.5:
            return False
        if len(self._reported) >= MAX_TRACKED_CLIENTS:
            self._reported.clear()
        self._reported[client] = until
        return True


Audit = Callable[[object, str, int | None, str | None], Awaitable[None]]


class Guard:
    def __init__(self, app, limits: Limits, authenticate: Callable[[str], Awaitable[object]], audit: Audit,
                 cds=None, cds_app=None, cds_max_body: int | None = None):
        """`cds`: the CDS Hooks verifier (cds_auth.CdsAuth) and `cds_app` the ASGI app of the CDS routes,
        None when CDS Hooks is not configured."""
        self.app, self.limits, self.authenticate, self.audit = app, limits, authenticate, audit
        self.failures = FailureLimiter(limits.auth_failures, limits.auth_window)
        self.cds, self.cds_app, self.cds_max_body = cds, cds_app, cds_max_body or limits.max_json

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope["headers"]
        path, method = scope["path"], scope["method"]
        refusal = self._header_refusal(scope, headers)
        api = path.startswith("/api/") or path == "/api"
        raw_send = send
        if api or path == "/openapi.json":
            send = adding_headers(send, API_HEADERS)
        client = client_address(scope)
        what = f"{method} {path}"
        if refusal is not None:
            if api:
                await self.audit(None, f"refused-431 {what}", None, client)
            return await _answer(send, 431, refusal, close=True)
        declared, chunked = _declared_length(headers)
        has_body = chunked or bool(declared)
        if path == CDS_PREFIX or path.startswith(CDS_PREFIX + "/"):
            return await self._cds(scope, receive, send, declared, has_body, client, what)
        if not api or path in OPEN_PATHS:
            if has_body:  # the UI's files, the spec and health take no body: none is read
                return await _answer(send, 413, "this route takes no request body", close=True)
            return await self.app(scope, receive, send)
        # failed authentications: refuse the address for a while, without looking at its token
        wait = self.failures.retry_after(client or "-")
        if wait is not None:
            if self.failures.first_refusal(client or "-", wait):
                await self.audit(None, f"refused-429 {what} (failed authentications)", None, client)
            return await _answer(send, 429, "too many failed authentications from this address: try again later",
                                 close=has_body, headers=[(b"retry-after", str(int(wait) + 1).encode())])
        value = _bearer(headers)
        row = await self.authenticate(value) if value else None
        reason = usable(row) if value else "missing"
        if reason is not None:
            if value:  # a token was presented and failed: a guess, counted (no token at all is not)
                self.failures.fail(client or "-")
            await self.audit(row, f"refused-401 {what} ({reason} token)", None, client)
            return await _answer(send, 401, "a valid API token is required" if reason in ("missing", "unknown")
                                 else f"this API token is {reason}", close=has_body,
                                 headers=[(b"www-authenticate", b"Bearer")])
        scope[SCOPE_TOKEN] = row
        is_upload = (method, path) == UPLOAD
        limit = self.limits.max_upload if is_upload else self.limits.max_json
        if declared == -1:
            await self.audit(row, f"refused-400 {what} (bad Content-Length)", None, client)
            return await _answer(send, 400, "malformed Content-Length header", close=True)
        if declared > limit:  # refused on the declared length: not one body byte is read
            await self.audit(row, f"refused-413 {what}", None, client)
            return await _answer(send, 413, f"request body larger than {limit} bytes", close=True)
        body_done = [not has_body]
        if has_body and not is_upload:
            receive = await self._read_body(receive, limit, row, what, client, send)
            if receive is None:
                return
            body_done[0] = True
        elif has_body:
            receive = _tracking(receive, body_done)
        await self.app(scope, receive, self._audited(raw_send, row, what, scope, client, body_done, API_HEADERS))

    async def _read_body(self, receive, limit: int, row, what: str, client: str | None, send):
        """A whole non-upload body, read only up to `limit` (413 beyond): a receive that replays it, or None
        when the request was answered (or the client went away)."""
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:  # chunked bodies have no declared length: stop reading here
                await self.audit(row, f"refused-413 {what}", None, client)
                await _answer(send, 413, f"request body larger than {limit} bytes", close=True)
                return None
        return replay_body(bytes(body), receive)

    def _audited(self, raw_send, row, what: str, scope, client: str | None, body_done: list[bool], extra: list):
        async def send_audited(message):  # one wrapper on the hot path: the API headers are added here too
            if message["type"] == "http.response.start":
                status = message["status"]
                if status >= 400:
                    await self.audit(row, f"refused-{status} {what}", scope.get(SCOPE_UPLOAD), client)
                headers = [(n, v) for n, v in message.get("headers", ()) if n != b"cache-control"] + extra
                if not body_done[0]:  # answered before the body was read (413, 403...): do not read the rest
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await raw_send(message)

        return send_audited

    async def _cds(self, scope, receive, send, declared: int, has_body: bool, client: str | None, what: str):
        """CDS Hooks routes: not API tokens but the EHR's signed JWT (cds_auth.py), verified here before
        any body byte is read; the same failure rate limit (a refused JWT counts) and a body limit of
        their own (prefetched data can be larger than API bodies); CORS for the configured EHR origins."""
        if self.cds is None:  # never open: without a configuration there are no CDS services
            return await _answer(send, 404, "CDS Hooks is not configured on this server (permed serve --cds-config)",
                                 close=has_body)
        headers = scope["headers"]
        origin = next((v for n, v in headers if n == b"origin"), None)
        cors = self.cds.cors_headers(origin)
        extra = API_HEADERS + cors
        path, method = scope["path"], scope["method"]
        if method == "OPTIONS":  # a browser's preflight: answered here, no JWT (browsers send none)
            if not cors:
                return await _answer(adding_headers(send, API_HEADERS), 403, "this origin is not allowed",
                                     close=has_body)
            return await _answer(adding_headers(send, extra + CDS_ALLOW), 204, None, close=has_body)
        if path == CDS_PREFIX:  # discovery: public (it describes the services, nothing of any patient)
            if has_body:
                return await _answer(send, 413, "this route takes no request body", close=True)
            return await self.cds_app(scope, receive, adding_headers(send, extra))
        wait = self.failures.retry_after(client or "-")
        if wait is not None:
            if self.failures.first_refusal(client or "-", wait):
                await self.audit(None, f"refused-429 {what} (failed authentications)", None, client)
            return await _answer(adding_headers(send, extra), 429, "too many failed authentications from this address: "
                                 "try again later", close=has_body,
                                 headers=[(b"retry-after", str(int(wait) + 1).encode())])
        token = _bearer(headers)
        if token is None:
            await self.audit(None, f"refused-401 {what} (no JWT)", None, client)
            return await _answer(adding_headers(send, extra), 401, "a JWT signed by a configured EHR is required",
                                 close=has_body, headers=[(b"www-authenticate", b"Bearer")])
        from permed.service.cds_auth import JwtRefused

        try:
            caller = await self.cds.verify(token, self.cds.audience(scope, path[len(CDS_PREFIX) + 1:]))
        except JwtRefused as exc:
            self.failures.fail(client or "-")
            await self.audit(None, f"refused-401 {what} (JWT: {exc.reason})", None, client)
            return await _answer(adding_headers(send, extra), 401, f"JWT refused: {exc.reason}", close=has_body,
                                 headers=[(b"www-authenticate", b"Bearer")])
        scope[SCOPE_CDS] = caller
        limit = self.cds_max_body
        if declared == -1:
            return await _answer(send, 400, "malformed Content-Length header", close=True)
        if declared > limit:
            await self.audit(None, f"refused-413 {what}", None, client)
            return await _answer(adding_headers(send, extra), 413, f"request body larger than {limit} bytes",
                                 close=True)
        body_done = [True]
        if has_body:
            receive = await self._read_body(receive, limit, None, what, client, adding_headers(send, extra))
            if receive is None:
                return
        await self.cds_app(scope, receive, self._audited(send, None, what, scope, client, body_done, extra))

    def _header_refusal(self, scope, headers) -> str | None:
        lim = self.limits
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"x-filename" and len(value) > lim.max_filename:
                return f"X-Filename longer than {lim.max_filename} bytes"
            if name == b"x-medications" and len(value) > lim.max_medications:
                return f"X-Medications longer than {lim.max_medications} bytes"
        if size > lim.max_header_bytes:
            return f"request headers larger than {lim.max_header_bytes} bytes"
        return None


def _bearer(headers) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return None
    return None


def _declared_length(headers) -> tuple[int, bool]:
    """(Content-Length, or 0 when absent and -1 when malformed; whether the body is chunked)."""
    length, chunked = 0, False
    for name, value in headers:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1, chunked
            if length < 0:
                return -1, chunked
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    return length, chunked


def replay_body(body: bytes, receive):
    """`receive` that first hands over a body already read (the guards read it to check its size)."""
    sent = [False]

    async def replay():
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server's receive does

    return replay


def _tracking(receive, done: list[bool]):
    async def tracked():
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            done[0] = True
        return message

    return tracked


def adding_headers(send, extra: list):
    """`send` with headers added to the answer's start (its own cache-control replaced: answers are patient
    data or about it). The federation node's guard uses it too."""
    async def with_headers(message):
        if message["type"] == "http.response.start":
            kept = [(n, v) for n, v in message.get("headers", []) if n.lower() != b"cache-control"]
            message = {**message, "headers": kept + extra}
        await send(message)

    return with_headers


async def _answer(send, status: int, detail: str | None, close: bool = False, headers: list | None = None) -> None:
    body = b"" if detail is None else json.dumps({"detail": detail}).encode()
    head = [*([(b"content-type", b"application/json")] if body else []), (b"content-length", str(len(body)).encode()),
            *(headers or [])]
    if close:  # the request's body is left unread: end the connection rather than read and discard it
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
