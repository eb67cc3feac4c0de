"""The job worker: a separate process that takes queued jobs one at a time and runs the engine.

A job is claimed with a conditional UPDATE (queued -> running, naming the worker), so two workers
never take the same job. While it runs, the worker's heartbeat thread refreshes the job's
`heartbeat_at` five times per lease. A job still `running` whose heartbeat is older than the
lease (LEASE by default, `--job-lease`) belongs to a dead worker (kill -9, a lost machine): any
worker queues it again, up to MAX_ATTEMPTS, after which it is `failed`. Live workers' jobs are never
touched, so any number of workers can share one queue. Results are written through StagedOutput: a
report appears whole or not at all, so a half-written report is never served.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update

from permed.errors import PermedError
from permed.service.store import Job, Store, Upload, utcnow

if TYPE_CHECKING:
    from permed.engine import Engine

MAX_ATTEMPTS = 3
LEASE = 10.0  # seconds without a heartbeat before a running job counts as abandoned
BEATS_PER_LEASE = 5  # a worker that misses a few heartbeats (a busy database) keeps its job
log = logging.getLogger("permed.worker")


def results_dir(data_dir: Path, upload_id: int) -> Path:
    return Path(data_dir) / "results" / str(upload_id)


def upload_path(data_dir: Path, sha256: str) -> Path:
    """The stored upload (named by its SHA-256, with the client's VCF/BCF extension)."""
    return next((Path(data_dir) / "uploads").glob(f"{sha256}.*"))


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def recover(store: Store, lease: float = LEASE) -> int:
    """Jobs whose worker stopped beating: queue again, or fail after MAX_ATTEMPTS. Returns how many."""
    stale = utcnow() - timedelta(seconds=lease)
    with store.session() as s:
        orphans = list(s.scalars(select(Job).where(
            Job.state == "running", or_(Job.heartbeat_at.is_(None), Job.heartbeat_at <= stale))))
        for job in orphans:
            if job.attempts >= MAX_ATTEMPTS:
                job.state, job.error = "failed", f"worker stopped during the job {job.attempts} times"
            else:
                job.state = "queued"
            job.worker, job.updated_at = None, utcnow()
    return len(orphans)


def claim(store: Store, me: str) -> Job | None:
    with store.session() as s:
        for job_id in s.scalars(select(Job.id).where(Job.state == "queued").order_by(Job.id).limit(5)):
            now = utcnow()
            taken = s.execute(update(Job).where(Job.id == job_id, Job.state == "queued").values(
                state="running", attempts=Job.attempts + 1, worker=me, heartbeat_at=now, updated_at=now))
            if taken.rowcount == 1:
                return s.get(Job, job_id)
    return None


class _Heartbeat:
    """Refreshes the running job's heartbeat from a thread while the engine works."""

    def __init__(self, store: Store, job_id: int, me: str, every: float):
        self.store, self.job_id, self.me, self.every = store, job_id, me, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="permed-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            with self.store.session() as s:
                s.execute(update(Job).where(Job.id == self.job_id, Job.worker == self.me,
                                            Job.state == "running").values(heartbeat_at=utcnow()))

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_job(store: Store, data_dir: Path, job: Job, me: str, engine: Engine) -> None:
    """Run one job through the engine; its reports appear whole in results/<upload id>/ or not at all."""
    from permed.engine import Inputs, VcfInput
    from permed.options import Options
    from permed.phenotype.outside_calls import OutsideCallsText
    from permed.report.i18n import available_languages
    from permed.service.indexing import queryable
    from permed.service.uploads import OUTSIDE_CALLS_NAME

    with store.session() as s:
        upload = s.get(Upload, job.upload_id)
    stored = upload_path(data_dir, upload.sha256)
    try:
        # read an indexed copy (windows around definition positions), reported as the lab's file
        vcf = VcfInput(queryable(stored, data_dir, upload.sha256), name=upload.filename, label=upload.filename,
                       sha256=upload.sha256)
        outside = [OutsideCallsText(OUTSIDE_CALLS_NAME, upload.outside_calls)] if upload.outside_calls else []
        result = engine.run(Inputs.of(vcfs=vcf, outside_calls=outside, medications=upload.medications), Options())
        # English HTML, and one per further report language so clinicians can switch without a re-run
        result.write(results_dir(data_dir, upload.id), formats=("html",), also_html=tuple(available_languages()[1:]))
        state, error = "done", None
    except PermedError as exc:
        state, error = "failed", str(exc)
    except Exception as exc:  # a bug: fail this job (a retry would fail the same way), keep the worker
        state, error = "failed", f"internal error ({type(exc).__name__}); the server log names job {job.id}"
        # where it happened, without the exception's message: messages can quote sample names or data
        log.error("job %d failed with %s at\n%s", job.id, type(exc).__name__,
                  "".join(traceback.format_tb(exc.__traceback__)).rstrip())
    with store.session() as s:  # only if the job is still ours (not re-queued after a lost lease)
        s.execute(update(Job).where(Job.id == job.id, Job.worker == me, Job.state == "running").values(
            state=state, error=error, updated_at=utcnow()))


def run_worker(store: Store, data_dir: Path, poll: float = 0.5, once: bool = False,
               lease: float = LEASE, engine: Engine | None = None) -> int:
    """Process jobs until none is left (`once`) or forever. Returns the number of jobs run.
    The engine (knowledge base and all) is built once, before the first job."""
    from permed.engine import Engine

    engine = engine or Engine()
    me = worker_id()
    done = 0
    while True:
        recover(store, lease)
        job = claim(store, me)
        if job is None:
            if once:
                return done
            time.sleep(poll)
            continue
        with _Heartbeat(store, job.id, me, lease / BEATS_PER_LEASE):
            run_job(store, data_dir, job, me, engine)
        done += 1
