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
import random
import shutil
import tempfile
import time
from pathlib import Path

from pysam.libcbgzf import BGZFile

from permed.engine import Engine, Inputs
from permed.examples import example_vcf
from permed.options import Options
from permed.service.indexing import queryable

FORMAT_HEADER = [
    '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">\n',
    '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">\n',
    '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">\n',
    '##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Phred-scaled genotype likelihoods">\n',
]


def write_wgs(path: Path, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    lines = example_vcf().read_text().splitlines(keepends=True)
    header = [x for x in lines if x.startswith("##")] + FORMAT_HEADER + [x for x in lines if x.startswith("#C")]
    by_chrom: dict[str, list[tuple[int, str]]] = {}
    for x in lines:
        if not x.startswith("#"):
            f = x.rstrip("\n").split("\t")
            f[8], f[9] = "GT:AD:DP:GQ:PL", f"{f[9]}:30,0:30:99:0,90,900"
            by_chrom.setdefault(f[0], []).append((int(f[1]), "\t".join(f) + "\n"))
    lengths = {f"chr{i}": int(2.5e8 * (1 - i / 30)) for i in range(1, 23)}
    total = sum(lengths.values())
    for chrom, length in lengths.items():
        for pos in rng.sample(range(1, length), int(n * length / total)):
            het = rng.random() < 0.6
            fmt = "0/1:14,16:30:99:420,0,380" if het else "1/1:0,31:31:93:1100,93,0"
            by_chrom.setdefault(chrom, []).append(
                (pos, f"{chrom}\t{pos}\t.\t{rng.choice('ACGT')}\t{rng.choice('ACGT')}\t250.6\tPASS\t"
                      f"AC=1;AN=2;DP=30;QD=12.1\tGT:AD:DP:GQ:PL\t{fmt}\n"))
    order = [f"chr{i}" for i in range(1, 23)] + sorted(c for c in by_chrom if c not in lengths)
    with open(path, "w") as fh:
        fh.writelines(header)
        for chrom in order:
            fh.writelines(line for _, line in sorted(by_chrom.get(chrom, [])))


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
        _, t_write = timed(write_wgs, plain, args.records)
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
