"""Atomic output directories: files are written into a hidden staging directory inside OUT and
moved into place only when every one of them was written, so a failure leaves nothing half-done."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from permed.errors import OutputError, raise_if_stopped

STAGING_PREFIX = ".permed-"
LEGACY_STALE_AFTER = 24 * 3600  # seconds: staging folders that name no process (older permed) count as stale after


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_staging(out_dir: Path) -> list[Path]:
    """Staging folders left by a run that was killed (its process is gone): removed, so a crash leaves no
    half-written output for long. Folders of live runs are left alone. Returns what was removed."""
    import time

    removed = []
    for d in Path(out_dir).glob(f"{STAGING_PREFIX}*"):
        pid = d.name[len(STAGING_PREFIX):].split("-", 1)[0]
        try:
            stale = not _alive(int(pid)) if pid.isdigit() else time.time() - d.stat().st_mtime > LEGACY_STALE_AFTER
        except OSError:
            continue
        if stale and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


class StagedOutput:
    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.written: list[str] = []
        self.tmp: Path | None = None

    def __enter__(self) -> StagedOutput:
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise OutputError(f"{self.out_dir}: exists and is not a directory")
        self.created = not self.out_dir.exists()
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_staging(self.out_dir)
            self.tmp = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=self.out_dir))
        except OSError as exc:
            raise OutputError(f"{self.out_dir}: cannot write output ({exc.strerror})") from None
        return self

    def path(self, name: str) -> Path:
        """Where to write `name` now; it reaches OUT at commit()."""
        self.written.append(name)
        return self.tmp / name

    def commit(self) -> list[Path]:
        raise_if_stopped()  # a stop whose exception was lost on the way still leaves nothing behind
        final = []
        for name in self.written:
            os.replace(self.tmp / name, self.out_dir / name)
            final.append(self.out_dir / name)
        return final

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if exc_type is not None and self.created:
            # a failed run leaves no trace: not even the directory it made (a streamed run makes it first)
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()
        if isinstance(exc, OSError):
            raise OutputError(f"{self.out_dir}: cannot write output ({exc.strerror})") from None
