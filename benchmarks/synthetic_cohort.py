"""Make a synthetic cohort VCF of N samples from the 1000 Genomes haplotypes.

Each synthetic sample gets two haplotypes drawn at random (fixed seed) from the 6,404 phased 1KGP
haplotypes, kept whole across all records, so linkage between variants of a gene is preserved.
Only the records permed reads (those overlapping the windows around definition positions) are
written: a biobank VCF restricted to pharmacogene regions, the usual first step.

    python benchmarks/synthetic_cohort.py N OUT.vcf.gz [--data DIR] [--seed S] [--with-dp]

--with-dp adds a read depth to every call (FORMAT GT:DP, as sequencing exports carry): such lines go
through htslib rather than permed's GT-only text reader, so the two paths can be measured on the same cohort.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
from cyvcf2 import VCF

from permed.genotypes.locus_index import locus_index
from permed.kb.load import load_kb

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "1kgp-grch38"


def _chrom_key(c: str) -> tuple:
    bare = c.removeprefix("chr")
    return (0, int(bare), "") if bare.isdigit() else (1, 0, bare)


def haplotype_panel(data: Path):
    """(records, haplotype matrix records x 6404) at the windows permed reads."""
    kb = load_kb()
    index = locus_index(kb, sorted(kb.genes))
    seen: dict[tuple, tuple] = {}
    for f in sorted(data.glob("*.vcf.gz")):
        vcf = VCF(str(f), lazy=True)
        names = set(vcf.seqnames)
        for chrom, windows in index.windows.items():
            name = chrom if chrom in names else chrom.removeprefix("chr")
            if name not in names:
                continue
            for lo, hi in windows:
                for rec in vcf(f"{name}:{lo}-{hi}"):
                    key = (chrom, rec.POS, rec.REF, tuple(rec.ALT))
                    if key in seen:
                        continue
                    gt = rec.genotype.array()[:, :2].astype(np.int8)  # samples x 2, -1 missing
                    seen[key] = (rec.ID or ".", gt.reshape(-1))
        vcf.close()
    keys = sorted(seen, key=lambda k: (_chrom_key(k[0]), k[1], k[2], k[3]))
    haps = np.stack([seen[k][1] for k in keys])
    return [(k, seen[k][0]) for k in keys], haps


def write_cohort_vcf(n: int, out: Path, data: Path = DEFAULT_DATA, seed: int = 20261125,
                     with_dp: bool = False) -> int:
    records, haps = haplotype_panel(data)
    if haps.max() > 9:
        raise SystemExit("allele index above 9 not supported by this generator")
    rng = np.random.default_rng(seed)
    h1 = rng.integers(0, haps.shape[1], n)
    h2 = rng.integers(0, haps.shape[1], n)
    chroms = sorted({k[0] for k, _ in records}, key=_chrom_key)
    header = ["##fileformat=VCFv4.2", '##FILTER=<ID=PASS,Description="All filters passed">',
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
              *(['##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">'] if with_dp else []),
              *(f"##contig=<ID={c}>" for c in chroms),
              "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                         *(f"SYN{i:07d}" for i in range(n))])]
    width = 7 if with_dp else 4  # "0|1\t" or "0|1:30\t"
    buf = np.empty((n, width), dtype=np.uint8)
    buf[:, 1] = ord("|")
    if with_dp:
        buf[:, 3:6] = np.frombuffer(b":30", dtype=np.uint8)
    buf[:, -1] = ord("\t")
    fmt = "GT:DP" if with_dp else "GT"
    with gzip.open(out, "wb", compresslevel=1) as fh:
        fh.write(("\n".join(header) + "\n").encode())
        for ((chrom, pos, ref, alts), rid), row in zip(records, haps):
            a, b = row[h1], row[h2]
            buf[:, 0] = np.where(a < 0, ord("."), ord("0") + a)
            buf[:, 2] = np.where(b < 0, ord("."), ord("0") + b)
            buf[-1, -1] = ord("\n")
            fixed = f"{chrom}\t{pos}\t{rid}\t{ref}\t{','.join(alts) or '.'}\t.\tPASS\t.\t{fmt}\t"
            fh.write(fixed.encode())
            fh.write(buf.tobytes())
            buf[-1, -1] = ord("\t")
    return len(records)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n", type=int)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seed", type=int, default=20261125)
    ap.add_argument("--with-dp", action="store_true", help="FORMAT GT:DP instead of GT")
    args = ap.parse_args()
    k = write_cohort_vcf(args.n, args.out, args.data, args.seed, args.with_dp)
    print(f"wrote {args.out}: {args.n} samples x {k} records")


if __name__ == "__main__":
    main()
