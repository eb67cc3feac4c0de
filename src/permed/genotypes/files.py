"""File-level checks and plumbing for VCF/BCF input: what htslib would report obscurely or not at all."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path

from permed.errors import InputFileError


@contextmanager
def captured_stderr():
    """Collect htslib's messages (it writes to fd 2) so they become our own one-line errors."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        box: list[str] = []
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box.extend(tmp.read().decode(errors="replace").splitlines())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def precheck(path: Path, label: str | None = None) -> None:
    """Problems htslib would report obscurely or not at all; messages name the file as `label`."""
    where = label or str(path)
    if not path.exists():
        raise InputFileError(f"{where}: no such file")
    if path.is_dir():
        raise InputFileError(f"{where}: is a directory, expected a VCF/BCF file")
    size = path.stat().st_size
    if size == 0:
        raise InputFileError(f"{where}: file is empty")
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as gz:
                text = gz.read(1 << 16)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputFileError(f"{where}: corrupt gzip data ({exc})") from None
    elif head[:3] == b"BCF":
        return
    else:
        text = head
    if text[:3] == b"BCF":
        return
    if not text.startswith(b"##fileformat=VCF") and not text.startswith(b"#CHROM"):
        first = text.split(b"\n", 1)[0][:60].decode(errors="replace")
        raise InputFileError(f"{where}: line 1: not a VCF file (expected '##fileformat=VCF...', found {first!r})")
    if b"\r\n" in text:
        line = text[: text.index(b"\r\n")].count(b"\n") + 1
        raise InputFileError(f"{where}: line {line}: Windows (CRLF) line endings; convert the file with dos2unix")
    for no, line_text in enumerate(text.split(b"\n")[:-1], start=1):  # complete lines of the first block
        if line_text.startswith(b"#CHROM"):
            break
        if not line_text.startswith(b"#"):
            raise InputFileError(f"{where}: line {no}: record before the #CHROM header line (the header must end "
                                 "with #CHROM POS ID REF ALT QUAL FILTER INFO FORMAT and the sample names)")


def is_bcf(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as gz:
                return gz.read(3) == b"BCF"
        return head + fh.read(1) == b"BCF"


def is_bgzf(path: Path) -> bool:
    """Blocked gzip (bgzip) — what region indexes need — rather than plain gzip: the gzip header
    carries the extra subfield 'BC'."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    return len(head) == 18 and head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


def clean_htslib(msg: str) -> str:
    return re.sub(r"^\[[EW]::[^\]]*\]\s*", "", msg).strip()


def has_index(path: Path) -> bool:
    """A tabix/CSI index beside a bgzipped VCF or a BCF (region queries possible)."""
    name = str(path)
    if not name.endswith((".gz", ".bgz", ".bcf")):
        return False
    return any(Path(name + ext).is_file() for ext in (".tbi", ".csi"))
