"""Benchmark: call all 1000 Genomes samples (3,202) for every gene file in ../shared/data/1kgp-grch38.

Prints, for each configuration, wall time, peak RSS and the ratio to the *floor*: merely reading the
same genotypes with the same library (cyvcf2: iterate every record, decode genotypes at definition
positions).  Each measurement runs in a fresh process (os.wait4 gives its own rusage).

    python benchmarks/bench_1kgp.py [--data DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "1kgp-grch38"

FLOOR = r"""
import sys, glob
from cyvcf2 import VCF
from permed.kb.load import load_kb
kb = load_kb()
wanted = {(d.chromosome, loc.position) for d in kb.genes.values() for loc in d.loci}
n = 0
for f in sys.argv[1:]:
    for rec in VCF(f):
        if (rec.CHROM, rec.POS) in wanted:
            rec.genotype.array()
            n += 1
print(n)
"""


def measure(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = proc.stdout.read()
    err = proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err}")
    return wall, usage.ru_maxrss / 1024, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    files = sorted(str(p) for p in args.data.glob("*.vcf.gz"))
    if not files:
        raise SystemExit(f"no VCFs in {args.data}")
    permed = [sys.executable, "-m", "permed", "call", *files]
    configs = [
        ("permed call, 1 worker, calls.tsv only", ["--workers", "1", "--no-sample-reports"]),
        ("permed call, 2 workers, calls.tsv only", ["--workers", "2", "--no-sample-reports"]),
        ("permed call, 1 worker, + 3,202 JSON reports", ["--workers", "1", "--format", "json"]),
        ("permed call, 1 worker, + 3,202 JSON + HTML", ["--workers", "1"]),
    ]
    print(f"1KGP: {len(files)} files in {args.data}, cores: {os.cpu_count()}")
    floor = min(measure([sys.executable, "-c", FLOOR, *files])[:2] for _ in range(args.repeat))
    print(f"{'floor: read the same genotypes with cyvcf2':48s} {floor[0]:7.2f} s  {floor[1]:7.0f} MiB")
    for label, extra in configs:
        best = None
        for _ in range(args.repeat):
            out = Path(tempfile.mkdtemp(prefix="permed-bench-"))
            try:
                wall, rss, _ = measure([*permed, "-o", str(out / "out"), *extra])
            finally:
                shutil.rmtree(out, ignore_errors=True)
            best = (wall, rss) if best is None or wall < best[0] else best
        print(f"{label:48s} {best[0]:7.2f} s  {best[1]:7.0f} MiB   {best[0] / floor[0]:.2f}x floor"
              f"   {3202 / best[0]:7.0f} samples/s")


if __name__ == "__main__":
    main()
