"""Atomic output directories: files are written into a hidden staging directory inside OUT and
moved into place only when every one of them was written, so a failure leaves nothing half-done."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from permed.errors import OutputError


class StagedOutput:
    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.written: list[str] = []
        self.tmp: Path | None = None

    def __enter__(self) -> StagedOutput:
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise OutputError(f"{self.out_dir}: exists and is not a directory")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=".permed-", dir=self.out_dir))
        except OSError as exc:
            raise OutputError(f"{self.out_dir}: cannot write output ({exc.strerror})") from None
        return self

    def path(self, name: str) -> Path:
        """Where to write `name` now; it reaches OUT at commit()."""
        self.written.append(name)
        return self.tmp / name

    def commit(self) -> list[Path]:
        final = []
        for name in self.written:
            os.replace(self.tmp / name, self.out_dir / name)
            final.append(self.out_dir / name)
        return final

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise OutputError(f"{self.out_dir}: cannot write output ({exc.strerror})") from None
