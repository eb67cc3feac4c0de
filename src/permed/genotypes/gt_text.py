"""Genotypes read from a text VCF's GT column with numpy, for cohorts.

htslib turns every sample's text into BCF values and cyvcf2 copies them out again, sample by sample: at
100,000 samples that is three quarters of the time to read a file. Where GT is the only FORMAT key, each
genotype is one or three characters ("0|1", "./.", haploid "1"), which numpy reads for a whole line at once.
htslib still parses every record's fixed columns (with one sample), so record-level checks and messages are
unchanged. Every record's calls are read, used or not (htslib checks them all too); a line holding anything
else (other FORMAT keys, alleles above 9, polyploid or malformed calls, a line out of step with htslib's
record) raises `NotPlainGt` and the caller reads the file with htslib instead, which reports what is wrong.

htslib reads, instead of the file itself, a copy of its text cut after the first sample's column
(`fixed_columns`): it then parses a few hundred bytes per line instead of scanning every sample's column.
The text is decompressed with ISA-L (several times zlib's speed), once for that copy and once for the calls.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from isal import igzip, isal_zlib

from permed.genotypes.model import MISSING_ALLELE, NO_ALLELE

# from this many samples read per file, plain GT lines are read with numpy (smaller files: htslib, whose
# cost there is small; the results are the same, tests compare them)
PLAIN_GT_MIN_SAMPLES = 2_000

_TAB, _PHASED, _UNPHASED, _DOT, _ZERO, _NINE = (ord(c) for c in "\t|/.09")


class NotPlainGt(Exception):
    """A line whose calls are not plain GT text (or that htslib reads otherwise): htslib must read the file."""


def _alleles(chars: np.ndarray) -> np.ndarray:
    """Allele codes of single characters (digits; '.' missing); NotPlainGt for anything else."""
    digit = (chars >= _ZERO) & (chars <= _NINE)
    dot = chars == _DOT
    if not (digit | dot).all():
        raise NotPlainGt
    return np.where(dot, MISSING_ALLELE, chars.astype(np.int16) - _ZERO).astype(np.int16)


_INVALID = -99
# a three-character call and its tab read as two little-endian 16-bit halves: the first allele with the separator,
# the second allele with the tab, each looked up at once
_FIRST = np.full(1 << 16, _INVALID, dtype=np.int16)
_PHASED_BY_FIRST = np.zeros(1 << 16, dtype=bool)
_SECOND = np.full(1 << 16, _INVALID, dtype=np.int16)
for _c in b"0123456789.":
    _code = MISSING_ALLELE if _c == _DOT else _c - _ZERO
    _SECOND[_c | _TAB << 8] = _code
    for _sep in (_PHASED, _UNPHASED):
        _FIRST[_c | _sep << 8] = _code
        _PHASED_BY_FIRST[_c | _sep << 8] = _sep == _PHASED


def _parse_fixed(body: np.ndarray, n_samples: int, rows) -> tuple[np.ndarray, np.ndarray]:
    """parse_gt for a line whose calls all take three characters: one 32-bit word per call and its tab."""
    words = np.empty(n_samples, dtype="<u4")
    raw = words.view(np.uint8)
    raw[:-1] = body
    raw[-1] = _TAB
    # every call's tab where it belongs (only then is every column where its offset says)
    if not ((words.view("<u2")[1::2] >> 8) == _TAB).all():
        raise NotPlainGt
    if rows is not None:
        words = words[rows] if isinstance(rows, slice) else np.take(words, rows)
    halves = words.view("<u2")
    first = halves[0::2]
    alleles = np.empty((len(words), 2), dtype=np.int16)
    np.take(_FIRST, first, out=alleles[:, 0])
    np.take(_SECOND, halves[1::2], out=alleles[:, 1])
    if (alleles == _INVALID).any():
        raise NotPlainGt
    return alleles, np.take(_PHASED_BY_FIRST, first)


def parse_gt(body: np.ndarray, n_samples: int, rows: np.ndarray | slice | None) -> tuple[np.ndarray, np.ndarray]:
    """(alleles int16 (k, 2), phased bool (k,)) of the `rows` samples (None: all) from a line's sample columns
    (`body`: bytes after FORMAT, without the line end), as cyvcf2 gives them: '.' -1, a haploid call's second
    allele -2, and haploid calls count as phased."""
    n = len(body)
    if n == 4 * n_samples - 1 and n >= 3:
        return _parse_fixed(body, n_samples, rows)  # (NotPlainGt unless every call is three characters)
    # haploid calls among them: columns found by their tabs
    tabs = np.flatnonzero(body == _TAB)
    if len(tabs) != n_samples - 1:
        raise NotPlainGt
    starts = np.empty(n_samples, dtype=np.int64)
    starts[0] = 0
    starts[1:] = tabs + 1
    ends = np.empty(n_samples, dtype=np.int64)
    ends[:-1] = tabs
    ends[-1] = n
    if rows is not None:
        starts, ends = starts[rows], ends[rows]
    width = ends - starts
    haploid = width == 1
    if not (haploid | (width == 3)).all():
        raise NotPlainGt
    first = body[starts]
    sep = np.where(haploid, _PHASED, body[np.minimum(starts + 1, n - 1)])
    second = np.where(haploid, _ZERO, body[np.minimum(starts + 2, n - 1)])
    phased = sep == _PHASED
    if not (phased | (sep == _UNPHASED)).all():
        raise NotPlainGt
    alleles = np.stack([_alleles(first), _alleles(second)], axis=1)
    if haploid.any():
        alleles[haploid, 1] = NO_ALLELE
    return alleles, phased


BLOCK = 1 << 23  # bytes of text decompressed at a time
_DAMAGED = (OSError, EOFError, zlib.error, isal_zlib.error)  # what a damaged compressed stream raises


def open_text(path: Path) -> BinaryIO:
    """The file's text: gzip (and BGZF) decompressed with ISA-L, anything else as it is."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return igzip.open(path, "rb") if gz else open(path, "rb")


def fixed_columns(path: Path) -> int | None:
    """A memory file (its descriptor) holding `path`'s text with every line other than a `##` header line cut
    after its tenth column (FORMAT and the first sample), for htslib to read in the file's place: the same
    lines, records, fixed columns and first sample. None where the system has no memory files (htslib then
    reads the file itself); NotPlainGt when the compression is damaged (htslib reports it)."""
    if not hasattr(os, "memfd_create"):
        return None
    fd = os.memfd_create("permed-fixed-columns", os.MFD_CLOEXEC)
    try:
        with open_text(path) as src, open(fd, "wb", closefd=False, buffering=1 << 20) as dst:
            rest = b""
            while True:
                try:
                    block = src.read(BLOCK)
                except _DAMAGED:
                    raise NotPlainGt from None
                if not block:
                    break
                buf = rest + block
                start = 0
                while (end := buf.find(b"\n", start)) >= 0:
                    _write_cut(dst, buf, start, end + 1)
                    start = end + 1
                rest = buf[start:]
            if rest:
                _write_cut(dst, rest, 0, len(rest))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_cut(dst, buf: bytes, start: int, end: int) -> None:
    """Line buf[start:end] (with its newline, if any), cut after its tenth column unless a `##` line."""
    if not buf.startswith(b"##", start):
        cut = start
        for _ in range(10):
            cut = buf.find(b"\t", cut, end) + 1
            if cut == 0:
                break
        else:
            dst.write(memoryview(buf)[start:cut - 1])
            if buf[end - 1] == 10:  # (a carriage return before it belonged to the last column)
                dst.write(b"\n")
            return
    dst.write(memoryview(buf)[start:end])


class GtLines:
    """A text VCF's record lines, read in step with htslib's records (`advance` once per record); `parse` reads
    the current line's calls into `calls`. The text is decompressed in large blocks and lines are kept as
    offsets into them (a line of 100,000 samples is 400 kB: `readline` would copy it piece by piece)."""

    BLOCK = BLOCK

    def __init__(self, path: Path, header_lines: int, n_samples: int, rows: np.ndarray | None):
        self.fh = open_text(path)
        self.n_samples = n_samples
        if rows is not None and len(rows) and rows[-1] - rows[0] + 1 == len(rows) and (np.diff(rows) == 1).all():
            rows = slice(int(rows[0]), int(rows[-1]) + 1)  # one range of samples: sliced, not gathered
        self.rows = rows
        self.buf = b""
        self.start = self.end = self.next = 0  # the current line is buf[start:end]; the next starts at `next`
        self.calls: tuple[np.ndarray, np.ndarray] | None = None
        for _ in range(header_lines):
            self.advance()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()

    def advance(self) -> None:
        self.calls = None
        while True:
            i = self.buf.find(b"\n", self.next)
            if i >= 0:
                self.start, self.end, self.next = self.next, i, i + 1
                return
            try:
                block = self.fh.read(self.BLOCK)
            except _DAMAGED:
                raise NotPlainGt from None  # damaged compression, met ahead of htslib: htslib reports it
            rest = self.buf[self.next:]
            if not block:  # the last line, without its newline (or none: htslib has no record either)
                self.buf, self.start, self.end, self.next = rest, 0, len(rest), len(rest)
                return
            self.buf, self.next = rest + block, 0

    def parse(self, chrom: str, pos: int) -> None:
        """The current line's calls into `calls`; the line must be the record htslib read at `chrom` (as
        written) and `pos`."""
        buf, start, end = self.buf, self.start, self.end
        head = start
        for _ in range(9):
            head = buf.find(b"\t", head, end) + 1
            if head == 0:
                raise NotPlainGt
        if buf.find(b"\x00", start, head) >= 0:
            raise NotPlainGt  # htslib ends the line at a NUL byte
        fixed = buf[start:head].split(b"\t")
        if fixed[0] != chrom.encode() or fixed[1] != str(pos).encode() or fixed[8] != b"GT":
            raise NotPlainGt
        if end > head and buf[end - 1] == 13:  # CRLF line ends
            end -= 1
        body = np.frombuffer(buf, dtype=np.uint8, count=end - head, offset=head)
        self.calls = parse_gt(body, self.n_samples, self.rows)
