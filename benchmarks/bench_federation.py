"""Federated query latency over three `permed node serve` processes on loopback, and the nodes' memory.

    python benchmarks/bench_federation.py [--work DIR] [--queries 50] [--synthetic N]

1KGP: the panel split by superpopulation (AFR / EUR / EAS+SAS+AMR), each third called by `permed cohort`.
--synthetic N: an N-sample cohort from benchmarks/synthetic_cohort.py, called once and its tables cut into
three nodes of N/3 samples (the node reads only calls.parquet and samples.parquet).
Nodes run with the default disclosure control (k=5) and, in a second pass, with Laplace noise.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "1kgp-grch38"
POPS = ROOT.parent / "shared" / "data" / "1kgp_populations.tsv"
SPLIT = {"afr": {"AFR"}, "eur": {"EUR"}, "other": {"EAS", "SAS", "AMR"}}
QUERIES = [
    ("CYP2C19 phenotype by superpopulation", dict(genes=("CYP2C19",), kinds=("phenotype",), by=["superpopulation"])),
    ("CYP2C19 phenotype by population, among CYP2C9 normal metabolizers",
     dict(genes=("CYP2C19",), kinds=("phenotype",), by=["population"],
          filters=[{"id": "CYP2C9:phenotype", "operator": "=", "value": "Normal Metabolizer"}])),
    ("every gene, phenotype by superpopulation", dict(kinds=("phenotype",), by=["superpopulation"])),
]


def split_1kgp(work: Path) -> dict[str, Path]:
    import pysam

    import permed

    superpop = {ln.split("\t")[0]: ln.split("\t")[2] for ln in POPS.read_text().splitlines()[1:]}
    out = {}
    for name, keep in SPLIT.items():
        d = work / name
        out[name] = d
        if (d / "calls.parquet").exists():
            continue
        vcfs = []
        for f in sorted(DATA.glob("*.vcf.gz")):
            vin = pysam.VariantFile(str(f))
            vin.subset_samples([s for s in vin.header.samples if superpop.get(s) in keep])
            dst = work / "vcf" / name / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            with pysam.VariantFile(str(dst), "wz", header=vin.header) as w:
                for rec in vin:
                    w.write(rec)
            pysam.tabix_index(str(dst), preset="vcf", force=True)
            vcfs.append(dst)
        permed.cohort(vcfs, populations=POPS).write(d)
    return out


def split_synthetic(work: Path, n: int) -> dict[str, Path]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    import permed

    pops = sorted({tuple(ln.split("\t")[1:3]) for ln in POPS.read_text().splitlines()[1:]})
    vcf = work / f"synthetic-{n}.vcf.gz"
    if not vcf.exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "synthetic_cohort.py"), str(n), str(vcf)], check=True)
    whole = work / f"synthetic-{n}"
    if not (whole / "calls.parquet").exists():
        permed.cohort([vcf], workers=2).write(whole)
    calls = pq.read_table(whole / "calls.parquet")
    samples = pc.unique(calls.column("sample").cast("string")).to_pylist()
    out = {}
    for i, name in enumerate(SPLIT):
        d = work / f"synthetic-{n}-{name}"
        out[name] = d
        if (d / "calls.parquet").exists():
            continue
        d.mkdir(parents=True, exist_ok=True)
        part = sorted(samples[i::3])
        mask = pc.is_in(calls.column("sample").cast("string"), value_set=pa.array(part))
        pq.write_table(calls.filter(mask), d / "calls.parquet")
        # synthetic samples have no ancestry: 1KGP population labels drawn at random (seeded), so that grouped
        # queries do the same work as on real data (the groups themselves mean nothing)
        rng = np.random.default_rng(i)
        pick = rng.integers(0, len(pops), len(part))
        pq.write_table(pa.table({"sample": part, "population": [pops[j][0] for j in pick],
                                 "superpopulation": [pops[j][1] for j in pick]}), d / "samples.parquet")
    return out


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(dirs: dict[str, Path], n_queries: int, config: Path | None, label: str) -> list[str]:
    import httpx
    import psutil

    from permed.federation.client import federate

    procs, tokens = [], {}
    for d in dirs.values():
        token = subprocess.run([sys.executable, "-m", "permed", "node", "token", "create", str(d), "--scope",
                                "aggregate", "--institution", "bench"], capture_output=True, text=True, check=True)
        port = _port()
        url = f"http://127.0.0.1:{port}"
        args = [sys.executable, "-m", "permed", "node", "serve", str(d), "--port", str(port)]
        procs.append(subprocess.Popen(args + (["--config", str(config)] if config else []),
                                      stderr=subprocess.DEVNULL))
        tokens[url] = token.stdout.strip()
    lines = []
    try:
        t0 = time.perf_counter()
        for url in tokens:
            while True:
                try:
                    if httpx.get(url + "/api", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
        lines.append(f"[{label}] nodes up in {time.perf_counter() - t0:.1f} s (loading the cohort tables)")
        for name, query in QUERIES:
            times = []
            for _ in range(n_queries):
                t = time.perf_counter()
                res = federate(list(tokens), tokens=tokens, timeout=600, **query)
                times.append(time.perf_counter() - t)
                assert all(x.status == "ok" for x in res.nodes), res.node_status()
            times.sort()
            p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
            lines.append(f"[{label}] {name}: n={n_queries} p50 {statistics.median(times) * 1000:.0f} ms, "
                         f"p99 {p99 * 1000:.0f} ms, min {times[0] * 1000:.0f} ms, {len(res.rows)} rows")
        rss = [psutil.Process(p.pid).memory_info().rss / 2**20 for p in procs]
        lines.append(f"[{label}] node RSS after the queries: " + ", ".join(f"{x:.0f} MiB" for x in rss))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/permed-bench-federation"))
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--synthetic", type=int, default=0)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    dp = a.work / "dp.toml"
    dp.write_text("[privacy]\nmechanism = \"laplace\"\nepsilon = 0.1\nbudget = 1000000.0\n")
    sets = [("1KGP", split_1kgp(a.work))]
    if a.synthetic:
        sets.append((f"synthetic {a.synthetic:,}", split_synthetic(a.work, a.synthetic)))
    for name, dirs in sets:
        for f in dirs.values():
            for old in f.glob("node.sqlite*"):
                old.unlink()  # fresh differencing history and budget per run
        for line in run(dirs, a.queries, None, f"{name}, k=5"):
            print(line, flush=True)
        for f in dirs.values():
            for old in f.glob("node.sqlite*"):
                old.unlink()
        for line in run(dirs, a.queries, dp, f"{name}, laplace"):
            print(line, flush=True)


if __name__ == "__main__":
    main()
