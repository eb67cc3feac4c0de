"""`permed serve` runs jobs in separate worker processes and restarts any that dies (e.g. kill -9);
a restarted worker re-queues the job the dead one was running (see worker.recover). Jobs are claimed
atomically, so several workers never run the same job.

Workers know the server's process id ($PERMED_SUPERVISOR_PID) and exit when it dies, even by kill -9
(worker.run_worker): an orphaned worker would go on running jobs no server answers for. Two workers by
default, so one job at its limits does not hold up every other."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from permed.service.job_limits import JobLimits
from permed.service.worker import PARENT_ENV

DEFAULT_WORKERS = 2


class WorkerSupervisor:
    def __init__(self, data_dir: Path, database: str | None, workers: int = DEFAULT_WORKERS,
                 check_every: float = 1.0, lease: float | None = None, limits: JobLimits | None = None):
        self.cmd = [sys.executable, "-m", "permed", "worker", "--data-dir", str(data_dir)]
        if lease is not None:
            self.cmd += ["--job-lease", str(lease)]
        if database:
            self.cmd += ["--database", database]
        self.cmd += (limits or JobLimits()).args()  # limits away from their defaults, as flags
        self.check_every = check_every
        self.procs: list[subprocess.Popen | None] = [None] * workers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _start(self, i: int) -> None:
        self.procs[i] = subprocess.Popen(self.cmd, env={**os.environ, PARENT_ENV: str(os.getpid())})

    def _watch(self) -> None:
        while not self._stop.wait(self.check_every):
            for i, proc in enumerate(self.procs):
                if proc is not None and proc.poll() is not None:
                    self._start(i)  # a worker died: start another; it re-queues the orphaned job

    def __enter__(self) -> WorkerSupervisor:
        for i in range(len(self.procs)):
            self._start(i)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in live:
            proc.terminate()
        for proc in live:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
