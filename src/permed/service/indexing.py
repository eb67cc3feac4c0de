"""Region-queryable copies of uploads, so a job reads only the windows around definition positions
instead of decoding a whole genome (the same windowed read `permed call` does on indexed files).

Uploads carry no index. Before a job reads one, it gets a CSI index in data/indexed/: a bgzipped VCF or
BCF is linked there as it is; a plain or plain-gzip VCF is first recompressed with bgzip (one pass in C).
When that is impossible (an unsorted file, a broken record, uncompressed BCF) the job reads the upload
whole, and that full read reports whatever is wrong, as `permed call` would."""

from __future__ import annotations

import gzip
import os
import shutil
import uuid
import zlib
from pathlib import Path

from permed.genotypes.files import captured_stderr, has_index, is_bcf, is_bgzf


def queryable(upload: Path, data_dir: Path, sha256: str) -> Path:
    """The indexed copy of this upload (built on first use, shared by every job on the same file),
    or the upload itself when it cannot be indexed."""
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
    tmp = out_dir / f".{sha256}.{uuid.uuid4().hex}.tmp"
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
