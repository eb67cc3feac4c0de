"""One patient, end to end: `permed call` (JSON + HTML report) against the floor, in fresh processes.

The floor is a Python process that imports cyvcf2 and reads the same VCF's genotypes (the library
permed reads with). Printed: medians over --repeat runs of the wall time including interpreter
start, and the ratio to the floor. Then the same on a whole-genome-sized indexed VCF (--wgs-records
random SNVs around the example's records, bgzip + index): permed reads windows around the definition
positions, so it should stay in the same range, whereas reading every record is the WGS floor.
Also the knowledge base's load time in a warm process.

    python benchmarks/bench_patient.py [--repeat 5] [--wgs-records 3000000] [--python PYTHON]

`--python` runs another installation (e.g. a checkout of an older commit) for before/after figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from wgs import write_wgs  # noqa: E402

FLOOR = "import sys\nfrom cyvcf2 import VCF\nfor rec in VCF(sys.argv[1]):\n    rec.genotype.array()\n"
EXAMPLE = ("import importlib.util, pathlib; "
           "print(pathlib.Path(importlib.util.find_spec('permed').submodule_search_locations[0]) / 'examples' / "
           "'example_patient.vcf')")
KB_LOAD = ("import time; from permed.kb.load import load_kb; t = time.perf_counter(); load_kb(); "
           "print(time.perf_counter() - t)")


def once(cmd: list[str]) -> float:
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr}")
    return time.perf_counter() - t


def wall(*cmds: list[str], repeat: int) -> list[float]:
    """Median wall seconds of each command in fresh processes, runs interleaved (cmd1, cmd2, cmd1, ...)
    so that a machine getting busier or quieter affects them alike."""
    runs: list[list[float]] = [[] for _ in cmds]
    for _ in range(repeat):
        for cmd, times in zip(cmds, runs):
            times.append(once(cmd))
    return [statistics.median(times) for times in runs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--wgs-records", type=int, default=3_000_000)
    ap.add_argument("--python", default=sys.executable, help="the Python of the permed installation to measure")
    args = ap.parse_args()
    py = args.python
    example = Path(subprocess.run([py, "-c", EXAMPLE], capture_output=True, text=True, check=True).stdout.strip())
    version = subprocess.run([py, "-m", "permed", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{version} ({py}); cores: {os.cpu_count()}; median of {args.repeat} fresh processes")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        floor, call = wall([py, "-c", FLOOR, str(example)], [py, "-m", "permed", "call", "--example", "-o", str(out)],
                           repeat=args.repeat)
        kb = statistics.median(float(subprocess.run([py, "-c", KB_LOAD], capture_output=True, text=True,
                                                    check=True).stdout) for _ in range(args.repeat))
        print(f"{'floor: cyvcf2 reads the example VCF':52s} {floor:6.3f} s")
        print(f"{'permed call --example (JSON + HTML)':52s} {call:6.3f} s   {call / floor:5.1f}x floor")
        print(f"{'knowledge base load (modules imported)':52s} {kb:6.3f} s")
        if args.wgs_records:
            import pysam

            plain = Path(tmp) / "wgs.vcf"
            write_wgs(example, plain, args.wgs_records)
            gz = pysam.tabix_index(str(plain), preset="vcf", force=True, keep_original=False)
            size = Path(gz).stat().st_size / 1e6
            full = once([py, "-c", FLOOR, gz])
            (wgs,) = wall([py, "-m", "permed", "call", gz, "-o", str(out)], repeat=args.repeat)
            print(f"{f'floor: cyvcf2 reads a WGS-sized VCF ({args.wgs_records:,} records, {size:.0f} MB)':52s} "
                  f"{full:6.3f} s")
            print(f"{'permed call on it (indexed: windows only)':52s} {wgs:6.3f} s   {wgs / floor:5.1f}x "
                  "the example's floor")


if __name__ == "__main__":
    main()
