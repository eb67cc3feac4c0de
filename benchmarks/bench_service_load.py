"""Load test of `permed serve` on loopback: 200 concurrent clients fetch a report and per-drug advice.

Starts a real server (uvicorn, its supervised worker) on a free port with a fresh data directory,
uploads the example patient, waits for its job, then runs the clients (aiohttp, asyncio; httpx used
most of the two cores itself) and prints request count, errors, p50/p99 latency, throughput and the
server's CPU time per request for each route.

    python benchmarks/bench_service_load.py [--clients 200] [--requests 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import psutil

from permed.examples import example_vcf


def _cli(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "permed", *args], capture_output=True, text=True,
                          check=True).stdout.strip()


async def _client(session, base: str, n: int, sid: int, out: dict, errors: list) -> None:
    routes = {"report (JSON)": f"{base}/samples/{sid}/report",
              "advice": f"{base}/samples/{sid}/advice?drug=clopidogrel"}
    for i in range(n):
        name = "advice" if i % 2 else "report (JSON)"
        t0 = time.perf_counter()
        try:
            async with session.get(routes[name]) as r:
                await r.read()
                if r.status != 200:
                    errors.append(f"{name}: HTTP {r.status}")
        except aiohttp.ClientError as exc:
            errors.append(f"{name}: {type(exc).__name__}")
        out.setdefault(name, []).append(time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--requests", type=int, default=10, help="requests per client")
    ap.add_argument("--database", help="SQLAlchemy URL of an empty PostgreSQL database (default: SQLite)")
    ap.add_argument("--no-per-client-flag", dest="per_client_flag", action="store_false",
                    help="for a permed before --max-connections-per-client (A/B runs against an older commit)")
    args = ap.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = Path(tempfile.mkdtemp(prefix="permed-load-"))
    db = ["--database", args.database] if args.database else []
    lab = _cli("token", "create", "--role", "lab", "--data-dir", str(data), *db)
    clinician = _cli("token", "create", "--role", "clinician", "--data-dir", str(data), *db)
    # the clients stand for separate browsers and services, but all connect from loopback: the per-address
    # connection cap (default 100) would refuse them, so it is lifted (servers older than the flag run without)
    cap = ["--max-connections-per-client", "0"] if args.per_client_flag else []
    server = subprocess.Popen([sys.executable, "-m", "permed", "serve", "--port", str(port), "--data-dir", str(data),
                               *db, *cap], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        for _ in range(150):
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        r = httpx.post(f"{base}/samples", content=example_vcf().read_bytes(),
                       headers={"Authorization": f"Bearer {lab}", "X-Filename": "example.vcf",
                                "X-Medications": "clopidogrel"})
        sid = r.json()["id"]
        while (job := httpx.get(f"{base}/samples/{sid}", headers={"Authorization": f"Bearer {clinician}"}
                                ).json()["job"])["state"] != "done":
            if job["state"] == "failed":
                sys.exit(f"bench_service_load: the example's job failed: {job['error']}")
            time.sleep(0.2)
        out: dict[str, list[float]] = {}
        errors: list[str] = []
        proc = psutil.Process(server.pid)  # the API process (its job worker is a child, idle by now)
        cpu0 = sum(proc.cpu_times()[:2])
        t0 = time.perf_counter()

        async def run() -> None:
            # one connection per client (no pooling limit), like 200 separate browsers or alert services
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60),
                                             headers={"Authorization": f"Bearer {clinician}"}) as session:
                await asyncio.gather(*(_client(session, base, args.requests, sid, out, errors)
                                       for _ in range(args.clients)))

        asyncio.run(run())
        wall = time.perf_counter() - t0
        server_cpu = sum(proc.cpu_times()[:2]) - cpu0
    finally:
        server.terminate()
        server.wait(timeout=30)
    total = sum(len(v) for v in out.values())
    store = "PostgreSQL" if args.database else "SQLite"
    print(f"permed serve ({store}) on loopback, {os.cpu_count()} cores: {args.clients} concurrent clients x "
          f"{args.requests} requests = {total} requests in {wall:.1f} s ({total / wall:.0f} req/s), "
          f"{len(errors)} errors; server CPU {server_cpu / total * 1000:.2f} ms per request "
          f"(the clients share the same cores)")
    for name, lat in sorted(out.items()):
        lat = sorted(lat)
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
        print(f"  {name:14s} n={len(lat):5d}  p50 {statistics.median(lat) * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms")
    if errors:
        print("  errors:", ", ".join(sorted(set(errors))))


if __name__ == "__main__":
    main()
