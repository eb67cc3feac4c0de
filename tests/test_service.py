"""The service, first slice (issue 5): tokens stored hashed, roles, every route but health needs a
token, uploads streamed, size-limited, checked as VCF and idempotent by SHA-256, audit log."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient
from helpers import example_text, run_cli
from sqlalchemy import select

from permed.service.app import Settings, create_app
from permed.service.store import ApiToken, AuditEvent, Job, Sample
from permed.service.tokens import create_token, hash_token


@pytest.fixture()
def service(tmp_path):
    app = create_app(Settings(data_dir=tmp_path / "data", max_upload=200_000))
    store = app.state.store
    tokens = {role: create_token(store, role)[1] for role in ("lab", "clinician", "admin")}
    return TestClient(app), store, tokens, tmp_path / "data"


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_health_is_open_and_everything_else_needs_a_token(service):
    client, _, tokens, _ = service
    r = client.get("/api/v1/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    routes = [(path, m) for path, ops in spec["paths"].items() for m in ops]
    assert ("/api/v1/samples", "post") in routes
    for path, method in routes:
        if path == "/api/v1/health":
            continue
        url = path.replace("{sample_id}", "1")
        for headers in ({}, _auth("pmd_wrong"), {"Authorization": "Basic abc"}):
            r = client.request(method.upper(), url, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.headers.get("www-authenticate") == "Bearer"
    assert client.get("/api/v1/kb", headers=_auth(tokens["clinician"])).json()["genes"]


def test_tokens_are_stored_hashed(service):
    _, store, tokens, _ = service
    with store.session() as s:
        rows = list(s.scalars(select(ApiToken)))
    stored = {r.token_hash for r in rows}
    for token in tokens.values():
        assert token not in stored and hash_token(token) in stored
        assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()


def test_roles(service):
    client, _, tokens, _ = service
    body = example_text().encode()
    r = client.post("/api/v1/samples", content=body, headers=_auth(tokens["clinician"]))
    assert r.status_code == 403 and "lab" in r.json()["detail"]
    r = client.post("/api/v1/samples", content=body, headers={**_auth(tokens["lab"]), "X-Filename": "p.vcf"})
    assert r.status_code == 201, r.text


def test_upload_is_idempotent_and_audited(service):
    client, store, tokens, data = service
    body = example_text().encode()
    headers = {**_auth(tokens["lab"]), "X-Filename": "patient 1.vcf", "X-Medications": "clopidogrel"}
    first = client.post("/api/v1/samples", content=body, headers=headers)
    assert first.status_code == 201
    sample = first.json()
    assert sample["sha256"] == hashlib.sha256(body).hexdigest() and sample["job"]["state"] == "queued"
    again = client.post("/api/v1/samples", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == sample["id"]
    assert [p.name for p in (data / "uploads").iterdir()] == [f"{sample['sha256']}.vcf"]
    listed = client.get("/api/v1/samples", headers=_auth(tokens["clinician"])).json()
    assert [x["id"] for x in listed] == [sample["id"]]
    one = client.get(f"/api/v1/samples/{sample['id']}", headers=_auth(tokens["clinician"]))
    assert one.status_code == 200 and one.json()["filename"] == "patient 1.vcf"
    assert client.get("/api/v1/samples/999", headers=_auth(tokens["clinician"])).status_code == 404
    with store.session() as s:
        query = select(AuditEvent).where(AuditEvent.sample_id.is_not(None))
        events = [(e.action, e.sample_id) for e in s.scalars(query)]
        assert len(list(s.scalars(select(Job)))) == 1 and len(list(s.scalars(select(Sample)))) == 1
    assert events == [("upload", sample["id"]), ("upload-duplicate", sample["id"]), ("read", sample["id"])]


@pytest.mark.parametrize("body, code, message", [
    (b"", 400, "empty upload"),
    (b"not a vcf\n", 400, "not a VCF file"),
    (b"##fileformat=VCFv4.2\r\n#CHROM\tPOS\n", 400, "CRLF"),
    (b"#" * 250_000, 413, "larger than"),
])
def test_bad_uploads_leave_nothing(service, body, code, message):
    client, store, tokens, data = service
    r = client.post("/api/v1/samples", content=body, headers={**_auth(tokens["lab"]), "X-Filename": "bad.vcf"})
    assert r.status_code == code and message in r.json()["detail"], r.text
    assert str(data) not in r.json()["detail"]  # the client's file name, not server paths
    assert list((data / "uploads").iterdir()) == []
    with store.session() as s:
        assert list(s.scalars(select(Sample))) == []


def test_token_create_cli(tmp_path):
    r = run_cli("token", "create", "--role", "clinician", "--data-dir", tmp_path / "d")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("pmd_") and token not in (tmp_path / "d" / "permed.sqlite").read_bytes().decode(
        "latin-1")
    bad = run_cli("token", "create", "--role", "doctor", "--data-dir", tmp_path / "d")
    assert bad.returncode == 2 and "--role: 'doctor' is not one of lab, clinician, admin" in bad.stderr
