"""Region-queryable copies of uploads, so a job reads only the windows around definition positions
instead of decoding a whole genome (the same windowed read `permed call` does on indexed files).

Uploads carry no index. Before a job reads one, it gets a CSI index in data/indexed/: a bgzipped VCF or
BCF is linked there as it is; a plain or plain-gzip VCF is first recompressed with bgzip (one pass in C).
When that is impossible (an unsorted file, a broken record, uncompressed BCF) the job reads the upload
whole, and that full read reports whatever is wrong, as `permed call` would.

Before either, `check_shape` streams the upload once and counts its inflated bytes, records and header
samples, stopping at the first job limit it passes (job_limits.py): a decompression bomb costs a job at
most the limit's worth of inflating, with nothing written to disk."""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from permed.errors import InputFileError
from permed.genotypes.files import captured_stderr, has_index, is_bcf, is_bgzf
from permed.service.job_limits import JobLimits

CHUNK = 1 << 20


def queryable(upload: Path, data_dir: Path, sha256: str, limits: JobLimits | None = None,
              label: str | None = None) -> Path:
    """The indexed copy of this upload (built on first use, shared by every job on the same file),
    or the upload itself when it cannot be indexed. An upload beyond a job limit raises JobLimitExceeded;
    binary data in a text VCF raises InputFileError (messages name the file as `label`)."""
    check_shape(upload, limits or JobLimits(), label)
    bcf = is_bcf(upload)
    if bcf and not is_bgzf(upload):
        return upload  # uncompressed BCF: htslib cannot index it
    out_dir = Path(data_dir) / "indexed"
    target = out_dir / f"{sha256}{'.bcf' if bcf else '.vcf.gz'}"
    if target.exists() and has_index(target):
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    # built under temporary names, then renamed (the file before its index): a concurrent job never
    # finds an index beside a partial file, and a file that cannot be indexed leaves nothing behind
    tmp = out_dir / f".{sha256}.{temp_owner()}.{uuid.uuid4().hex}.tmp"
    tmp_index = Path(f"{tmp}.csi")
    try:
        if is_bgzf(upload):
            os.symlink(upload.resolve(), tmp)
        else:
            _bgzip(upload, tmp)
        _index(tmp, tmp_index)
        os.replace(tmp, target)
        os.replace(tmp_index, f"{target}.csi")
        return target
    except (OSError, EOFError, zlib.error, RuntimeError):
        return upload
    finally:
        for leftover in (tmp, tmp_index):
            leftover.unlink(missing_ok=True)


def _bgzip(src: Path, dst: Path) -> None:
    from pysam.libcbgzf import BGZFile

    with open(src, "rb") as fh:
        opener = gzip.open if fh.read(2) == b"\x1f\x8b" else open
    with opener(src, "rb") as text, BGZFile(str(dst), "wb") as out:
        shutil.copyfileobj(text, out, 1 << 20)


def _index(path: Path, out: Path) -> None:
    """CSI index (any chromosome length) via htslib's bcftools; an unsorted or broken file raises."""
    from pysam import bcftools
    from pysam.utils import SamtoolsError

    # htslib's messages can quote records: kept out of the logs
    with captured_stderr():
        try:
            bcftools.index("--csi", "-f", "-o", str(out), str(path))
        except SamtoolsError as exc:
            raise RuntimeError("index failed") from exc
    if not out.is_file():
        raise RuntimeError("index failed")


def temp_owner() -> str:
    """Host and process in a temporary file's name: a clean-up can tell a dead writer's leftovers."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Shape:
    inflated: int = 0  # bytes, decompressed
    records: int = 0
    samples: int = 0


def check_shape(upload: Path, limits: JobLimits, label: str | None = None) -> Shape:
    """Count the upload's inflated bytes, records and header samples in one streamed pass, raising
    JobLimitExceeded at the first limit passed (before reading further). A NUL byte in a text VCF (binary
    data, e.g. a bomb of zeros behind a valid header) is refused here, before anything is recompressed."""
    with open(upload, "rb") as fh:
        compressed = fh.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open if compressed else open)(upload, "rb") as fh:
            if fh.read(3) == b"BCF":
                return _bcf_shape(fh, limits)
            fh.seek(0)
            text = _TextShape(limits, label or str(upload))
            while chunk := fh.read(CHUNK):
                text.feed(chunk)
            return text.done()
    except (OSError, EOFError, zlib.error):
        return Shape()  # damaged compression: the engine's read says what is wrong, in its words


class _TextShape:
    """VCF text fed in chunks: lines, header lines (starting '#') and the tabs of the #CHROM line."""

    def __init__(self, limits: JobLimits, label: str | None = None):
        self.limits = limits
        self.label = label  # None: binary data allowed (a BCF header's terminating NUL)
        self.shape = Shape()
        self.lines = self.header_lines = 0
        self.tail = b"\n"  # the bytes before the chunk: the file starts at a line start
        self.chrom_tabs: int | None = None  # tabs seen on the #CHROM line so far
        self.in_chrom = False

    def feed(self, chunk: bytes) -> None:
        shape, limits = self.shape, self.limits
        shape.inflated += len(chunk)
        if shape.inflated > limits.inflated_bytes:
            raise limits.too_inflated()
        nul = chunk.find(b"\0") if self.label is not None else -1
        if nul >= 0:
            line = self.lines + chunk.count(b"\n", 0, nul) + 1
            raise InputFileError(f"{self.label}: line {line}: a NUL byte (binary data): not VCF text")
        window = self.tail + chunk
        self.lines += chunk.count(b"\n")
        self.header_lines += window.count(b"\n#")
        if self.chrom_tabs is None:
            at = window.find(b"\n#CHROM")
            if at >= 0:
                self.chrom_tabs, self.in_chrom = 0, True
                self._count_tabs(window[at + 1:])
        elif self.in_chrom:
            self._count_tabs(chunk)
        shape.records = self.lines - self.header_lines
        if shape.records > limits.records:
            raise limits.too_many_records()
        self.tail = window[-7:]

    def _count_tabs(self, data: bytes) -> None:
        end = data.find(b"\n")
        self.chrom_tabs += data.count(b"\t", 0, len(data) if end < 0 else end)
        self.in_chrom = end < 0
        self.shape.samples = max(0, self.chrom_tabs - 8)  # 9 fixed columns, then one per sample
        if self.shape.samples > self.limits.samples:
            raise self.limits.too_many_samples()

    def done(self) -> Shape:
        if self.tail[-1:] != b"\n":  # a last line without its newline
            self.lines += 1
            self.shape.records = self.lines - self.header_lines
            if self.shape.records > self.limits.records:
                raise self.limits.too_many_records()
        return self.shape


def _bcf_shape(fh, limits: JobLimits) -> Shape:
    """BCF: magic, header text (its #CHROM line names the samples), then records each led by two
    lengths, walked without decoding them."""
    head = fh.read(6)  # the rest of the magic (2 bytes) and the header's length
    if len(head) < 6:
        return Shape()
    (l_text,) = struct.unpack("<I", head[2:])
    if l_text > limits.inflated_bytes:
        raise limits.too_inflated()
    text = _TextShape(limits)
    left = l_text
    while left and (chunk := fh.read(min(left, CHUNK))):
        text.feed(chunk)
        left -= len(chunk)
    shape = Shape(inflated=5 + 4 + l_text, samples=text.shape.samples)
    buf, at = b"", 0
    while chunk := fh.read(CHUNK):
        shape.inflated += len(chunk)
        if shape.inflated > limits.inflated_bytes:
            raise limits.too_inflated()
        buf = buf[at:] + chunk
        at = 0
        while at + 8 <= len(buf):
            shared, indiv = struct.unpack_from("<II", buf, at)
            step = 8 + shared + indiv
            if at + step > len(buf):
                break
            at += step
            shape.records += 1
        if at < len(buf) and len(buf) - at >= 8:  # a record longer than what is buffered: skip its rest
            shared, indiv = struct.unpack_from("<II", buf, at)
            need = 8 + shared + indiv - (len(buf) - at)
            while need > 0 and (more := fh.read(min(need, CHUNK))):
                shape.inflated += len(more)
                if shape.inflated > limits.inflated_bytes:
                    raise limits.too_inflated()
                need -= len(more)
            buf, at = b"", 0
            shape.records += 1
        if shape.records > limits.records:
            raise limits.too_many_records()
    return shape
