"""Benchmark `permed cohort`: 1000 Genomes (3,202 samples x 19 gene files) against the floor, and
synthetic cohorts of growing size made from 1KGP haplotypes (memory flat, time linear, 200k projection).

Every measurement is a fresh process. Wall times come from unobserved runs; peak memory from one more
run, as the largest sum of PSS (proportional set size: pages shared by forked workers counted once)
over the process tree (main process plus workers), sampled every 20 ms (sampling takes CPU, so that
run's time is not used).

    python benchmarks/bench_cohort.py [--data DIR] [--repeat N] [--sizes 12500,25000,50000,100000,200000]
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

import psutil

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "1kgp-grch38"
POPS = ROOT.parent / "shared" / "data" / "1kgp_populations.tsv"
sys.path.insert(0, str(ROOT / "benchmarks"))

# the floor: read every genotype of every record once, with the library permed uses (cyvcf2)
FLOOR_ALL = r"""
import sys
from cyvcf2 import VCF
n = 0
for f in sys.argv[1:]:
    for rec in VCF(f):
        rec.genotype.array()
        n += 1
print(n)
"""


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak PSS MiB of the whole process tree)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_full_info().pss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{err}")
    return wall, peak / 2**20


def wall(cmd: list[str]) -> float:
    """Wall seconds of one run, unobserved (sampling PSS costs CPU the run would otherwise have)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{proc.stderr}")
    return time.perf_counter() - t0


def best(cmd: list[str], repeat: int) -> tuple[float, float]:
    """(best wall seconds of `repeat` unobserved runs, peak PSS MiB of one more, observed run)."""
    return min(wall(cmd) for _ in range(repeat)), measure(cmd)[1]


def cohort(files: list[str], extra: list[str], repeat: int) -> tuple[float, float]:
    out = Path(tempfile.mkdtemp(prefix="permed-bench-"))
    try:
        return best([sys.executable, "-m", "permed", "cohort", *files, "-o", str(out / "out"), "--quiet", *extra],
                    repeat)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="12500,25000,50000,100000,200000")
    ap.add_argument("--skip-synthetic", action="store_true")
    args = ap.parse_args()
    files = sorted(str(p) for p in args.data.glob("*.vcf.gz"))
    if not files:
        raise SystemExit(f"no VCFs in {args.data}")
    n = 3202
    print(f"1KGP: {len(files)} files, {n} samples; cores: {os.cpu_count()}; best of {args.repeat}")
    floor = best([sys.executable, "-c", FLOOR_ALL, *files], args.repeat)
    print(f"{'floor: cyvcf2 reads every genotype once':50s} {floor[0]:7.2f} s  {floor[1]:6.0f} MiB")
    pops = ["--populations", str(POPS)] if POPS.exists() else []
    for label, extra in (("permed cohort, 1 worker", ["--workers", "1"]),
                         ("permed cohort, 2 workers", ["--workers", "2"])):
        wall, rss = cohort(files, extra + pops, args.repeat)
        print(f"{label:50s} {wall:7.2f} s  {rss:6.0f} MiB   {wall / floor[0]:.2f}x floor  {n / wall:6.0f} samples/s")
    if args.skip_synthetic:
        return
    from synthetic_cohort import write_cohort_vcf

    print("\nsynthetic cohorts from 1KGP haplotypes (records at pharmacogene windows only), 2 workers, "
          "--split-samples 25000, --chunk-size 10000")
    tmp = Path(tempfile.mkdtemp(prefix="permed-synth-"))
    rows = []
    try:
        for size in (int(x) for x in args.sizes.split(",")):
            vcf = tmp / f"syn{size}.vcf.gz"
            k = write_cohort_vcf(size, vcf, args.data)
            fl = best([sys.executable, "-c", FLOOR_ALL, str(vcf)], 1)
            wall, rss = cohort([str(vcf)], ["--workers", "2", "--split-samples", "25000", "--chunk-size", "10000"], 1)
            rows.append((size, wall, rss))
            print(f"{size:8d} samples x {k} records: {wall:7.2f} s  {rss:6.0f} MiB  {size / wall:7.0f} samples/s"
                  f"   (floor {fl[0]:6.2f} s)")
            vcf.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if len(rows) >= 2:
        # least-squares line through (samples, seconds): fixed cost + per-sample cost
        xs, ys = [r[0] for r in rows], [r[1] for r in rows]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        icpt = my - slope * mx
        print(f"fit: {icpt:.1f} s + {slope * 1e6:.1f} us/sample; projected 200,000 samples: "
              f"{icpt + slope * 200_000:.0f} s; peak PSS range {min(r[2] for r in rows):.0f}-"
              f"{max(r[2] for r in rows):.0f} MiB")
        print(f"PharmCAT at ~6 s per sample per core: 200,000 samples = {200_000 * 6 / 3600:.0f} core-hours")


if __name__ == "__main__":
    main()
