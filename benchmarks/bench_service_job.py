"""What indexing uploads buys a service job on a whole-genome VCF.

Writes a synthetic single-sample WGS-like VCF (the example patient's records among N random SNVs with
GT:AD:DP:GQ:PL, as variant callers write them), as plain text and as bgzip, then times the engine's
read of each: the whole file decoded (the job before indexing) against the job's indexing step
(permed.service.indexing.queryable: bgzip if needed, CSI index) plus the windowed read. Checks the
calls are the same and prints the figures.

    python benchmarks/bench_service_job.py [--records 5000000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pysam.libcbgzf import BGZFile

from permed.engine import Engine, Inputs
from permed.examples import example_vcf
from permed.options import Options
from permed.service.indexing import queryable

sys.path.insert(0, str(Path(__file__).parent))
from wgs import write_wgs  # noqa: E402


def write_wgs_example(path: Path, n: int) -> None:
    write_wgs(example_vcf(), path, n)


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=5_000_000)
    args = ap.parse_args()
    engine = Engine()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plain = tmp / "wgs.vcf"
        _, t_write = timed(write_wgs_example, plain, args.records)
        bgz = tmp / "wgs.vcf.gz"
        with open(plain, "rb") as src, BGZFile(str(bgz), "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        print(f"synthetic WGS VCF: {args.records:,} records + the example's {sum(1 for _ in open(example_vcf())):,} "
              f"lines; {plain.stat().st_size / 1e6:,.0f} MB plain, {bgz.stat().st_size / 1e6:,.0f} MB bgzip "
              f"(written in {t_write:.0f} s)")
        for upload in (plain, bgz):
            full, t_full = timed(engine.match, Inputs.of(vcfs=upload), Options(use_index=False))
            read, t_index = timed(queryable, upload, tmp / f"data-{upload.name}", "wgs")
            win, t_win = timed(engine.match, Inputs.of(vcfs=read), Options())
            same = all([full.table[i] for i in full.choice[g]] == [win.table[j] for j in win.choice[g]]
                       for g in full.genes)
            print(f"{upload.name:>11}: whole file decoded {t_full:6.1f} s | index {t_index:5.1f} s + windowed read "
                  f"{t_win:4.1f} s = {t_index + t_win:5.1f} s ({t_full / (t_index + t_win):.1f}x); "
                  f"same calls: {same}")


if __name__ == "__main__":
    main()
