"""Long run of the VCF fuzzer (tests/fuzz/vcf_mutants.py): N seeded mutants over real records, in parallel
batches; prints how many ran, failed, died or hung, and the speed. Usage:

    python scripts/fuzz_vcf.py --count 100000 --seed 11 --jobs 2 [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fuzz"))
import vcf_mutants  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    t0 = time.time()
    batches = [(s, min(args.batch, args.count - s)) for s in range(0, args.count, args.batch)]
    ran, failures = 0, []
    with ThreadPoolExecutor(args.jobs) as pool:  # each batch is its own process
        for res in pool.map(lambda b: vcf_mutants.run_batch(args.seed, *b), batches):
            ran += res.ran
            failures += res.failures
            for f in res.failures:
                print(f"  failure: mutant {f['mutant']} ({f['what']}): {f['problem'][:300]}", file=sys.stderr,
                      flush=True)
            print(f"{ran:>7} mutants, {len(failures)} failures, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    wall = time.time() - t0
    kinds = Counter("death" if f["problem"].startswith("death") else "hang" if f["problem"] == "hang"
                    else "contract" for f in failures)
    lines = [f"fuzz_vcf: seed {args.seed}, {ran} mutants in {wall:.0f} s ({ran / wall:.0f}/s, {args.jobs} jobs)",
             f"failures: {len(failures)} (deaths {kinds['death']}, hangs {kinds['hang']}, "
             f"other contract breaks {kinds['contract']})"]
    lines += [f"  mutant {f['mutant']} ({f['what']}): {f['problem'][:200]}" for f in failures[:20]]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
