"""Latency of the CDS Hooks services of `permed serve` under load: 200 concurrent EHR clients post
order-select requests for a stored patient.

Starts a real server on loopback with a fresh data directory, a JWK Set file and a CDS configuration
(through $PERMED_CDS_CONFIG, the equivalent of `--cds-config`), uploads the packaged example patient (with a
CYP2D6 *1/*1 outside call, so that codeine's advice depends on the medication list) as a lab, links it to a
FHIR Patient id and waits for its job. The clients then post order-select requests (aiohttp), a mix of
clopidogrel (a critical card), codeine alone (no card), codeine with paroxetine among the prefetched
medications (a phenoconverted card) and amoxicillin (no guideline: no card). Every request carries its own
JWT with a unique jti (signed before the clock starts: signing is the EHR's cost, and it would take the
server's cores). Prints requests, errors, throughput and p50/p95/p99/max latency, overall and per kind.

By default each client sends its next request as soon as the last is answered (closed loop: the machine is
saturated, and latency is then the queue of 200 requests). With --rate R the requests are sent at R per
second in all, spread over the 200 clients' connections, whatever the answers (open loop: what a prescriber
waits for at that load; latency counts from the planned send time, so a backlog shows).

    python benchmarks/bench_cds_hooks.py [--clients 200] [--requests 10] [--alg RS384] [--rate R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import httpx
import jwt
import psutil
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from permed.examples import example_vcf

ISSUER = "https://ehr.bench.example"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SERVICE = "permed-pgx-order-select"
DRUGS = {  # kind: (RxNorm code, display) of the drafted order
    "clopidogrel": ("309362", "clopidogrel 75 MG Oral Tablet"),
    "codeine": ("993781", "acetaminophen 300 MG / codeine phosphate 30 MG Oral Tablet"),
    "codeine+paroxetine": ("993781", "acetaminophen 300 MG / codeine phosphate 30 MG Oral Tablet"),
    "amoxicillin": ("308182", "amoxicillin 250 MG Oral Capsule"),
}
KINDS = list(DRUGS)


def _cli(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "permed", *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def _key(alg: str):
    if alg.startswith("RS"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    else:
        private = ec.generate_private_key(ec.SECP256R1() if alg == "ES256" else ec.SECP384R1())
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    return private, {"keys": [{**public, "kid": "bench-1", "use": "sig", "alg": alg}]}


def _body(kind: str) -> bytes:
    code, display = DRUGS[kind]
    order = {"resourceType": "MedicationRequest", "id": f"draft-{uuid.uuid4().hex[:8]}", "status": "draft",
             "intent": "order", "subject": {"reference": "Patient/bench-1"},
             "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code, "display": display}],
                                           "text": display}}
    active = []
    if kind == "codeine+paroxetine":
        active = [{"resourceType": "MedicationRequest", "id": "paroxetine-1", "status": "active", "intent": "order",
                   "subject": {"reference": "Patient/bench-1"},
                   "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1738503",
                                                             "display": "paroxetine 20 MG Oral Tablet"}]}}]
    body = {"hook": "order-select", "hookInstance": str(uuid.uuid4()), "fhirServer": "https://ehr.bench.example/fhir",
            "context": {"userId": "Practitioner/1", "patientId": "bench-1",
                        "selections": [f"MedicationRequest/{order['id']}"],
                        "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]}},
            "prefetch": {"medicationRequests": {"resourceType": "Bundle", "type": "searchset",
                                                "entry": [{"resource": m} for m in active]}}}
    return json.dumps(body).encode()


async def _client(session, url: str, jobs: list[tuple[str, bytes, str]], out: dict, errors: list,
                  start: float | None = None, every: float = 0.0) -> None:
    """Closed loop (`start` None): one request after another. Open loop: request i at start + i * every."""
    for i, (kind, body, token) in enumerate(jobs):
        t0 = time.perf_counter()
        if start is not None:
            t0 = start + i * every
            await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
        try:
            async with session.post(url, data=body, headers={"Authorization": f"Bearer {token}",
                                                             "Content-Type": "application/json"}) as r:
                answer = await r.read()
                if r.status != 200:
                    errors.append(f"{kind}: HTTP {r.status}")
                elif (kind in ("clopidogrel", "codeine+paroxetine")) != bool(json.loads(answer)["cards"]):
                    errors.append(f"{kind}: unexpected cards")
        except aiohttp.ClientError as exc:
            errors.append(f"{kind}: {type(exc).__name__}")
        out.setdefault(kind, []).append(time.perf_counter() - t0)


def _line(name: str, lat: list[float]) -> str:
    lat = sorted(lat)

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    return (f"  {name:20s} n={len(lat):5d}  p50 {statistics.median(lat) * 1000:6.1f} ms  p95 {q(0.95):6.1f} ms  "
            f"p99 {q(0.99):6.1f} ms  max {lat[-1] * 1000:6.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--requests", type=int, default=10, help="requests per client")
    ap.add_argument("--alg", default="RS384", choices=("RS256", "RS384", "ES256", "ES384"))
    ap.add_argument("--database", help="SQLAlchemy URL of an empty PostgreSQL database (default: SQLite)")
    ap.add_argument("--rate", type=float, help="open loop: requests per second in all (default: closed loop)")
    args = ap.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="permed-cds-bench-"))
    data = work / "data"
    private, jwks = _key(args.alg)
    (work / "ehr.jwks.json").write_text(json.dumps(jwks))
    (work / "cds.json").write_text(json.dumps({"audience": base, "issuers": [
        {"iss": ISSUER, "organisation": "bench", "jwks_file": "ehr.jwks.json", "origins": []}]}))
    db = ["--database", args.database] if args.database else []
    lab = _cli("token", "create", "--role", "lab", "--organisation", "bench", "--data-dir", str(data), *db)
    env = {**os.environ, "PERMED_CDS_CONFIG": str(work / "cds.json")}
    # the clients all connect from loopback: the per-address connection cap (default 100) is lifted
    server = subprocess.Popen([sys.executable, "-m", "permed", "serve", "--port", str(port), "--data-dir", str(data),
                               "--max-connections-per-client", "0", *db], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"{base}/api/v1"
    auth = {"Authorization": f"Bearer {lab}"}
    try:
        for _ in range(150):
            try:
                if httpx.get(f"{api}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        r = httpx.post(f"{api}/samples", headers=auth, files={
            "vcf": ("example.vcf", example_vcf().read_bytes()), "outside_calls": ("calls.tsv", b"CYP2D6\t*1/*1\n")})
        sid = r.json()["id"]
        while (job := httpx.get(f"{api}/samples/{sid}", headers=auth).json()["job"])["state"] != "done":
            if job["state"] == "failed":
                sys.exit(f"bench_cds_hooks: the example's job failed: {job['error']}")
            time.sleep(0.2)
        r = httpx.post(f"{api}/samples/{sid}/patient-link", json={"patient_id": "bench-1"}, headers=auth)
        assert r.status_code == 201, r.text

        def token() -> str:
            now = int(time.time())
            return jwt.encode({"iss": ISSUER, "aud": f"{base}/cds-services/{SERVICE}", "iat": now, "exp": now + 600,
                               "jti": str(uuid.uuid4())}, private, algorithm=args.alg,
                              headers={"kid": "bench-1", "typ": "JWT"})

        url = f"{base}/cds-services/{SERVICE}"
        first = {}
        for kind in KINDS:  # the first call of each kind: the patient is loaded, phenoconversion computed
            t0 = time.perf_counter()
            r = httpx.post(url, content=_body(kind), headers={"Authorization": f"Bearer {token()}",
                                                               "Content-Type": "application/json"})
            first[kind] = (time.perf_counter() - t0) * 1000
            assert r.status_code == 200, r.text
        plans = [[(kind := KINDS[(c + i) % len(KINDS)], _body(kind), token()) for i in range(args.requests)]
                 for c in range(args.clients)]
        out: dict[str, list[float]] = {}
        errors: list[str] = []
        proc = psutil.Process(server.pid)
        cpu0 = sum(proc.cpu_times()[:2])
        t0 = time.perf_counter()

        async def run() -> None:
            connector = aiohttp.TCPConnector(limit=0)  # one connection per client, like separate EHR sessions
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
                if args.rate:  # client c sends its i-th request at (i * clients + c) / rate
                    start, every = time.perf_counter() + 0.5, args.clients / args.rate
                    await asyncio.gather(*(_client(session, url, plan, out, errors, start + c / args.rate, every)
                                           for c, plan in enumerate(plans)))
                else:
                    await asyncio.gather(*(_client(session, url, plan, out, errors) for plan in plans))

        asyncio.run(run())
        wall = time.perf_counter() - t0
        server_cpu = sum(proc.cpu_times()[:2]) - cpu0
    finally:
        server.terminate()
        server.wait(timeout=30)
    total = sum(len(v) for v in out.values())
    store = "PostgreSQL" if args.database else "SQLite"
    loop = f"open loop at {args.rate:g} req/s" if args.rate else "closed loop"
    print(f"permed serve ({store}) CDS Hooks order-select on loopback, {os.cpu_count()} cores, {args.alg} JWTs, "
          f"{loop}: {args.clients} concurrent clients x {args.requests} requests = {total} requests in {wall:.2f} s "
          f"({total / wall:.0f} req/s), {len(errors)} errors; server CPU {server_cpu / total * 1000:.2f} ms per "
          "request (the clients share the same cores)")
    print("  first call of each kind (patient loaded, phenoconversion computed): "
          + ", ".join(f"{k} {v:.1f} ms" for k, v in first.items()))
    print(_line("all", [x for v in out.values() for x in v]))
    for name in KINDS:
        print(_line(name, out.get(name, [0.0])))
    if errors:
        print("  errors:", ", ".join(sorted(set(errors))))


if __name__ == "__main__":
    main()
