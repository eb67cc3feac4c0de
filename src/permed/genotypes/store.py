"""Records kept from the single pass over a VCF: only those at (or representing) definition positions.

Genotype blocks are held in memory for small cohorts and spilled to a temporary directory for large
ones, so that the calling pass can work on one chunk of samples at a time with bounded memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPILL_SAMPLES = 20_000  # above this many samples, genotype blocks live on disk
_INT_MISSING = np.iinfo(np.int32).min


@dataclass
class StoredRecord:
    line: int | None
    chrom: str
    pos: int
    ref: str
    alts: list[str]
    filter: str | None
    block_end: int | None
    exact: list
    near: list
    extra: list
    # imputation quality below --min-info (e.g. "R2=0.42"): the record makes its positions missing for everyone
    low_quality: str | None = None


class FieldError(ValueError):
    """A FORMAT value that cannot be what it claims to be (the reader names the file and record)."""


_I64 = np.iinfo(np.int64)


def _int64(text: str, field: str) -> int:
    value = int(text)
    if not _I64.min <= value <= _I64.max:
        raise FieldError(f"{field} value {text[:30]!r} does not fit a 64-bit integer")
    return value


def phase_sets(psf: np.ndarray, n: int) -> np.ndarray:
    """PS values as int64 (0 = none); PS undeclared in the header arrives as strings."""
    if psf.dtype.kind in "iu":
        v = psf.reshape(n, -1)[:, 0].astype(np.int64)
        return np.where(v > _INT_MISSING + 1, v, 0)
    flat = [str(x) for x in np.asarray(psf).reshape(-1)][:n]
    return np.array([_int64(x, "PS") if x.lstrip("-").isdigit() else 0 for x in flat], dtype=np.int64)


def allelic_depths(ad: np.ndarray, n: int) -> np.ndarray:
    """AD as ints (missing < 0); AD undeclared in the header arrives as strings ("12,3")."""
    if ad.dtype.kind in "iu":
        return ad.reshape(n, -1)
    rows = [[_int64(v, "AD") if v.isdigit() else -1 for v in str(x).split(",")]
            for x in np.asarray(ad).reshape(n, -1)[:, 0]]
    width = max((len(r) for r in rows), default=0)
    return np.array([r + [-1] * (width - len(r)) for r in rows], dtype=np.int64).reshape(n, width)


class RecordStore:
    """Kept records with their per-sample arrays. Above SPILL_SAMPLES samples the arrays are appended to
    one temporary file (a .npy per record cost a file open per record and chunk: ~1 s at 100,000 samples)
    and each chunk reads back its own rows of each array."""

    def __init__(self, n_samples: int):
        self.n = n_samples
        self.items: list[tuple[StoredRecord, dict]] = []
        self._dir: Path | None = None
        self._file = None  # the spill file, open for appending while records are added
        self._size = 0

    def add(self, rec: StoredRecord, gts, ps_raw, ad_raw, reasons: np.ndarray | None = None) -> None:
        arrays = {}
        if reasons is not None and reasons.any():  # why hard calls from probabilities were not made
            arrays["why"] = reasons
        if gts is not None:
            arrays["gt"], arrays["phased"] = gts
        if ps_raw is not None:
            arrays["ps"] = phase_sets(ps_raw, self.n)
        if ad_raw is not None:
            arrays["ad"] = allelic_depths(ad_raw, self.n)
        if self.n > SPILL_SAMPLES and arrays:
            arrays = {k: self._spill(_compact(k, a)) for k, a in arrays.items()}
        self.items.append((rec, arrays))

    def _spill(self, a: np.ndarray) -> _Spilled:
        if self._file is None:
            self._dir = Path(tempfile.mkdtemp(prefix="permed-records-"))
            self._file = open(self._dir / "arrays.bin", "w+b")  # noqa: SIM115 - open until the pass ends
        a = np.ascontiguousarray(a)
        self._file.write(a.data)
        where = _Spilled(self._size, a.dtype, a.shape)
        self._size += a.nbytes
        return where

    def records(self, chunk: slice):
        """(record, (gt, phased) or None, phase sets or None, allelic depths or None, reasons or None) for a
        sample chunk (reasons: per sample, why a call from probabilities was not made; see probabilities.py)."""
        fd = None
        if self._file is not None:
            self._file.flush()
            fd = self._file.fileno()
        for rec, arrays in self.items:
            part = {k: _slice(v, chunk, fd) for k, v in arrays.items()}
            gts = (part["gt"], part["phased"]) if "gt" in part else None
            yield rec, gts, part.get("ps"), part.get("ad"), part.get("why")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


@dataclass(frozen=True)
class _Spilled:
    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]


def _compact(kind: str, a: np.ndarray) -> np.ndarray:
    """Alleles fit 8 bits in all but pathological records: half the bytes to write and read back."""
    if kind == "gt" and a.dtype == np.int16 and a.size and -128 <= a.min() and a.max() <= 127:
        return a.astype(np.int8)
    return a


def _slice(v, chunk: slice, fd: int | None) -> np.ndarray:
    if isinstance(v, _Spilled):
        # the chunk's rows are one byte range of the record's array: read just those (a memory map would
        # keep every page read so far in the process's resident memory)
        start, stop, _ = chunk.indices(v.shape[0])
        row = (int(np.prod(v.shape[1:])) if len(v.shape) > 1 else 1) * v.dtype.itemsize
        data = os.pread(fd, (stop - start) * row, v.offset + start * row)
        part = np.frombuffer(data, dtype=v.dtype).reshape((stop - start, *v.shape[1:]))
        return part.astype(np.int16) if v.dtype == np.int8 else part.copy()
    return v[chunk]


@dataclass
class Extract:
    """Everything the calling pass needs from a file, independent of which samples it processes."""

    path: Path
    sha256: str
    samples: tuple[str, ...]
    store: RecordStore
    chroms_seen: set[str]
    near_genes: set[str]
    notices: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.store.close()
