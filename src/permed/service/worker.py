"""The job worker: a separate process that takes queued jobs one at a time and runs the engine.

A job is claimed with a conditional UPDATE (queued -> running, naming the worker), so two workers
never take the same job. While it runs, the worker's heartbeat thread refreshes the job's
`heartbeat_at` every HEARTBEAT_EVERY seconds. A job still `running` whose heartbeat is older than
LEASE belongs to a dead worker (kill -9, a lost machine): any worker queues it again, up to
MAX_ATTEMPTS, after which it is `failed`. Live workers' jobs are never touched, so any number of
workers can share one queue. Results are written through StagedOutput: a report appears whole or
not at all, so a half-written report is never served.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from sqlalchemy import or_, select, update

from permed.errors import UserError
from permed.service.store import Job, Sample, Store, utcnow

MAX_ATTEMPTS = 3
HEARTBEAT_EVERY = 2.0  # seconds
LEASE = 10.0  # seconds without a heartbeat before a running job counts as abandoned
log = logging.getLogger("permed.worker")


def results_dir(data_dir: Path, sample_id: int) -> Path:
    return Path(data_dir) / "results" / str(sample_id)


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

    def __init__(self, store: Store, job_id: int, me: str):
        self.store, self.job_id, self.me = store, job_id, me
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="permed-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY):
            with self.store.session() as s:
                s.execute(update(Job).where(Job.id == self.job_id, Job.worker == self.me,
                                            Job.state == "running").values(heartbeat_at=utcnow()))

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_job(store: Store, data_dir: Path, job: Job, me: str) -> None:
    from permed.advice.advice_set import AdviceSet
    from permed.advice.engine import AdviceEngine
    from permed.advice.medications import drug_index, parse_medications
    from permed.kb.load import load_kb
    from permed.phenotype.outside_calls import OutsideCallsText
    from permed.phenotype.phenotype_set import interpret
    from permed.pipeline import CallOptions, call_files
    from permed.report.i18n import available_languages
    from permed.report.output import write_outputs
    from permed.service.indexing import queryable
    from permed.service.uploads import OUTSIDE_CALLS_NAME

    with store.session() as s:
        sample = s.get(Sample, job.sample_id)
    upload = upload_path(data_dir, sample.sha256)
    path = upload  # what the job reads: the upload or its indexed copy

    def as_uploaded(text: str) -> str:  # messages and reports name the lab's file, never a server path
        for p in (str(path), str(upload), path.name, upload.name):
            text = text.replace(p, sample.filename)
        return text

    delay = float(os.environ.get("PERMED_TEST_JOB_DELAY", "0"))  # tests: a window to kill the worker in
    try:
        path = queryable(upload, data_dir, sample.sha256)
        kb = load_kb()
        callset = call_files([path], kb, CallOptions())
        # the uploaded file's name and hash (an indexed copy holds the same records, compressed anew)
        callset.inputs = [replace(i, file=sample.filename, sha256=sample.sha256,
                                  notices=[as_uploaded(n) for n in i.notices])
                          for i in callset.inputs]
        if delay:
            time.sleep(delay)
        outside = [OutsideCallsText(OUTSIDE_CALLS_NAME, sample.outside_calls)] if sample.outside_calls else []
        pset = interpret(callset, outside)
        meds = parse_medications(sample.medications, drug_index(kb))
        advice = AdviceSet(AdviceEngine(kb), pset, meds)
        # English HTML, and one per further report language so clinicians can switch without a re-run
        write_outputs(callset, pset, results_dir(data_dir, sample.id), advice=advice, formats=("html",),
                      also_html=tuple(available_languages()[1:]))
        state, error = "done", None
    except UserError as exc:
        state, error = "failed", as_uploaded(str(exc))
    except Exception as exc:  # a bug: fail this job (a retry would fail the same way), keep the worker
        state, error = "failed", f"internal error ({type(exc).__name__}); the server log names job {job.id}"
        # where it happened, without the exception's message: messages can quote sample names or data
        log.error("job %d failed with %s at\n%s", job.id, type(exc).__name__,
                  "".join(traceback.format_tb(exc.__traceback__)).rstrip())
    with store.session() as s:  # only if the job is still ours (not re-queued after a lost lease)
        s.execute(update(Job).where(Job.id == job.id, Job.worker == me, Job.state == "running").values(
            state=state, error=error, updated_at=utcnow()))


def run_worker(store: Store, data_dir: Path, poll: float = 0.5, once: bool = False,
               lease: float = LEASE) -> int:
    """Process jobs until none is left (`once`) or forever. Returns the number of jobs run."""
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
        with _Heartbeat(store, job.id, me):
            run_job(store, data_dir, job, me)
        done += 1
