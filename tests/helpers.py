"""Shared test helpers: run the CLI as a real process, build small VCFs."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

from permed.cli import example_vcf

HEADER = """##fileformat=VCFv4.2
##contig=<ID=chr10,length=133797422>
##contig=<ID=chr1,length=248956422>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=PS,Number=1,Type=Integer,Description="Phase set">
"""


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "permed", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def example_text() -> str:
    return example_vcf().read_text()


def write_vcf(path: Path, body: str, samples=("S1",), header: str = HEADER) -> Path:
    cols = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples) + "\n"
    text = header + cols + body
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def rec(chrom: str, pos: int, ref: str, alt: str, *gts: str, fmt: str = "GT", filt: str = "PASS",
        info: str = ".") -> str:
    return "\t".join([chrom, str(pos), ".", ref, alt, ".", filt, info, fmt, *gts]) + "\n"
