"""Hardening of the service (issue 11): each test reproduces an attack that worked before and must fail now.

In process (the ASGI app called directly, so a test can see whether a body was ever read) and against a
real `permed serve` on loopback (connections, timeouts, header sizes, file permissions), every attack
bounded in count and time. The role matrix of docs/security.md is checked cell by cell.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import Served, cli, example_text
from sqlalchemy import select, update

from permed.service.app import Settings, create_app
from permed.service.store import ApiToken, AuditEvent, Store
from permed.service.tokens import create_token
from permed.service.worker import run_worker


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def service(tmp_path):
    app = create_app(Settings(data_dir=tmp_path / "data", max_upload=200_000))
    store = app.state.store
    tokens = {role: create_token(store, role)[1] for role in ("lab", "clinician", "admin")}
    return app, store, tokens, tmp_path / "data"


# --- calling the ASGI app directly: what the server would hand it, and whether the body was read --------------


class Call:
    """One request through the app's ASGI interface, recording what the app read and sent."""

    def __init__(self, app, method: str, path: str, headers: dict, body: bytes = b"", chunk: int = 65536,
                 endless: bool = False, client: str = "192.0.2.7"):
        self.app, self.chunks_read, self.bytes_read, self.sent = app, 0, 0, []
        self.body, self.chunk, self.endless = body, chunk, endless
        self.scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                      "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                      "root_path": "", "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
                      "client": (client, 40000), "server": ("127.0.0.1", 8000), "state": {}}

    async def receive(self):
        if self.endless:  # a body that never ends: only a limit stops it
            self.chunks_read += 1
            self.bytes_read += self.chunk
            return {"type": "http.request", "body": b"[" * self.chunk, "more_body": True}
        part = self.body[self.bytes_read:self.bytes_read + self.chunk]
        self.chunks_read += 1
        self.bytes_read += len(part)
        return {"type": "http.request", "body": part, "more_body": self.bytes_read < len(self.body)}

    async def send(self, message):
        self.sent.append(message)

    def run(self) -> Call:
        asyncio.run(self.app(self.scope, self.receive, self.send))
        return self

    @property
    def status(self) -> int:
        return self.sent[0]["status"]

    @property
    def headers(self) -> dict:
        return {k.decode(): v.decode() for k, v in self.sent[0]["headers"]}

    @property
    def detail(self) -> str:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))["detail"]


def test_anonymous_bodies_are_never_read(service):
    """Before: a 1.5 GB JSON body to POST /tokens without a token was read and parsed (0.3 -> 4.9 GB RSS)
    before the 401."""
    app, store, _, _ = service
    for headers in ({"Content-Length": "1500000000", "Content-Type": "application/json"},
                    {"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
                    {"Content-Length": "1500000000", "Authorization": "Bearer pmd_guess"}):
        call = Call(app, "POST", "/api/v1/tokens", headers, endless=True).run()
        assert call.status == 401 and call.chunks_read == 0, (headers, call.chunks_read)
        assert call.headers["connection"] == "close"  # the unread body is not drained either
        assert call.headers["www-authenticate"] == "Bearer"
    nested = Call(app, "POST", "/api/v1/tokens", {"Content-Length": "60000"}, body=b"[" * 60000).run()
    assert nested.status == 401 and nested.chunks_read == 0
    upload = Call(app, "POST", "/api/v1/samples", {"Content-Length": "3000000000"}, endless=True).run()
    assert upload.status == 401 and upload.chunks_read == 0
    for path in ("/ui/", "/api/v1/health", "/openapi.json"):  # open routes take no body
        call = Call(app, "POST", path, {"Content-Length": "1500000000"}, endless=True).run()
        assert call.status == 413 and call.chunks_read == 0 and call.headers["connection"] == "close", path


def test_json_bodies_are_capped(service):
    app, _, tokens, _ = service
    admin = _auth(tokens["admin"])
    # declared above 64 KiB: refused before one byte is read
    call = Call(app, "POST", "/api/v1/tokens", {**admin, "Content-Length": str(65537)}, endless=True).run()
    assert call.status == 413 and call.chunks_read == 0 and "65536" in call.detail
    # no declared length (chunked): read up to the limit only
    call = Call(app, "POST", "/api/v1/tokens", {**admin, "Transfer-Encoding": "chunked"}, endless=True,
                chunk=4096).run()
    assert call.status == 413 and call.bytes_read <= 65536 + 4096
    assert call.headers["connection"] == "close"
    # deeply nested JSON within the cap is a client error, not a crash
    client = TestClient(app)
    r = client.post("/api/v1/tokens", content=b"[" * 60000, headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 400
    r = client.post("/api/v1/tokens", json={"role": "lab", "name": "x" * 70000}, headers=admin)
    assert r.status_code == 413
    r = client.post("/api/v1/tokens", json={"role": "lab", "name": "bench"}, headers=admin)
    assert r.status_code == 201  # a normal body still passes the guard (it is replayed to the route)


def test_uploads_over_the_limit_are_refused_up_front_and_not_read_to_the_end(service):
    """Before: 413 came after 2.15 GB had been received and written."""
    app, _, tokens, data = service
    lab = _auth(tokens["lab"])
    call = Call(app, "POST", "/api/v1/samples", {**lab, "Content-Length": "3000000000"}, endless=True).run()
    assert call.status == 413 and call.chunks_read == 0 and call.headers["connection"] == "close"
    # chunked, no declared length: reading stops at the limit (200,000 bytes here)
    call = Call(app, "POST", "/api/v1/samples", {**lab, "Transfer-Encoding": "chunked"}, endless=True).run()
    assert call.status == 413 and call.bytes_read <= 200_000 + 65536
    assert call.headers["connection"] == "close"
    assert list((data / "uploads").iterdir()) == []


@pytest.mark.parametrize("name, value, message", [
    ("X-Filename", "a" * 252 + ".vcf", "X-Filename longer than 255 bytes"),
    ("X-Medications", "codeine," * 600, "X-Medications longer than 4096 bytes"),
    ("X-Padding", "p" * 20_000, "request headers larger than 16384 bytes"),
])
def test_oversized_headers_are_refused(service, name, value, message):
    """Before: a 10 MB header was accepted; 1 MB X-Filename / X-Medications were stored."""
    app, store, tokens, data = service
    r = TestClient(app).post("/api/v1/samples", content=example_text().encode(),
                             headers={**_auth(tokens["lab"]), name: value})
    assert r.status_code == 431 and r.json()["detail"] == message
    assert list((data / "uploads").iterdir()) == []
    with store.session() as s:
        assert s.scalars(select(AuditEvent.action).where(AuditEvent.action.like("refused-431%"))).all()
    ok = TestClient(app).post("/api/v1/samples", content=example_text().encode(),
                              headers={**_auth(tokens["lab"]), "X-Filename": "a" * 251 + ".vcf"})
    assert ok.status_code == 201 and ok.json()["filename"] == "a" * 251 + ".vcf"


def test_failed_authentication_is_rate_limited_per_address_and_audited(service, monkeypatch):
    """Before: 328 random tokens/s were tried, none audited."""
    import permed.service.security as security

    app, store, tokens, _ = service
    now = [1000.0]
    monkeypatch.setattr(security, "_clock", lambda: now[0])
    guesses = [f"pmd_guess{i}" for i in range(10)]
    for guess in guesses:  # Limits().auth_failures: 10 per minute
        assert Call(app, "GET", "/api/v1/samples", _auth(guess), client="198.51.100.1").run().status == 401
    blocked = Call(app, "GET", "/api/v1/samples", _auth("pmd_guess-11"), client="198.51.100.1").run()
    assert blocked.status == 429 and 1 <= int(blocked.headers["retry-after"]) <= 61
    # while blocked, not even a valid token is looked at (else the answer would tell a good guess)
    assert Call(app, "GET", "/api/v1/samples", _auth(tokens["lab"]), client="198.51.100.1").run().status == 429
    # another address is not affected; requests without any token are not guesses
    assert Call(app, "GET", "/api/v1/samples", _auth(tokens["lab"]), client="198.51.100.2").run().status == 200
    for _ in range(20):
        assert Call(app, "GET", "/api/v1/samples", {}, client="198.51.100.3").run().status == 401
    assert Call(app, "GET", "/api/v1/samples", _auth(tokens["lab"]), client="198.51.100.3").run().status == 200
    now[0] += 61  # the window has passed
    assert Call(app, "GET", "/api/v1/samples", _auth(tokens["lab"]), client="198.51.100.1").run().status == 200
    with store.session() as s:
        rows = s.execute(select(AuditEvent.action, AuditEvent.client, AuditEvent.token_id)
                         .where(AuditEvent.client == "198.51.100.1")).all()
    refused = [a for a, _, _ in rows if a.startswith("refused-401")]
    assert len(refused) == 10 and all(a == "refused-401 GET /api/v1/samples (unknown token)" for a in refused)
    assert [a for a, _, _ in rows if a.startswith("refused-429")] == [
        "refused-429 GET /api/v1/samples (failed authentications)"]  # once per block, not per request
    with store.session() as s:
        everything = " ".join(str(v) for row in s.execute(select(AuditEvent)).scalars()
                              for v in (row.action, row.client))
    assert not any(g in everything for g in guesses) and tokens["lab"] not in everything  # never the token


# --- organisations and roles ----------------------------------------------------------------------------------

ROUTES = {  # name: (method, path template); {sid} an upload id, {jid} its job's id
    "list": ("GET", "/api/v1/samples"),
    "sample": ("GET", "/api/v1/samples/{sid}"),
    "job": ("GET", "/api/v1/jobs/{jid}"),
    "reports": ("GET", "/api/v1/samples/{sid}/reports"),
    "report": ("GET", "/api/v1/samples/{sid}/report"),
    "report-html": ("GET", "/api/v1/samples/{sid}/report?format=html"),
    "advice": ("GET", "/api/v1/samples/{sid}/advice?drug=clopidogrel"),
}
# the role matrix of docs/security.md: status for the token's own organisation's upload, and for another's
MATRIX = {
    "lab": {"list": (200, 200), "sample": (200, 404), "job": (200, 404), "reports": (403, 403),
            "report": (403, 403), "report-html": (403, 403), "advice": (403, 403)},
    "clinician": {"list": (200, 200), "sample": (200, 404), "job": (200, 404), "reports": (200, 404),
                  "report": (200, 404), "report-html": (200, 404), "advice": (200, 404)},
    "admin": {name: (200, 200) for name in ROUTES},
}


@pytest.fixture()
def two_sites(tmp_path, database_url):
    """Organisations A and B, each with a lab and a clinician token and one finished upload; an admin."""
    data = tmp_path / "data"
    app = create_app(Settings(data_dir=data, database=database_url))
    store = app.state.store
    tokens = {(role, org): create_token(store, role, organisation=org)[1]
              for role in ("lab", "clinician") for org in ("A", "B")}
    tokens[("admin", None)] = create_token(store, "admin")[1]
    client = TestClient(app)
    uploads = {}
    for org, meds in (("A", "clopidogrel"), ("B", "clopidogrel,codeine")):
        r = client.post("/api/v1/samples", content=example_text().encode(),
                        headers={**_auth(tokens[("lab", org)]), "X-Filename": f"{org}.vcf", "X-Medications": meds})
        assert r.status_code == 201, r.text  # the same VCF in both: one file on disk, two uploads
        uploads[org] = r.json()
    assert run_worker(store, data, once=True) == 2
    return client, store, tokens, uploads


def test_role_matrix_every_cell(two_sites):
    """Before: any token, another site's lab token too, read every patient."""
    client, store, tokens, uploads = two_sites
    missing = client.get("/api/v1/samples/999", headers=_auth(tokens[("clinician", "A")])).json()
    for role in ("lab", "clinician", "admin"):
        org = "A" if role != "admin" else None
        headers = _auth(tokens[(role, org)])
        for which, upload in (("own", uploads["A"]), ("other", uploads["B"])):
            for name, (method, path) in ROUTES.items():
                url = path.format(sid=upload["id"], jid=upload["job"]["id"])
                r = client.request(method, url, headers=headers)
                expected = MATRIX[role][name][0 if which == "own" else 1]
                assert r.status_code == expected, (role, which, name, r.status_code, r.text[:200])
                if name == "list":
                    listed = {x["id"] for x in r.json()}
                    assert listed == ({uploads["A"]["id"], uploads["B"]["id"]} if role == "admin"
                                      else {uploads["A"]["id"]}), (role, listed)
                    assert r.headers["x-total-count"] == str(len(listed))
                if expected == 404 and name != "job":  # another's upload looks exactly like a missing one
                    assert r.json() == missing, (role, name)
    # uploading and token management
    body = example_text().encode()
    for role, org, code in (("lab", "A", 200), ("clinician", "A", 403), ("admin", None, 201)):
        r = client.post("/api/v1/samples", content=body, headers={**_auth(tokens[(role, org)]),
                                                                   "X-Medications": "clopidogrel"})
        assert r.status_code == code, (role, r.text)
    for role, org in (("lab", "A"), ("clinician", "A")):
        assert client.get("/api/v1/tokens", headers=_auth(tokens[(role, org)])).status_code == 403
        assert client.post("/api/v1/tokens", json={"role": "admin"}, headers=_auth(tokens[(role, org)])
                           ).status_code == 403
    assert client.get("/api/v1/tokens", headers=_auth(tokens[("admin", None)])).status_code == 200
    # re-running a job (last: it deletes the results): any role, own organisation only
    job_a, job_b = uploads["A"]["job"]["id"], uploads["B"]["job"]["id"]
    for role, org, job, code in (("lab", "A", job_b, 404), ("clinician", "A", job_b, 404), ("lab", "A", job_a, 200),
                                 ("clinician", "A", job_a, 409), ("admin", None, job_b, 200)):
        r = client.post(f"/api/v1/jobs/{job}/rerun", headers=_auth(tokens[(role, org)]))
        assert r.status_code == code, (role, job, r.text)  # 409: queued again already by the lab


def test_another_organisations_rows_are_404s_and_audited(two_sites):
    client, store, tokens, uploads = two_sites
    reader_b = _auth(tokens[("clinician", "B")])
    own = client.get(f"/api/v1/samples/{uploads['A']['id']}/report", headers=_auth(tokens[("clinician", "A")]))
    assert own.status_code == 200  # now the report is answered from memory ...
    for path in (f"/api/v1/samples/{uploads['A']['id']}/report", f"/api/v1/samples/{uploads['A']['id']}",
                 f"/api/v1/jobs/{uploads['A']['job']['id']}"):
        assert client.get(path, headers=reader_b).status_code == 404  # ... and still refused to B
    r = client.get("/api/v1/samples", params={"q": "A.vcf"}, headers=reader_b)
    assert r.json() == [] and r.headers["x-total-count"] == "0"
    with store.session() as s:
        b_id = s.scalars(select(ApiToken.id).where(ApiToken.token_hash == hashlib.sha256(
            tokens[("clinician", "B")].encode()).hexdigest())).one()
        rows = s.execute(select(AuditEvent.action, AuditEvent.upload_id, AuditEvent.client)
                         .where(AuditEvent.token_id == b_id)).all()
    assert ("refused-404 GET /api/v1/samples/{}/report".format(uploads["A"]["id"]), uploads["A"]["id"],
            "testclient") in rows
    assert ("refused-404 GET /api/v1/jobs/{}".format(uploads["A"]["job"]["id"]), uploads["A"]["id"],
            "testclient") in rows
    assert ("list:0", None, "testclient") in rows  # listings are audited too


def test_the_same_upload_in_two_organisations_is_two_uploads(two_sites):
    client, store, tokens, uploads = two_sites
    assert uploads["A"]["sha256"] == uploads["B"]["sha256"] and uploads["A"]["id"] != uploads["B"]["id"]
    r = client.post("/api/v1/samples", content=example_text().encode(),
                    headers={**_auth(tokens[("lab", "B")]), "X-Medications": "clopidogrel"})
    assert r.status_code == 201 and r.json()["id"] not in (uploads["A"]["id"], uploads["B"]["id"])  # not A's


def test_tokens_created_through_the_api_name_their_organisation_and_expire(service):
    app, store, tokens, _ = service
    client = TestClient(app)
    admin = _auth(tokens["admin"])
    r = client.post("/api/v1/tokens", json={"role": "clinician", "name": "ward 3", "organisation": "Site B"},
                    headers=admin)
    assert r.status_code == 201 and r.json()["organisation"] == "Site B"
    assert r.json()["expires_at"] is not None  # the server's default (90 days)
    me = client.get("/api/v1/me", headers=_auth(r.json()["token"])).json()
    assert me["organisation"] == "Site B" and me["role"] == "clinician"
    r = client.post("/api/v1/tokens", json={"role": "admin", "organisation": "Site B"}, headers=admin)
    assert r.status_code == 422 and "across organisations" in r.json()["detail"]
    forever = client.post("/api/v1/tokens", json={"role": "lab", "expires_days": 0}, headers=admin).json()
    assert forever["expires_at"] is None and forever["organisation"] == "default"
    listed = {x["id"]: x for x in client.get("/api/v1/tokens", headers=admin).json()}
    assert listed[forever["id"]]["organisation"] == "default" and "token" not in listed[forever["id"]]


def test_expired_tokens_are_refused_and_audited(service):
    """Before: tokens never expired."""
    app, store, tokens, data = service
    row, token = create_token(store, "clinician", expires_days=1)
    client = TestClient(app)
    assert client.get("/api/v1/samples", headers=_auth(token)).status_code == 200
    with store.session() as s:
        s.execute(update(ApiToken).where(ApiToken.id == row.id).values(expires_at=ApiToken.created_at))
    app2 = create_app(Settings(data_dir=data))  # a server that has not seen the token valid (no cache)
    r = TestClient(app2).get("/api/v1/samples", headers=_auth(token))
    assert r.status_code == 401 and r.json()["detail"] == "this API token is expired"
    with store.session() as s:
        assert ("refused-401 GET /api/v1/samples (expired token)", row.id) in s.execute(
            select(AuditEvent.action, AuditEvent.token_id)).all()


def test_security_headers_and_no_api_docs_by_default(service, tmp_path):
    app, _, tokens, _ = service
    client = TestClient(app)
    for r in (client.get("/api/v1/samples", headers=_auth(tokens["lab"])), client.get("/api/v1/samples"),
              client.get("/api/v1/samples/7", headers=_auth(tokens["lab"])), client.get("/api/v1/health"),
              client.get("/openapi.json")):
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-store"
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    with_docs = TestClient(create_app(Settings(data_dir=tmp_path / "docs", api_docs=True)))
    assert with_docs.get("/docs").status_code == 200 and with_docs.get("/redoc").status_code == 200


# --- the command line ----------------------------------------------------------------------------------------


def test_token_and_audit_commands(tmp_path):
    d = tmp_path / "d"
    lab = cli("token", "create", "--role", "lab", "--organisation", "Site A", "--expires-days", "30",
              "--data-dir", d)
    assert lab.returncode == 0 and "expires" in lab.stderr, lab.stderr
    admin = cli("token", "create", "--role", "admin", "--expires-days", "0", "--data-dir", d)
    assert admin.returncode == 0 and "never expires" in admin.stderr
    bad = cli("token", "create", "--role", "admin", "--organisation", "Site A", "--data-dir", d)
    assert bad.returncode == 64 and bad.stderr.count("\n") == 1 and "across organisations" in bad.stderr
    listed = cli("token", "list", "--data-dir", d)
    lines = [x.split("\t") for x in listed.stdout.splitlines()]
    assert lines[0] == ["id", "role", "name", "organisation", "created", "expires", "state"]
    assert [(x[0], x[1], x[3], x[6]) for x in lines[1:]] == [("1", "lab", "Site A", "valid"),
                                                            ("2", "admin", "(all)", "valid")]
    assert lines[2][5] == "never" and lab.stdout.strip() not in listed.stdout
    assert cli("token", "revoke", "1", "--data-dir", d).returncode == 0
    assert cli("token", "list", "--data-dir", d).stdout.splitlines()[1].endswith("\trevoked")
    missing = cli("token", "revoke", "99", "--data-dir", d)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no token with id 99" in missing.stderr
    app = create_app(Settings(data_dir=d))
    r = TestClient(app).get("/api/v1/samples", headers=_auth(lab.stdout.strip()))
    assert r.status_code == 401 and r.json()["detail"] == "this API token is revoked"

    out = cli("audit", "export", "--data-dir", d)
    events = [json.loads(x) for x in out.stdout.splitlines()]
    assert [e["action"] for e in events] == ["token-create:lab:1", "token-create:admin:2",
                                             "token-revoke:1 (command line)",
                                             "refused-401 GET /api/v1/samples (revoked token)"]
    assert events[-1]["token_id"] == 1 and events[-1]["client"] == "testclient" and events[-1]["token_name"] == "lab"
    csv_out = cli("audit", "export", "--format", "csv", "--since", "2000-01-01", "--data-dir", d).stdout
    assert csv_out.splitlines()[0] == "id,at,token_id,token_name,action,sample_id,client"
    assert len(csv_out.splitlines()) == 5
    assert cli("audit", "export", "--since", "2999-01-01", "--data-dir", d).stdout == ""
    target = tmp_path / "audit.jsonl"
    assert cli("audit", "export", "-o", target, "--data-dir", d).returncode == 0
    assert len(target.read_text().splitlines()) == 4
    for args, code, words in ((("--since", "last week"), 64, "--since"), (("--format", "xml"), 64, "--format")):
        r = cli("audit", "export", *args, "--data-dir", d)
        assert r.returncode == code and r.stderr.count("\n") == 1 and words in r.stderr, r.stderr


# --- against a real `permed serve` on loopback ---------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("served") / "data"
    lab = cli("token", "create", "--role", "lab", "--data-dir", data).stdout.strip()
    args = ("--header-timeout", 2, "--keep-alive", 1, "--max-connections-per-client", 20, "--max-upload-mb", 1,
            "--auth-failures", 5)
    with Served(data, args=args) as server:
        yield server, lab, data


def _connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _rss(server) -> int:
    import psutil

    return psutil.Process(server.proc.pid).memory_info().rss


def test_served_anonymous_huge_body_gets_401_and_the_connection_closed(served):
    server, _, _ = served
    before = _rss(server)
    with _connect(server) as sock:
        sock.sendall(b"POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1500000000\r\n\r\n" + b"[" * 65536)
        answer = _read_all(sock)  # the server answers and closes without waiting for the 1.5 GB
    assert answer.startswith(b"HTTP/1.1 401") and b"connection: close" in answer.lower()
    assert _rss(server) - before < 20 * 1024**2


def test_served_upload_declared_over_the_limit_is_refused_before_reading(served):
    server, lab, data = served
    with _connect(server) as sock:
        sock.sendall(b"POST /api/v1/samples HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + lab.encode()
                     + b"\r\nContent-Length: 3000000000\r\n\r\n" + b"#" * 65536)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower()
    assert not list((data / "uploads").glob(".upload-*"))


def test_served_oversized_headers_are_refused(served):
    server, _, _ = served
    with _connect(server) as sock:  # one 64 KiB header: refused with 431 once it is read
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 65536 + b"\r\n\r\n")
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    before = _rss(server)
    with _connect(server) as sock:  # 10 MB of header: the server stops reading and closes
        try:
            for _ in range(160):
                sock.sendall(b"X-Big: " + b"b" * 65536 + b"\r\n")
            closed_early = False
        except (BrokenPipeError, ConnectionResetError):
            closed_early = True
        answer = b"" if closed_early else _read_all(sock)
    assert closed_early or not answer.startswith(b"HTTP/1.1 200")
    assert _rss(server) - before < 20 * 1024**2
    assert httpx.get(f"{server.api}/health").status_code == 200


def test_served_half_sent_requests_time_out(served):
    """Before: ~20,000 half-sent requests were kept open until the file descriptors ran out."""
    server, _, _ = served
    socks = [_connect(server) for _ in range(10)]
    try:
        t0 = time.monotonic()
        for sock in socks:
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")  # never finished
        for sock in socks:
            assert _read_all(sock) == b""  # closed by the server (the socket timeout would raise)
        assert time.monotonic() - t0 < 8  # --header-timeout 2
        idle = _connect(server)  # a connection that sends nothing at all
        assert _read_all(idle) == b""
        idle.close()
    finally:
        for sock in socks:
            sock.close()


def test_served_keep_alive_connections_are_closed_when_idle(served):
    server, _, _ = served
    with _connect(server) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b"}"):  # the whole answer (a JSON object), in however many packets
            first += sock.recv(65536)
        t0 = time.monotonic()
        assert first.startswith(b"HTTP/1.1 200") and _read_all(sock) == b""
        assert time.monotonic() - t0 < 4  # --keep-alive 1 (and --header-timeout 2 for the next request)


def test_served_connections_per_client_are_capped(served):
    import select as select_

    server, _, _ = served
    socks = [_connect(server) for _ in range(25)]
    try:
        time.sleep(0.5)  # lets the server accept them all (the assertions below do not depend on it)
        readable, _, _ = select_.select(socks, [], [], 1.0)
        closed = [s for s in readable if _read_all(s) == b""]
        assert len(closed) == 5, len(closed)  # --max-connections-per-client 20
    finally:
        for sock in socks:
            sock.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the server sees the closes: the address may connect again
        try:
            if httpx.get(f"{server.api}/health").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        raise AssertionError("the server did not accept connections again")


def test_served_failed_authentications_are_rate_limited(served):
    server, lab, data = served
    # X-Forwarded-For from an untrusted client changes nothing: no proxy is trusted unless configured
    codes = [httpx.get(f"{server.api}/samples", headers={**_auth(f"pmd_guess{i}"),
                                                           "X-Forwarded-For": f"203.0.113.{i}"}).status_code
             for i in range(6)]
    assert codes == [401] * 5 + [429]  # --auth-failures 5
    r = httpx.get(f"{server.api}/samples", headers=_auth(lab))
    assert r.status_code == 429 and int(r.headers["retry-after"]) <= 61
    with Store.in_data_dir(data).session() as s:
        rows = s.execute(select(AuditEvent.action, AuditEvent.client).where(
            AuditEvent.action.like("refused-4%"))).all()
    assert sum(a == "refused-401 GET /api/v1/samples (unknown token)" for a, _ in rows) == 5
    assert "refused-401 POST /api/v1/tokens (missing token)" in {a for a, _ in rows}  # the anonymous body above
    assert {c for _, c in rows} == {"127.0.0.1"}


def test_served_files_are_private_under_umask_022(tmp_path):
    """Before: under umask 022 the indexed genome copies, results and the SQLite database were 0644."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)  # as an earlier version or an operator left it
    env = dict(os.environ)
    made = subprocess.run([sys.executable, "-m", "permed", "token", "create", "--role", "clinician",
                           "--data-dir", str(data)], capture_output=True, text=True, umask=0o022, env=env)
    assert made.returncode == 0, made.stderr
    clinician = made.stdout.strip()
    admin = subprocess.run([sys.executable, "-m", "permed", "token", "create", "--role", "admin",
                            "--data-dir", str(data)], capture_output=True, text=True, umask=0o022).stdout.strip()
    with Served(data, umask=0o022) as server:
        r = httpx.post(f"{server.api}/samples", content=example_text().encode(),
                       headers={**_auth(admin), "X-Filename": "p.vcf", "X-Medications": "clopidogrel"})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            state = httpx.get(f"{server.api}/samples/{sid}", headers=_auth(clinician)).json()["job"]["state"]
            if state in ("done", "failed"):
                break
            time.sleep(0.3)
        assert state == "done"
        pdf = httpx.get(f"{server.api}/samples/{sid}/report", params={"format": "pdf"}, headers=_auth(clinician),
                        timeout=120)
        assert pdf.status_code == 200
        loose = []
        for root, dirs, files in os.walk(data):
            for name in dirs:
                if stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) != 0o700:
                    loose.append(os.path.join(root, name))
            for name in files:
                if stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) & 0o077:
                    loose.append(os.path.join(root, name))
        kinds = {p.relative_to(data).parts[0] for p in data.rglob("*") if p.is_file()}
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert {"uploads", "indexed", "results", "permed.sqlite", "permed.sqlite-wal"} <= kinds, kinds
    assert list(data.glob("results/*/*.pdf"))
    assert loose == [], loose


def test_an_unusable_data_directory_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    r = cli("serve", "--data-dir", tmp_path / "file" / "data")
    assert r.returncode == 4 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "cannot use as the data directory (Not a directory)" in r.stderr
