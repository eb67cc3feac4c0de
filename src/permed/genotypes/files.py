"""File-level checks and plumbing for VCF/BCF input: what htslib would report obscurely or not at all."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import re
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path

from permed.errors import InputFileError

_UNDECLARED_FORMAT = re.compile(r"FORMAT '([^']+)' .*is not defined in the header")


class HtslibMessages(list):
    """htslib's messages once the capture ends; while it runs, `new_errors()` peeks at what arrived."""

    def __init__(self, tmp):
        super().__init__()
        self._tmp = tmp
        self._seen = 0
        self.undeclared_format: set[str] = set()  # FORMAT keys htslib met without a header line

    def new_errors(self) -> list[str]:
        """Error lines written since the last look (one fstat when there are none: cheap per record).
        htslib reports a record it could not parse and still hands it over half-filled; touching it can
        crash the process, so the reader looks before it touches."""
        size = os.fstat(self._tmp.fileno()).st_size
        if size == self._seen:
            return []
        data = os.pread(self._tmp.fileno(), size - self._seen, self._seen)
        self._seen = size
        lines = data.decode(errors="replace").splitlines()
        self.undeclared_format.update(m.group(1) for m in map(_UNDECLARED_FORMAT.search, lines) if m)
        return [m for m in lines if m.startswith("[E::")]

    @contextmanager
    def muted(self):
        """htslib's messages dropped while this lasts (what it says a second time about the same text)."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        try:
            yield
        finally:
            os.dup2(self._tmp.fileno(), 2)


@contextmanager
def captured_stderr(label: str | None = None):
    """Collect htslib's messages (it writes to fd 2) so they become our own one-line errors. With `label`
    (the file being read), an exit() that htslib calls itself on data it cannot decode ends the process
    with our one-line error naming the file and exit code 2, instead of silently."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        box = HtslibMessages(tmp)
        guard = (label, saved, tmp)
        if label is not None:
            _watch_htslib_exit()
            _READING.append(guard)
        try:
            yield box
        finally:
            if label is not None:
                _READING.remove(guard)
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box.extend(tmp.read().decode(errors="replace").splitlines())


# files being read now, innermost last: (label, the real stderr, htslib's captured messages)
_READING: list[tuple] = []
_EXIT_HOOK: list = []


def _on_process_exit() -> None:
    """Runs inside C exit(): only while a file is being read does it mean htslib gave up on that file."""
    if not _READING:
        return
    label, stderr_fd, tmp = _READING[-1]
    try:
        size = os.fstat(tmp.fileno()).st_size
        lines = os.pread(tmp.fileno(), size, 0).decode(errors="replace").splitlines()
        detail = clean_htslib(next((m for m in reversed(lines) if m.startswith("[E::")), "a record it cannot decode"))
        os.write(stderr_fd, f"permed: error: {label}: htslib cannot read the file: {detail}\n".encode())
    finally:
        os._exit(2)


def _watch_htslib_exit() -> None:
    """Register _on_process_exit with the C library's atexit, once per process."""
    if _EXIT_HOOK:
        return
    import atexit
    import ctypes

    # glibc's atexit() is a static wrapper around __cxa_atexit, which takes the handler's argument and an
    # owner handle too. The handler is Python code, so it must not outlive the interpreter: registered
    # under a handle of ours, it is run (a no-op then) and removed by __cxa_finalize(handle) when the
    # interpreter starts to shut down normally; only an exit() from inside htslib reaches it live.
    callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _arg: _on_process_exit())
    owner = ctypes.create_string_buffer(1)
    try:
        libc = ctypes.CDLL(None)
        register, finalize = libc.__cxa_atexit, libc.__cxa_finalize
    except (OSError, AttributeError):  # no C library hook: the reader's own checks remain
        return
    register.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]  # pointers, not 32-bit ints
    finalize.argtypes = [ctypes.c_void_p]
    if register(ctypes.cast(callback, ctypes.c_void_p), None, ctypes.addressof(owner)) != 0:
        return
    atexit.register(finalize, ctypes.addressof(owner))
    _EXIT_HOOK.extend((callback, owner))  # kept alive: the C library holds only their addresses


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
    if not path.is_file():  # a pipe or device: htslib and our checks read the file more than once
        raise InputFileError(f"{where}: is not a regular file (a pipe or device); save the VCF to a file first")
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


def _text_lines(path: Path):
    """The lines of a plain or gzipped text VCF, as bytes."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
        yield from fh


def header_line_count(path: Path) -> int:
    """Lines before the first record of a text VCF (the header as written in the file)."""
    n = 0
    try:
        for line in _text_lines(path):
            if not line.startswith(b"#"):
                break
            n += 1
            if line.startswith(b"#CHROM"):  # later '#' lines are comments among the records
                break
    except (OSError, EOFError, zlib.error):
        pass  # the read itself reports a damaged file
    return n


def describe_line(path: Path, number: int, n_samples: int) -> str | None:
    """What is wrong with line `number` of a text VCF that htslib could not parse, in our words (None when
    we cannot tell better than htslib)."""
    try:
        text = next(itertools.islice(_text_lines(path), number - 1, None), None)
        if text is None:
            return None
    except (OSError, EOFError, zlib.error):
        return None
    if b"\x00" in text:
        return "NUL bytes where text should be: the file is binary or damaged, not a VCF"
    fields = text.rstrip(b"\r\n").split(b"\t")
    expected = 9 + n_samples
    if len(fields) < 8:
        return (f"{len(fields)} tab-separated column(s); a record needs CHROM POS ID REF ALT QUAL FILTER INFO, "
                f"then FORMAT and one column per sample ({expected} in all)")
    if len(fields) != expected:
        return (f"{len(fields)} tab-separated columns; the header names {n_samples} sample(s), "
                f"so {expected} are expected")
    if not fields[1].isdigit():
        return f"POS {fields[1][:20].decode(errors='replace')!r} is not a positive integer"
    return None


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


def index_of(path: Path) -> Path | None:
    """The tabix/CSI index beside a bgzipped VCF or a BCF (region queries possible), if there is one."""
    name = str(path)
    if not name.endswith((".gz", ".bgz", ".bcf")):
        return None
    return next((Path(name + ext) for ext in (".tbi", ".csi") if Path(name + ext).is_file()), None)


def has_index(path: Path) -> bool:
    return index_of(path) is not None


def stale_index(path: Path) -> Path | None:
    """An index older than its file: made for an earlier version of it, so its offsets may point anywhere."""
    index = index_of(path)
    if index is not None and index.stat().st_mtime < Path(path).stat().st_mtime:
        return index
    return None
