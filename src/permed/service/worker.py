"""The job worker: a separate process that takes queued jobs one at a time and runs the engine.

A job is claimed with a conditional UPDATE (queued -> running), so two workers never take the same
job. Results are written through StagedOutput: a report appears whole or not at all. A worker that
starts finds any job left `running` by a dead worker and queues it again, up to MAX_ATTEMPTS, after
which the job is `failed` — a half-written report is never served.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from pathlib import Path

from sqlalchemy import select, update

from permed.errors import UserError
from permed.service.store import Job, Sample, Store, utcnow

MAX_ATTEMPTS = 3
log = logging.getLogger("permed.worker")


def results_dir(data_dir: Path, sample_id: int) -> Path:
    return Path(data_dir) / "results" / str(sample_id)


def recover(store: Store) -> int:
    """Jobs a dead worker left running: queue again, or fail after MAX_ATTEMPTS. Returns how many."""
    with store.session() as s:
        orphans = list(s.scalars(select(Job).where(Job.state == "running")))
        for job in orphans:
            if job.attempts >= MAX_ATTEMPTS:
                job.state, job.error = "failed", f"worker stopped during the job {job.attempts} times"
            else:
                job.state = "queued"
            job.updated_at = utcnow()
    return len(orphans)


def claim(store: Store) -> Job | None:
    with store.session() as s:
        for job_id in s.scalars(select(Job.id).where(Job.state == "queued").order_by(Job.id).limit(5)):
            taken = s.execute(update(Job).where(Job.id == job_id, Job.state == "queued").values(
                state="running", attempts=Job.attempts + 1, updated_at=utcnow()))
            if taken.rowcount == 1:
                return s.get(Job, job_id)
    return None


def run_job(store: Store, data_dir: Path, job: Job) -> None:
    from permed.advice.advice_set import AdviceSet
    from permed.advice.engine import AdviceEngine
    from permed.advice.medications import drug_index, parse_medications
    from permed.kb.load import load_kb
    from permed.phenotype.outside_calls import OutsideCallsText
    from permed.phenotype.phenotype_set import interpret
    from permed.pipeline import CallOptions, call_files
    from permed.report.i18n import available_languages
    from permed.report.output import write_outputs
    from permed.service.uploads import OUTSIDE_CALLS_NAME

    with store.session() as s:
        sample = s.get(Sample, job.sample_id)
    path = next((Path(data_dir) / "uploads").glob(f"{sample.sha256}.*"))
    delay = float(os.environ.get("PERMED_TEST_JOB_DELAY", "0"))  # tests: a window to kill the worker in
    try:
        kb = load_kb()
        callset = call_files([path], kb, CallOptions())
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
        state, error = "failed", str(exc).replace(str(path), sample.filename)
    except Exception as exc:  # a bug: fail this job (a retry would fail the same way), keep the worker
        state, error = "failed", f"internal error ({type(exc).__name__}); the server log names job {job.id}"
        # where it happened, without the exception's message: messages can quote sample names or data
        log.error("job %d failed with %s at\n%s", job.id, type(exc).__name__,
                  "".join(traceback.format_tb(exc.__traceback__)).rstrip())
    with store.session() as s:
        s.execute(update(Job).where(Job.id == job.id).values(state=state, error=error, updated_at=utcnow()))


def run_worker(store: Store, data_dir: Path, poll: float = 0.5, once: bool = False) -> int:
    """Process jobs until none is left (`once`) or forever. Returns the number of jobs run."""
    recover(store)
    done = 0
    while True:
        job = claim(store)
        if job is None:
            if once:
                return done
            time.sleep(poll)
            continue
        run_job(store, data_dir, job)
        done += 1
