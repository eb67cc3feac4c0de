"""`permed cohort` on a BGEN v1.2 (8-bit, zlib) against the VCF of the same synthetic cohort.

The cohort is benchmarks/synthetic_cohort.py's (1KGP haplotypes at the pharmacogene windows); the BGEN holds each
genotype as a certain probability, unphased, as imputed biobank data are delivered. Both runs use the same options;
calls are compared sample by sample (differences can only come from phase, which the BGEN does not carry).

    python benchmarks/bench_imputed.py N [--workers 2] [--split-samples 25000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_cohort import DEFAULT_DATA, haplotype_panel, write_cohort_vcf  # noqa: E402

from permed.genotypes.imputed import write_bgen  # noqa: E402
from permed.genotypes.probabilities import diploid_order  # noqa: E402

SEED = 20261125  # synthetic_cohort's default: the same samples in both files


def write_cohort_bgen(n: int, out: Path) -> int:
    records, haps = haplotype_panel(DEFAULT_DATA)
    rng = np.random.default_rng(SEED)
    h1 = rng.integers(0, haps.shape[1], n)
    h2 = rng.integers(0, haps.shape[1], n)
    samples = [f"SYN{i:07d}" for i in range(n)]

    def variants():
        for ((chrom, pos, ref, alts), rid), row in zip(records, haps):
            a, b = row[h1].astype(np.int64), row[h2].astype(np.int64)
            k = 1 + len(alts)
            order = {tuple(p): i for i, p in enumerate(diploid_order(k).tolist())}
            table = np.full((k, k), -1, dtype=np.int64)
            for (j, m), i in order.items():
                table[j, m] = table[m, j] = i
            probs = np.zeros((n, len(order)))
            ok = (a >= 0) & (b >= 0)
            probs[np.flatnonzero(ok), table[a[ok], b[ok]]] = 1.0
            probs[~ok] = np.nan
            yield chrom, pos, rid, [ref, *alts], probs

    write_bgen(out, samples, variants())
    return len(records)


def run(args: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "permed", *args], capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(res.stderr)
    return time.perf_counter() - t, res.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n", type=int)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--split-samples", type=int, default=25000)
    ap.add_argument("--chunk-size", type=int, default=10000)
    ap.add_argument("--keep", type=Path)
    a = ap.parse_args()
    d = a.keep or Path(tempfile.mkdtemp(prefix="permed-bench-imputed-"))
    d.mkdir(parents=True, exist_ok=True)
    vcf, bgen = d / "cohort.vcf.gz", d / "cohort.bgen"
    t = time.perf_counter()
    k = write_cohort_vcf(a.n, vcf)
    t_vcf = time.perf_counter() - t
    t = time.perf_counter()
    write_cohort_bgen(a.n, bgen)
    t_bgen = time.perf_counter() - t
    opts = ["--workers", str(a.workers), "--split-samples", str(a.split_samples), "--chunk-size",
            str(a.chunk_size), "-q"]
    times = {}
    for name, path in (("VCF (phased GT)", vcf), ("BGEN v1.2 8-bit", bgen)):
        times[name], _ = run(["cohort", str(path), "-o", str(d / name.split()[0].lower()), *opts])
    import pyarrow.parquet as pq

    calls = {n: pq.read_table(d / n / "calls.parquet").to_pylist() for n in ("vcf", "bgen")}
    key = next(c for c in ("diplotype", "source_diplotypes", "Source Diplotype") if c in calls["vcf"][0])
    differ = sum(x != y for x, y in zip(
        sorted((r["sample"], r["gene"], str(r[key])) for r in calls["vcf"]),
        sorted((r["sample"], r["gene"], str(r[key])) for r in calls["bgen"])))
    print(f"synthetic cohort: {a.n} samples x {k} records; cores: {os.cpu_count()}; permed cohort {' '.join(opts)}")
    print(f"files: VCF {vcf.stat().st_size / 2**20:.1f} MiB (written in {t_vcf:.1f} s), "
          f"BGEN {bgen.stat().st_size / 2**20:.1f} MiB (written in {t_bgen:.1f} s)")
    for name, sec in times.items():
        print(f"  {name:18s} {sec:8.1f} s   {a.n / sec:8.0f} samples/s")
    print(f"  BGEN / VCF time: {times['BGEN v1.2 8-bit'] / times['VCF (phased GT)']:.2f}x; "
          f"gene calls differing: {differ} of {len(calls['vcf'])} (phase: the BGEN is unphased)")


if __name__ == "__main__":
    main()
