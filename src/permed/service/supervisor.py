"""`permed serve` runs jobs in a separate worker process and restarts it if it dies (e.g. kill -9);
the restarted worker re-queues the job it was running (see worker.recover)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path


class WorkerSupervisor:
    def __init__(self, data_dir: Path, database: str | None, check_every: float = 1.0):
        self.cmd = [sys.executable, "-m", "permed", "worker", "--data-dir", str(data_dir)]
        if database:
            self.cmd += ["--database", database]
        self.check_every = check_every
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _start(self) -> None:
        self.proc = subprocess.Popen(self.cmd)

    def _watch(self) -> None:
        while not self._stop.wait(self.check_every):
            if self.proc is not None and self.proc.poll() is not None:
                self._start()  # the worker died: start another; it re-queues the orphaned job

    def __enter__(self) -> WorkerSupervisor:
        self._start()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
