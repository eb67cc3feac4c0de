"""Stored results checked before they are served: a finished job records each result file's SHA-256
(`Job.results_sha256`, JSON: file name -> digest); a read route calls `verify` on a file before it
answers with it. A truncated, altered or deleted report then answers "stored result damaged, re-run the
job" instead of a corrupt report (or a 500), and `rerun` queues the job again.

Hashing costs one read of the file; it is done once per file version (path, size, modification time),
so repeated reads of a report cost a stat.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path

from sqlalchemy import select, update

from permed.errors import ServiceError
from permed.service.store import Job, Store, utcnow

DAMAGED = "stored result damaged, re-run the job"


class DamagedResult(ServiceError):
    """A stored result file is missing or differs from what its job wrote."""

    def __init__(self, message: str = DAMAGED):
        super().__init__(message)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def digests(job: Job) -> dict[str, str] | None:
    """The job's result digests (None for jobs finished before digests were recorded)."""
    return json.loads(job.results_sha256) if job.results_sha256 else None


_verified: dict[tuple, None] = {}  # (path, size, mtime_ns, digest) already checked (insertion-ordered: oldest first)
_verified_lock = threading.Lock()
VERIFIED_CACHE = 100_000


def verify(path: Path, expected: dict[str, str] | None) -> Path:
    """`path` if it is the file its job wrote, else DamagedResult. `expected`: the job's digests (see
    `digests`); None (a job from before digests) checks only that the file is there. A file its job did not
    write (a PDF rendered later from a verified HTML) is not checked here."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise DamagedResult() from None
    want = (expected or {}).get(path.name)
    if want is None:
        return path
    key = (str(path), st.st_size, st.st_mtime_ns, want)
    if key in _verified:
        return path
    try:
        ok = file_sha256(path) == want
    except OSError:
        ok = False
    if not ok:
        raise DamagedResult()
    with _verified_lock:
        _verified[key] = None
        while len(_verified) > VERIFIED_CACHE:
            del _verified[next(iter(_verified))]
    return path


def verify_all(folder: Path, expected: dict[str, str] | None) -> None:
    """Every result file of a job (e.g. before listing its reports): DamagedResult if one is missing or altered."""
    for name in expected or {}:
        verify(Path(folder) / name, expected)


def rerun(store: Store, data_dir: Path, job_id: int) -> bool:
    """Queue a finished (done or failed) job again, deleting its stored results first. False if the job is
    queued or running (nothing to do) or does not exist."""
    from permed.service.worker import results_dir

    with store.session() as s:
        job = s.scalars(select(Job).where(Job.id == job_id)).first()
        if job is None or job.state not in ("done", "failed"):
            return False
        # the results go first: a worker that takes the job at once then writes into an empty folder
        shutil.rmtree(results_dir(data_dir, job.upload_id), ignore_errors=True)
        taken = s.execute(update(Job).where(Job.id == job_id, Job.state.in_(("done", "failed"))).values(
            state="queued", attempts=0, error=None, results_sha256=None, worker=None, heartbeat_at=None,
            updated_at=utcnow()))
        return taken.rowcount == 1
