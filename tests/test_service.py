"""The service's API, store and workers (issue 5), on SQLite and PostgreSQL: tokens stored hashed, roles,
every route but health needs a token, uploads (raw and multipart) streamed, size-limited, checked and
idempotent, jobs that survive restarts and kill -9, reports and advice, audit log, logs without
patient data."""

from __future__ import annotations

import hashlib
import re

import pytest
from fastapi.testclient import TestClient
from helpers import Served, check_report, cli, example_text, slow_jobs_env, two_patient_text
from sqlalchemy import select

from permed.service.app import Settings, create_app
from permed.service.limits import Limits
from permed.service.store import ApiToken, AuditEvent, Job, Upload
from permed.service.tokens import create_token, hash_token


@pytest.fixture()
def service(tmp_path, database_url):
    # failed authentications are not rate-limited here (tests/test_service_security.py tests the limit)
    app = create_app(Settings(data_dir=tmp_path / "data", database=database_url, max_upload=200_000,
                              limits=Limits(auth_failures=0)))
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
        url = re.sub(r"\{[^}]+\}", "1", path)
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
        query = select(AuditEvent).where(AuditEvent.upload_id.is_not(None))
        events = [(e.action, e.upload_id) for e in s.scalars(query)]
        assert len(list(s.scalars(select(Job)))) == 1 and len(list(s.scalars(select(Upload)))) == 1
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
        assert list(s.scalars(select(Upload))) == []


def test_token_create_cli(tmp_path):
    r = cli("token", "create", "--role", "clinician", "--data-dir", tmp_path / "d")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("pmd_") and token not in (tmp_path / "d" / "permed.sqlite").read_bytes().decode(
        "latin-1")
    bad = cli("token", "create", "--role", "doctor", "--data-dir", tmp_path / "d")
    assert bad.returncode == 64 and "--role: 'doctor' is not one of lab, clinician, admin" in bad.stderr


def _upload_example(client, tokens, meds: str | None = "clopidogrel") -> dict:
    headers = {**_auth(tokens["lab"]), "X-Filename": "example.vcf"}
    if meds:
        headers["X-Medications"] = meds
    r = client.post("/api/v1/samples", content=example_text().encode(), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def test_worker_runs_the_job_then_reports_and_advice(service):
    from permed.service.worker import run_worker

    client, store, tokens, data = service
    sample = _upload_example(client, tokens)
    r = client.get(f"/api/v1/samples/{sample['id']}/report", headers=_auth(tokens["clinician"]))
    assert r.status_code == 409 and "queued" in r.json()["detail"]
    queued = client.get(f"/api/v1/jobs/{sample['job']['id']}", headers=_auth(tokens["clinician"])).json()
    assert queued["state"] == "queued" and queued["sample_id"] == sample["id"]
    assert run_worker(store, data, once=True) == 1
    job = client.get(f"/api/v1/samples/{sample['id']}", headers=_auth(tokens["clinician"])).json()["job"]
    assert job["state"] == "done" and job["attempts"] == 1
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=_auth(tokens["lab"])).json()["state"] == "done"
    assert client.get("/api/v1/jobs/999", headers=_auth(tokens["lab"])).status_code == 404
    rep = client.get(f"/api/v1/samples/{sample['id']}/report", headers=_auth(tokens["clinician"])).json()
    check_report(rep)
    assert rep["schema"] == "permed.report/1"
    assert rep["genes"]["CYP2C19"]["source_diplotypes"] == ["*2/*17"]
    assert rep["medications"]["recognised"] == {"clopidogrel": "clopidogrel"}  # X-Medications reached the job
    # the job read an indexed copy (windows around definition positions) ...
    assert (data / "indexed" / f"{sample['sha256']}.vcf.gz.csi").is_file()
    # ... and the report names the uploaded file and its hash, not the server's stored copy
    assert rep["inputs"] == [{"file": "example.vcf", "sha256": sample["sha256"], "notices": []}]
    assert set(rep["gene_sources"].values()) == {"example.vcf"}
    html = client.get(f"/api/v1/samples/{sample['id']}/report?format=html", headers=_auth(tokens["clinician"]))
    assert html.status_code == 200 and 'id="actionable"' in html.text and "example.vcf" in html.text
    assert sample["sha256"] + "." not in html.text
    pdf = client.get(f"/api/v1/samples/{sample['id']}/report?format=pdf", headers=_auth(tokens["clinician"]))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and len(pdf.content) > 10_000
    assert not list(data.glob("results/*/.*.tmp"))  # rendered through a temporary file, then moved
    again = client.get(f"/api/v1/samples/{sample['id']}/report?format=pdf", headers=_auth(tokens["clinician"]))
    assert again.content == pdf.content  # kept, not rendered twice
    wrong = client.get(f"/api/v1/samples/{sample['id']}/report?format=docx", headers=_auth(tokens["clinician"]))
    assert wrong.status_code == 400 and "json, html or pdf" in wrong.json()["detail"]
    zh = client.get(f"/api/v1/samples/{sample['id']}/report?format=html&lang=zh", headers=_auth(tokens["clinician"]))
    assert zh.status_code == 200 and '<html lang="zh">' in zh.text and 'id="actionable"' in zh.text
    assert '<html lang="en">' in html.text
    xx = client.get(f"/api/v1/samples/{sample['id']}/report?format=html&lang=xx", headers=_auth(tokens["clinician"]))
    assert xx.status_code == 400 and "en, zh" in xx.json()["detail"]
    adv = client.get(f"/api/v1/samples/{sample['id']}/advice?drug=Clopidogrel", headers=_auth(tokens["clinician"]))
    assert adv.status_code == 200, adv.text
    body = adv.json()
    assert body["drug"] == "clopidogrel" and body["on_medication_list"] and body["actionable"]
    cpic = body["sources"]["CPIC"]
    assert cpic["matched"] and {r["action"] for r in cpic["recommendations"]} & {"alternative", "avoid"}
    by_rxnorm = client.get(f"/api/v1/samples/{sample['id']}/advice?drug={body['rxnorm']}",
                           headers=_auth(tokens["clinician"]))
    assert by_rxnorm.json()["drug"] == "clopidogrel"
    none = client.get(f"/api/v1/samples/{sample['id']}/advice?drug=water", headers=_auth(tokens["clinician"]))
    assert none.status_code == 404 and "water" in none.json()["detail"]


def test_a_file_with_several_samples_has_one_report_each(service):
    from permed.service.worker import run_worker

    client, store, tokens, data = service
    reader = _auth(tokens["clinician"])
    r = client.post("/api/v1/samples", content=two_patient_text().encode(),
                    headers={**_auth(tokens["lab"]), "X-Filename": "two.vcf"})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert client.get(f"/api/v1/samples/{sid}/reports", headers=reader).status_code == 409  # not run yet
    assert run_worker(store, data, once=True) == 1
    listed = client.get(f"/api/v1/samples/{sid}/reports", headers=reader)
    assert listed.status_code == 200 and listed.json() == {"sample_id": sid, "samples": ["PAT-A", "PAT-B"]}
    ambiguous = client.get(f"/api/v1/samples/{sid}/report", headers=reader)
    assert ambiguous.status_code == 409 and "?sample=NAME" in ambiguous.json()["detail"]
    a = client.get(f"/api/v1/samples/{sid}/report?sample=PAT-A", headers=reader).json()
    b = client.get(f"/api/v1/samples/{sid}/report?sample=PAT-B", headers=reader).json()
    assert (a["sample"], b["sample"]) == ("PAT-A", "PAT-B")
    assert a["genes"]["CYP2C19"]["source_diplotypes"] == ["*2/*17"]
    assert b["genes"]["CYP2C19"]["source_diplotypes"] == ["*38/*38"]  # *38: the GRCh38 reference allele
    html = client.get(f"/api/v1/samples/{sid}/report?sample=PAT-B&format=html", headers=reader)
    assert html.status_code == 200 and "PAT-B" in html.text and "PAT-A" not in html.text
    adv_a = client.get(f"/api/v1/samples/{sid}/advice?drug=clopidogrel&sample=PAT-A", headers=reader).json()
    adv_b = client.get(f"/api/v1/samples/{sid}/advice?drug=clopidogrel&sample=PAT-B", headers=reader).json()
    assert (adv_a["sample"], adv_a["actionable"]) == ("PAT-A", True)
    assert (adv_b["sample"], adv_b["actionable"]) == ("PAT-B", False)
    missing = client.get(f"/api/v1/samples/{sid}/report?sample=PAT-C", headers=reader)
    assert missing.status_code == 404 and "no report for that sample name" in missing.json()["detail"]
    assert client.get("/api/v1/samples/999/reports", headers=reader).status_code == 404
    with store.session() as s:
        actions = set(s.scalars(select(AuditEvent.action).where(AuditEvent.upload_id == sid)))
    assert {"reports", "report-json", "report-html", "advice"} <= actions


def test_queued_jobs_survive_a_restart(tmp_path, database_url):
    from permed.service.worker import run_worker

    data = tmp_path / "data"
    app = create_app(Settings(data_dir=data, database=database_url))
    lab = create_token(app.state.store, "lab")[1]
    sample = _upload_example(TestClient(app), {"lab": lab})
    del app
    again = create_app(Settings(data_dir=data, database=database_url))  # a new server on the same store
    store = again.state.store
    with store.session() as s:
        assert [j.state for j in s.scalars(select(Job))] == ["queued"]
    assert run_worker(store, data, once=True) == 1
    reader = create_token(store, "clinician")[1]
    r = TestClient(again).get(f"/api/v1/samples/{sample['id']}/report", headers=_auth(reader))
    assert r.status_code == 200


def test_killed_worker_job_is_retried_never_half_served(tmp_path, database_url):
    import os
    import signal
    import subprocess
    import sys
    import time

    from permed.service.worker import MAX_ATTEMPTS, run_worker

    data = tmp_path / "data"
    app = create_app(Settings(data_dir=data, database=database_url))
    store = app.state.store
    tokens = {r: create_token(store, r)[1] for r in ("lab", "clinician")}
    client = TestClient(app)
    sample = _upload_example(client, tokens)
    db = ["--database", database_url] if database_url else []
    worker = subprocess.Popen([sys.executable, "-m", "permed", "worker", "--data-dir", str(data), *db],
                              env=slow_jobs_env(30))
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with store.session() as s:
                job = s.scalars(select(Job)).first()
                if job.state == "running":
                    claimed_beat = job.heartbeat_at
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("the worker never took the job")
        while time.time() < deadline:  # the running worker shows it is alive
            with store.session() as s:
                if s.scalars(select(Job)).first().heartbeat_at > claimed_beat:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("no heartbeat from the running worker")
        os.kill(worker.pid, signal.SIGKILL)  # mid-job
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    r = client.get(f"/api/v1/samples/{sample['id']}/report", headers=_auth(tokens["clinician"]))
    assert r.status_code == 409 and "running" in r.json()["detail"]  # nothing half-written is served
    assert not list(data.glob("results/*/*.report.*"))
    from permed.service.worker import recover

    assert recover(store) == 0  # its heartbeat is recent: it could be a live worker's job, left alone
    # once the lease has run out (lease=0: as if it had), a worker re-queues the orphan and finishes it
    assert run_worker(store, data, once=True, lease=0) == 1
    job = client.get(f"/api/v1/samples/{sample['id']}", headers=_auth(tokens["clinician"])).json()["job"]
    assert job["state"] == "done" and job["attempts"] == 2
    # a job that keeps killing its worker ends as failed, not retried for ever
    with store.session() as s:
        j = s.scalars(select(Job)).first()
        j.state, j.attempts = "running", MAX_ATTEMPTS
    assert recover(store, lease=0) == 1
    assert client.get(f"/api/v1/samples/{sample['id']}",
                      headers=_auth(tokens["clinician"])).json()["job"]["state"] == "failed"


def test_permed_serve_end_to_end(tmp_path, database_url):
    """The real server: `permed serve` with its supervised worker; the worker is killed with -9 once
    and restarted by the server, and the job still completes. Its log names no patient data."""
    import os
    import signal
    import time

    import httpx
    import psutil

    data = tmp_path / "data"
    db = ["--database", database_url] if database_url else []
    lab = cli("token", "create", "--role", "lab", "--data-dir", data, *db).stdout.strip()
    clinician = cli("token", "create", "--role", "clinician", "--data-dir", data, *db).stdout.strip()
    # a short lease: the killed worker's job is queued again after 3 s without its heartbeat (default 10)
    # one worker (the default is two): the test kills the one running the job
    with Served(data, database_url, env=slow_jobs_env(3), args=("--job-lease", 3, "--job-workers", 1)) as server:
        base = server.api
        r = httpx.post(f"{base}/samples", content=example_text().encode(),
                       headers={**_auth(lab), "X-Filename": "example.vcf", "X-Medications": "clopidogrel"})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]

        def state() -> str:
            return httpx.get(f"{base}/samples/{sid}", headers=_auth(clinician)).json()["job"]["state"]

        deadline = time.time() + 60
        while state() != "running" and time.time() < deadline:
            time.sleep(0.2)
        workers = [p for p in psutil.Process(server.proc.pid).children() if "worker" in " ".join(p.cmdline())]
        assert len(workers) == 1
        os.kill(workers[0].pid, signal.SIGKILL)
        deadline = time.time() + 120
        while state() != "done" and time.time() < deadline:
            time.sleep(0.5)
        assert state() == "done"
        job = httpx.get(f"{base}/samples/{sid}", headers=_auth(clinician)).json()["job"]
        assert job["attempts"] == 2
        adv = httpx.get(f"{base}/samples/{sid}/advice", params={"drug": "clopidogrel"}, headers=_auth(clinician))
        assert adv.status_code == 200 and adv.json()["sources"]["CPIC"]["matched"]
        rep = httpx.get(f"{base}/samples/{sid}/report", params={"sample": "EXAMPLE-PATIENT"},
                        headers=_auth(clinician))
        assert rep.status_code == 200
        children = psutil.Process(server.proc.pid).children()
        assert children  # the restarted worker
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive  # stopping the server stops its worker
    log = server.log.read_text()
    assert f"GET /api/v1/samples/{sid}/advice 200" in log  # requests are logged ...
    for secret in ("EXAMPLE-PATIENT", "example.vcf", "clopidogrel", lab, clinician, "*2/*17", "0|1"):
        assert secret not in log, secret  # ... without sample names, file names, drugs, tokens or genotypes


def test_admin_manages_tokens(service):
    client, store, tokens, _ = service
    r = client.post("/api/v1/tokens", json={"role": "clinician", "name": "ward 3"}, headers=_auth(tokens["lab"]))
    assert r.status_code == 403
    r = client.post("/api/v1/tokens", json={"role": "doctor"}, headers=_auth(tokens["admin"]))
    assert r.status_code == 422
    r = client.post("/api/v1/tokens", json={"role": "clinician", "name": "ward 3"}, headers=_auth(tokens["admin"]))
    assert r.status_code == 201
    new = r.json()
    assert client.get("/api/v1/samples", headers=_auth(new["token"])).status_code == 200
    listed = client.get("/api/v1/tokens", headers=_auth(tokens["admin"])).json()
    assert {"id": new["id"], "role": "clinician", "name": "ward 3", "revoked": False} in [
        {k: x[k] for k in ("id", "role", "name", "revoked")} for x in listed]
    assert all("token" not in x and "token_hash" not in x for x in listed)
    assert client.delete(f"/api/v1/tokens/{new['id']}", headers=_auth(tokens["admin"])).json()["revoked"]
    missing = client.delete("/api/v1/tokens/999", headers=_auth(tokens["admin"]))
    assert missing.status_code == 404 and missing.json()["detail"] == "no such token"
    assert client.get("/api/v1/samples", headers=_auth(new["token"])).status_code == 401
    with store.session() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent))]
    assert f"token-create:clinician:{new['id']}" in actions and f"token-revoke:{new['id']}" in actions


def test_concurrent_identical_uploads_make_one_sample(service):
    from concurrent.futures import ThreadPoolExecutor

    client, store, tokens, _ = service
    headers = {**_auth(tokens["lab"]), "X-Filename": "same.vcf"}
    body = example_text().encode()
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(lambda _: client.post("/api/v1/samples", content=body, headers=headers).status_code,
                                range(8)))
    assert set(codes) <= {200, 201} and codes.count(201) == 1, codes
    with store.session() as s:
        assert len(list(s.scalars(select(Upload)))) == 1 and len(list(s.scalars(select(Job)))) == 1


def test_multipart_upload_with_outside_calls_and_medications(service):
    from permed.service.worker import run_worker

    client, store, tokens, data = service
    vcf = example_text().encode()
    outside = "CYP2D6\t*1/*4\n# a comment\nHLA-B\t*57:01 positive\n"
    r = client.post("/api/v1/samples", headers=_auth(tokens["lab"]),
                    files={"vcf": ("patient 7.vcf", vcf, "text/plain"),
                           "outside_calls": ("calls.tsv", outside.encode(), "text/tab-separated-values")},
                    data={"medications": "codeine, clopidogrel"})
    assert r.status_code == 201, r.text
    sample = r.json()
    assert sample["filename"] == "patient 7.vcf" and sample["outside_calls"] is True
    assert sample["sha256"] == hashlib.sha256(vcf).hexdigest()  # the VCF's own hash, framing excluded
    # the same VCF with another medication list is another report; the VCF is stored once
    again = client.post("/api/v1/samples", headers=_auth(tokens["lab"]),
                        files={"vcf": ("patient 7.vcf", vcf)}, data={"medications": "simvastatin"})
    assert again.status_code == 201 and again.json()["id"] != sample["id"]
    assert len(list((data / "uploads").iterdir())) == 1
    same = client.post("/api/v1/samples", headers=_auth(tokens["lab"]),
                       files={"vcf": ("other name.vcf", vcf)}, data={"medications": "simvastatin"})
    assert same.status_code == 200 and same.json()["id"] == again.json()["id"]
    assert run_worker(store, data, once=True) == 2
    rep = client.get(f"/api/v1/samples/{sample['id']}/report", headers=_auth(tokens["clinician"])).json()
    assert rep["genes"]["CYP2D6"]["outside_call"] and rep["genes"]["CYP2D6"]["source_diplotypes"] == ["*1/*4"]
    assert rep["outside_calls"]["files"] == ["calls.tsv"]  # the uploaded name, no server path in the report
    assert set(rep["medications"]["recognised"]) == {"codeine", "clopidogrel"}
    codeine = client.get(f"/api/v1/samples/{sample['id']}/advice?drug=codeine", headers=_auth(tokens["clinician"]))
    assert codeine.json()["on_medication_list"]
    other = client.get(f"/api/v1/samples/{again.json()['id']}/report", headers=_auth(tokens["clinician"])).json()
    assert set(other["medications"]["recognised"]) == {"simvastatin"}
    assert not other["genes"]["CYP2D6"].get("outside_call")


@pytest.mark.parametrize("kwargs, code, message", [
    ({"files": {"outside_calls": ("c.tsv", b"CYP2D6\t*1/*4\n")}}, 400, "no 'vcf' file part"),
    ({"files": {"vcf": ("p.vcf", "VCF"), "photo": ("x.png", b"\x89PNG")}}, 400, "unknown form field 'photo'"),
    ({"files": {"vcf": ("p.vcf", "VCF"), "outside_calls": ("c.tsv", b"\t*1/*4\n")}}, 400, "names no gene"),
    ({"files": {"vcf": ("p.vcf", "VCF"), "outside_calls": ("c.tsv", b"\xff\xfe")}}, 400, "not UTF-8"),
    ({"files": {"vcf": ("p.vcf", b"")}}, 400, "empty upload"),
    ({"files": {"vcf": ("p.vcf", b"##fileformat=VCFv4.2\n")}}, 400, "p.vcf"),
    ({"content": b"--xyz\r\nnonsense", "headers": {"Content-Type": "multipart/form-data; boundary=xyz"}}, 400,
     "malformed multipart"),
    ({"content": b'--xyz\r\nContent-Disposition: form-data; name="vcf"; filename="p.vcf"\r\n\r\n##fileformat=VCFv4.2\n',
      "headers": {"Content-Type": "multipart/form-data; boundary=xyz"}}, 400, "closing boundary is missing"),
    ({"content": b"abc", "headers": {"Content-Type": "multipart/form-data"}}, 400, "without a boundary"),
])
def test_bad_multipart_uploads_leave_nothing(service, kwargs, code, message):
    client, store, tokens, data = service
    kwargs = dict(kwargs)
    files = {k: (v[0], example_text().encode() if v[1] == "VCF" else v[1]) for k, v in kwargs.pop("files", {}).items()}
    headers = {**_auth(tokens["lab"]), **kwargs.pop("headers", {})}
    r = client.post("/api/v1/samples", headers=headers, files=files or None, **kwargs)
    assert r.status_code == code and message in r.json()["detail"], r.text
    assert str(data) not in r.json()["detail"]
    assert list((data / "uploads").iterdir()) == []
    with store.session() as s:
        assert list(s.scalars(select(Upload))) == []


def test_every_concurrent_read_is_audited(service):
    """Reads are audited through a group-commit writer: 40 concurrent requests, 40 committed rows."""
    from concurrent.futures import ThreadPoolExecutor

    from permed.service.worker import run_worker

    client, store, tokens, data = service
    sid = _upload_example(client, tokens)["id"]
    assert run_worker(store, data, once=True) == 1
    urls = [f"/api/v1/samples/{sid}/advice?drug=clopidogrel", f"/api/v1/samples/{sid}/report"] * 20
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda u: client.get(u, headers=_auth(tokens["clinician"])).status_code, urls))
    assert codes == [200] * 40
    with store.session() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.upload_id == sid))]
    assert actions.count("advice") == 20 and actions.count("report-json") == 20


def test_a_file_the_engine_refuses_fails_its_job_with_the_reason(service):
    """Header checks pass at upload; a broken record found while calling fails the job with one line
    naming the client's file (never a server path), and no report is served."""
    from permed.service.worker import run_worker

    client, store, tokens, data = service
    lines = example_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    fields = lines[first].split("\t")
    fields[1] = "not-a-position"
    lines[first] = "\t".join(fields)
    r = client.post("/api/v1/samples", content="".join(lines).encode(),
                    headers={**_auth(tokens["lab"]), "X-Filename": "broken.vcf"})
    assert r.status_code == 201, r.text
    assert run_worker(store, data, once=True) == 1
    job = client.get(f"/api/v1/samples/{r.json()['id']}", headers=_auth(tokens["clinician"])).json()["job"]
    assert job["state"] == "failed" and job["attempts"] == 1, job
    assert "broken.vcf" in job["error"] and str(data) not in job["error"] and "\n" not in job["error"]
    rep = client.get(f"/api/v1/samples/{r.json()['id']}/report", headers=_auth(tokens["clinician"]))
    assert rep.status_code == 409 and "failed" in rep.json()["detail"]
    assert not list(data.glob("results/*/*.report.*"))


def test_an_internal_error_fails_the_job_without_leaking_data_to_the_log(service, monkeypatch, caplog):
    import permed.report.output as output
    from permed.service.worker import run_worker

    client, store, tokens, data = service
    sid = _upload_example(client, tokens)["id"]

    secret = "EXAMPLE-PATIENT *2/*17"  # (the traceback shows the raising line, so not written there)

    def broken(*args, **kwargs):
        raise KeyError(secret)  # a message quoting patient data

    monkeypatch.setattr(output, "write_outputs", broken)
    with caplog.at_level("ERROR", logger="permed.worker"):
        assert run_worker(store, data, once=True) == 1  # the worker survives and goes on
    job = client.get(f"/api/v1/samples/{sid}", headers=_auth(tokens["clinician"])).json()["job"]
    assert job["state"] == "failed" and "internal error (KeyError)" in job["error"]
    assert "EXAMPLE-PATIENT" not in job["error"]
    logged = caplog.text
    assert "KeyError" in logged and "broken" in logged  # where it happened ...
    assert "EXAMPLE-PATIENT" not in logged and "*2/*17" not in logged  # ... not what it said


def test_an_unhandled_error_is_a_plain_500_logged_without_its_message(service, caplog):
    client, _, tokens, _ = service
    app = client.app
    secret = "EXAMPLE-PATIENT 0|1"

    def boom():
        raise ValueError(secret)

    app.router.add_api_route("/api/v1/boom", boom)
    with caplog.at_level("INFO"):
        r = TestClient(app, raise_server_exceptions=False).get("/api/v1/boom", headers=_auth(tokens["lab"]))
    assert r.status_code == 500 and r.json() == {"detail": "internal server error"}
    assert "ValueError" in caplog.text and "boom" in caplog.text  # where it happened ...
    assert "EXAMPLE-PATIENT" not in caplog.text and "0|1" not in caplog.text  # ... not what it said
    assert "GET /api/v1/boom 500" in caplog.text


def test_parallel_workers_never_run_a_job_twice(service, database_url):
    """Two worker processes drain one queue: every job runs exactly once (atomic claim), on SQLite and
    on PostgreSQL. A gzip-compressed upload is among them."""
    import gzip
    import subprocess
    import sys

    client, store, tokens, data = service
    ids = [_upload_example(client, tokens, meds=m)["id"] for m in ("codeine", "clopidogrel", "simvastatin")]
    r = client.post("/api/v1/samples", headers=_auth(tokens["lab"]),
                    files={"vcf": ("patient.vcf.gz", gzip.compress(example_text().encode()))})
    assert r.status_code == 201, r.text
    ids.append(r.json()["id"])
    db = ["--database", database_url] if database_url else []
    cmd = [sys.executable, "-m", "permed", "worker", "--once", "--data-dir", str(data), *db]
    workers = [subprocess.Popen(cmd) for _ in range(2)]
    assert [w.wait(timeout=300) for w in workers] == [0, 0]
    jobs = [client.get(f"/api/v1/samples/{i}", headers=_auth(tokens["clinician"])).json()["job"] for i in ids]
    assert [(j["state"], j["attempts"]) for j in jobs] == [("done", 1)] * 4, jobs
    rep = client.get(f"/api/v1/samples/{ids[-1]}/report", headers=_auth(tokens["clinician"])).json()
    assert rep["genes"]["CYP2C19"]["source_diplotypes"] == ["*2/*17"]  # the gzip upload was read as VCF


def test_a_damaged_stored_result_is_a_409_naming_the_rerun_and_the_rerun_repairs(service):
    """Before: a truncated report was served with 200 and advice answered 500; a deleted file gave 500."""
    from permed.service.worker import run_worker

    client, store, tokens, data = service
    reader = _auth(tokens["clinician"])
    sample = _upload_example(client, tokens)
    sid, jid = sample["id"], sample["job"]["id"]
    assert run_worker(store, data, once=True) == 1
    assert client.get(f"/api/v1/samples/{sid}/report", headers=reader).status_code == 200  # now cached
    (report,) = data.glob(f"results/{sid}/*.report.json")
    intact = report.read_bytes()
    report.write_bytes(intact[: len(intact) // 2])  # truncated
    for url in (f"/api/v1/samples/{sid}/report", f"/api/v1/samples/{sid}/advice?drug=clopidogrel",
                f"/api/v1/samples/{sid}/reports"):
        r = client.get(url, headers=reader)
        assert r.status_code == 409, (url, r.status_code)
        assert r.json()["detail"] == f"stored result damaged, re-run the job: POST /api/v1/jobs/{jid}/rerun"
    report.write_bytes(intact)
    assert client.get(f"/api/v1/samples/{sid}/report", headers=reader).status_code == 200
    html = report.with_name(report.name.replace(".report.json", ".report.html"))
    html.unlink()  # deleted
    r = client.get(f"/api/v1/samples/{sid}/report?format=html", headers=reader)
    assert r.status_code == 409 and "re-run" in r.json()["detail"]
    assert client.get(f"/api/v1/samples/{sid}/report?format=pdf", headers=reader).status_code == 409
    other = create_token(store, "clinician", organisation="elsewhere")[1]
    assert client.post(f"/api/v1/jobs/{jid}/rerun", headers=_auth(other)).status_code == 404
    r = client.post(f"/api/v1/jobs/{jid}/rerun", headers=reader)
    assert r.status_code == 200 and r.json() == {"id": jid, "sample_id": sid, "state": "queued"}
    assert client.post(f"/api/v1/jobs/{jid}/rerun", headers=reader).status_code == 409  # queued already
    assert client.get(f"/api/v1/samples/{sid}/report", headers=reader).status_code == 409  # queued: no report
    assert run_worker(store, data, once=True) == 1
    assert client.get(f"/api/v1/samples/{sid}/report?format=html", headers=reader).status_code == 200
    with store.session() as s:
        assert f"job-rerun:{jid}" in s.scalars(select(AuditEvent.action)).all()


def test_fhir_route(service):
    """GET /samples/{id}/fhir: the stored report as a FHIR bundle (permed.report.fhir), for clinicians, audited;
    a patient linked for CDS Hooks is referred to by its EHR Patient id."""
    from fhir.resources.R4B.bundle import Bundle

    from permed.service.worker import run_worker

    client, store, tokens, data = service
    sid = _upload_example(client, tokens)["id"]
    assert run_worker(store, data, once=True) == 1
    url = f"/api/v1/samples/{sid}/fhir"
    assert client.get(url, headers=_auth(tokens["lab"])).status_code == 403
    r = client.get(url, headers=_auth(tokens["clinician"]))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/fhir+json"
    bundle = r.json()
    Bundle.model_validate(bundle)
    assert bundle["type"] == "transaction"
    assert any(e["resource"]["resourceType"] == "DiagnosticReport" for e in bundle["entry"])
    collection = client.get(url, params={"bundle": "collection", "sample": "EXAMPLE-PATIENT"},
                            headers=_auth(tokens["clinician"]))
    assert collection.status_code == 200 and collection.json()["type"] == "collection"
    assert client.get(url, params={"lang": "zh"}, headers=_auth(tokens["clinician"])).status_code == 200
    assert client.get(url, params={"bundle": "batch"}, headers=_auth(tokens["clinician"])).status_code == 400
    assert client.get(url, params={"lang": "xx"}, headers=_auth(tokens["clinician"])).status_code == 400
    assert client.get(url, params={"sample": "NOBODY"}, headers=_auth(tokens["clinician"])).status_code == 404
    linked = client.post(f"/api/v1/samples/{sid}/patient-link", json={"patient_id": "ehr-77"},
                         headers=_auth(tokens["lab"]))
    assert linked.status_code == 201
    again = client.get(url, params={"bundle": "collection"}, headers=_auth(tokens["clinician"])).json()
    subjects = {e["resource"]["subject"]["reference"] for e in again["entry"] if "subject" in e["resource"]}
    assert subjects == {"Patient/ehr-77"}
    with store.session() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.upload_id == sid)).all()
    assert actions.count("report-fhir") == 4


def test_uploads_take_cyp2d6_callers_output_per_patient(service):
    """A two-patient VCF with Cyrius' TSV: each patient gets its own row's CYP2D6 call; a StellarPGx report
    names its patient in the uploaded file's name; the format can be forced, and a wrong one is refused."""
    from helpers import two_patient_text
    from test_outside_call_formats import STELLAR_TEMPLATE

    from permed.service.worker import run_worker

    client, store, tokens, data = service
    vcf = two_patient_text().encode()
    cyrius = "Sample\tGenotype\tFilter\nPAT-A\t*1/*2x2\tPASS\nPAT-B\t*4/*5\tPASS\n"
    r = client.post("/api/v1/samples", headers=_auth(tokens["lab"]),
                    files={"vcf": ("two.vcf", vcf), "outside_calls": ("cyrius.tsv", cyrius.encode())})
    assert r.status_code == 201, r.text
    assert r.json()["outside_calls_format"] is None  # detected
    forced = client.post("/api/v1/samples", headers=_auth(tokens["lab"]),
                         files={"vcf": ("two.vcf", vcf), "outside_calls": ("cyrius.tsv", cyrius.encode())},
                         data={"outside_calls_format": "cyrius"})
    assert forced.status_code == 201 and forced.json()["id"] != r.json()["id"]  # another request
    assert forced.json()["outside_calls_format"] == "cyrius"
    stellar = STELLAR_TEMPLATE.format(cn=3, cand="1_1", result="*1/*1x2", score="3.0", status="UM")
    st = client.post("/api/v1/samples", headers=_auth(tokens["lab"]),
                     files={"vcf": ("two.vcf", vcf), "outside_calls": ("../PAT-B_2d6.alleles", stellar.encode())})
    assert st.status_code == 201, st.text
    for fmt, message in (("aldy", "cyrius.tsv"), ("vcf", "must be one of")):
        bad = client.post("/api/v1/samples", headers=_auth(tokens["lab"]),
                          files={"vcf": ("two.vcf", vcf), "outside_calls": ("cyrius.tsv", cyrius.encode())},
                          data={"outside_calls_format": fmt})
        assert bad.status_code == 400 and message in bad.json()["detail"], bad.text
    assert run_worker(store, data, once=True) == 3
    clinician = _auth(tokens["clinician"])

    def cyp2d6(upload_id: int, patient: str) -> dict:
        rep = client.get(f"/api/v1/samples/{upload_id}/report?sample={patient}", headers=clinician)
        assert rep.status_code == 200, rep.text
        return rep.json()["genes"]["CYP2D6"]

    for upload_id in (r.json()["id"], forced.json()["id"]):
        a, b = cyp2d6(upload_id, "PAT-A"), cyp2d6(upload_id, "PAT-B")
        assert a["source_diplotypes"] == ["*1/*2x2"] and a["phenotypes"] == ["Ultrarapid Metabolizer"]
        assert b["source_diplotypes"] == ["*4/*5"] and b["phenotypes"] == ["Poor Metabolizer"]
    a, b = cyp2d6(st.json()["id"], "PAT-A"), cyp2d6(st.json()["id"], "PAT-B")
    assert b["outside_call"] and b["phenotypes"] == ["Ultrarapid Metabolizer"]
    # the report names PAT-B only: PAT-A's CYP2D6 is not called, and says why
    assert a["status"] == "outside_call_unusable" and not a["called"] and a["phenotypes"] == ["No Result"]
    assert any("no CYP2D6 row for this sample" in m["text"] for m in a["messages"]), a["messages"]
    rep = client.get(f"/api/v1/samples/{st.json()['id']}/report?sample=PAT-B", headers=clinician).json()
    assert rep["outside_calls"]["files"] == ["PAT-B_2d6.alleles"]  # the uploaded name, without its folder
