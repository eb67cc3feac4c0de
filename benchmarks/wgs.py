"""A whole-genome-sized single-sample VCF for benchmarks: the example patient's records among n random
SNVs, with the FORMAT fields variant callers write (GT:AD:DP:GQ:PL)."""

from __future__ import annotations

import random
from pathlib import Path

FORMAT_HEADER = [
    '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">\n',
    '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">\n',
    '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">\n',
    '##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Phred-scaled genotype likelihoods">\n',
]


def write_wgs(example: Path, path: Path, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    lines = Path(example).read_text().splitlines(keepends=True)
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
