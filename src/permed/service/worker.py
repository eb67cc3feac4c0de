"""The job worker: a separate process that takes queued jobs one at a time and runs the engine.

A job is claimed with a conditional UPDATE (queued -> running, naming the worker), so two workers
never take the same job. While it runs, the worker's heartbeat thread refreshes the job's
`heartbeat_at` five times per lease. A job still `running` whose heartbeat is older than the
lease (LEASE by default, `--job-lease`) belongs to a dead worker (kill -9, a lost machine): any
worker queues it again, up to MAX_ATTEMPTS, after which it is `failed`. Live workers' jobs are never
touched, so any number of workers can share one queue. Results are written through StagedOutput: a
report appears whole or not at all, so a half-written report is never served.

Each job runs in a child process forked from the worker (the engine is loaded once, in the worker),
under the job limits (job_limits.py): an address-space rlimit (the job's allowance on top of what the
worker maps when it forks), and a deadline after which the worker kills it. A job beyond a limit fails
with one line and is not retried; a child that dies of a signal uses up an attempt, as a dead worker does.
A worker stopped by SIGTERM (an operator restart, or its server dying) puts its running job back in the
queue without using up an attempt (`interruptions`). A worker started by `permed serve` exits when the
server dies, even by kill -9.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import or_, update
from sqlalchemy import select as sql_select

from permed.errors import PermedError
from permed.service.job_limits import JobLimits
from permed.service.store import Job, Store, Upload, utcnow
from permed.staging import STAGING_PREFIX

if TYPE_CHECKING:
    from permed.engine import Engine

MAX_ATTEMPTS = 3
LEASE = 10.0  # seconds without a heartbeat before a running job counts as abandoned
BEATS_PER_LEASE = 5  # a worker that misses a few heartbeats (a busy database) keeps its job
# leftovers (staging directories, partial uploads, partial indexed copies) untouched this long are a
# dead writer's: live writers touch theirs far more often
STALE_AFTER = 10 * 60.0
# a staging folder whose writer is not running here: removed once untouched this long (a writer on another
# machine sharing the data directory touches its folder far more often)
DEAD_WRITER_GRACE = 60.0
PHENOTYPES_FILE = "phenotypes.json"  # a job's PhenotypeSet (permed.phenotypes/1), beside its reports
PARENT_ENV = "PERMED_SUPERVISOR_PID"  # set by WorkerSupervisor: the server process the worker lives with
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
        orphans = list(s.scalars(sql_select(Job).where(
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
        for job_id in s.scalars(sql_select(Job.id).where(Job.state == "queued").order_by(Job.id).limit(5)):
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


class WorkerInterrupted(BaseException):
    """The worker was told to stop (SIGTERM) or lost its server while a job ran: not the job's fault.
    A BaseException, like KeyboardInterrupt, so no `except Exception` swallows it."""


class _Stop:
    """SIGTERM and the server's death, seen by the worker's main thread. Raised as WorkerInterrupted
    only while the worker waits on a job (never inside a database write), else noted and acted on at
    the next check."""

    def __init__(self, parent_pid: int | None):
        self.parent_pid = parent_pid
        self.requested = False
        self.interruptible = False

    def handler(self, signum, frame) -> None:
        self.requested = True
        if self.interruptible:
            self.interruptible = False
            raise WorkerInterrupted()

    def parent_gone(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def check(self) -> None:
        if self.requested or self.parent_gone():
            self.requested = True
            raise WorkerInterrupted()

    @contextmanager
    def waiting(self):
        """While the worker waits on its job: a stop request interrupts it at once."""
        self.interruptible = True
        try:
            self.check()
            yield
        finally:
            self.interruptible = False

    @contextmanager
    def critical(self):
        """A database write or clean-up that must finish: a stop request waits for its end."""
        was, self.interruptible = self.interruptible, False
        try:
            yield
        finally:
            self.interruptible = was


_stop = _Stop(None)  # the running worker's (one worker per process)


@dataclass
class Outcome:
    state: str  # done, failed, or retry (the job's process died: the job uses up an attempt)
    error: str | None = None
    digests: dict[str, str] = field(default_factory=dict)  # result file name -> SHA-256
    trace: str | None = None  # where an internal error happened (logged by the worker, never stored)


def compute_job(data_dir: Path, upload: Upload, engine: Engine, limits: JobLimits) -> Outcome:
    """Index, call and write one upload's reports (in the job's own process); never touches the database."""
    from permed.engine import Inputs, VcfInput
    from permed.options import Options
    from permed.phenotype.outside_calls import OutsideCallsText
    from permed.report.i18n import available_languages
    from permed.service.indexing import queryable
    from permed.service.results import file_sha256
    from permed.service.uploads import OUTSIDE_CALLS_NAME

    stored = upload_path(data_dir, upload.sha256)
    try:
        # read an indexed copy (windows around definition positions), reported as the lab's file
        vcf = VcfInput(queryable(stored, data_dir, upload.sha256, limits, upload.filename), name=upload.filename,
                       label=upload.filename, sha256=upload.sha256)
        outside = [OutsideCallsText(upload.outside_calls_name or OUTSIDE_CALLS_NAME, upload.outside_calls,
                                    upload.outside_calls_format)] if upload.outside_calls else []
        result = engine.run(Inputs.of(vcfs=vcf, outside_calls=outside, medications=upload.medications), Options())
        # English HTML, and one per further report language so clinicians can switch without a re-run
        out = results_dir(data_dir, upload.id)
        written = result.write(out, formats=("html",), also_html=tuple(available_languages()[1:]))
        # the phenotype stage too: CDS Hooks calls recompute advice from it when the EHR's medication list
        # holds an inhibitor (phenoconversion). Recorded with a digest like the reports; the job is not done
        # before its digests are recorded, so the file needs no staging of its own
        tmp = out / f".{PHENOTYPES_FILE}.{os.getpid()}.tmp"
        result.phenotypes.save(tmp, engine.kb)
        os.replace(tmp, out / PHENOTYPES_FILE)
        written.append(out / PHENOTYPES_FILE)
        return Outcome("done", digests={p.name: file_sha256(p) for p in written})
    except MemoryError:
        return Outcome("failed", limits.out_of_memory().args[0])
    except PermedError as exc:
        return Outcome("failed", str(exc))
    except Exception as exc:  # a bug: fail this job (a retry would fail the same way), keep the worker
        # where it happened, without the exception's message: messages can quote sample names or data
        return Outcome("failed", f"internal error ({type(exc).__name__}); the server log names job {{job}}",
                       trace=f"{type(exc).__name__} at\n"
                             + "".join(traceback.format_tb(exc.__traceback__)).rstrip())


def run_job(store: Store, data_dir: Path, job: Job, me: str, engine: Engine, limits: JobLimits | None = None) -> None:
    """Run one job in a child process under the job limits; its reports appear whole in
    results/<upload id>/ or not at all. Raises WorkerInterrupted when the worker is told to stop."""
    limits = limits or JobLimits()
    with _stop.critical(), store.session() as s:
        upload = s.get(Upload, job.upload_id)
    outcome = _in_child(lambda: compute_job(data_dir, upload, engine, limits), limits)
    with _stop.critical():
        _record(store, data_dir, job, me, upload, outcome)


def _record(store: Store, data_dir: Path, job: Job, me: str, upload: Upload, outcome: Outcome) -> None:
    if outcome.trace:
        log.error("job %d failed with %s", job.id, outcome.trace)
    if outcome.state != "done":
        clean_after_attempt(data_dir, upload.id)
    values: dict = {"state": outcome.state, "error": (outcome.error or "").replace("{job}", str(job.id)) or None,
                    "updated_at": utcnow()}
    if outcome.state == "done":
        values["results_sha256"] = json.dumps(outcome.digests, sort_keys=True)
    elif outcome.state == "retry":  # the job's process died: again, unless that was its last attempt
        last = job.attempts >= MAX_ATTEMPTS
        values.update(state="failed" if last else "queued", worker=None,
                      error=f"the job's process died {job.attempts} times ({outcome.error})" if last else None)
    with store.session() as s:  # only if the job is still ours (not re-queued after a lost lease)
        s.execute(update(Job).where(Job.id == job.id, Job.worker == me, Job.state == "running").values(**values))


def _in_child(work, limits: JobLimits) -> Outcome:
    """Run `work` in a forked child under the memory limit; kill it at the deadline. Its Outcome comes
    back through a pipe as JSON."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    worker = os.getpid()
    # the child's stderr, read back when it ends: htslib can end a process itself on data it cannot decode,
    # and the reader then writes its one-line reason there and exits 2 (genotypes/files.py)
    child_stderr = tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(read_end)
            os.dup2(child_stderr.fileno(), 2)
            _child_setup(limits, worker)
            outcome = work()
            payload = json.dumps(outcome.__dict__).encode()
            with os.fdopen(write_end, "wb") as out:
                out.write(payload)
        except BaseException:  # noqa: BLE001 - nothing may escape a forked child
            code = 70
        finally:
            os._exit(code)  # no interpreter teardown: the parent's objects are the parent's
    os.close(write_end)
    deadline = time.monotonic() + limits.seconds
    data, status = bytearray(), None
    try:
        while True:
            _stop.check()
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = 0
                return Outcome("failed", limits.out_of_time().args[0])
            ready, _, _ = select.select([read_end], [], [], 0.2)
            if ready:
                chunk = os.read(read_end, 1 << 16)
                if chunk:
                    data += chunk
                    continue
                break  # the child closed its end: it has finished (or died)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(read_end)
        if status is None:  # interrupted: the child must not go on writing results
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        child_stderr.seek(0)
        said = child_stderr.read().decode(errors="replace")
        child_stderr.close()
        if said:
            sys.stderr.write(said)  # the server log, as before
    last = (said.strip().splitlines() or [""])[-1]
    if os.WIFSIGNALED(status):
        try:
            name = signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            name = f"signal {os.WTERMSIG(status)}"
        return Outcome("retry", f"last: {name}")
    if os.WEXITSTATUS(status) == 2 and last.startswith("permed: error: "):  # the input, not a bug: no retry
        return Outcome("failed", last.removeprefix("permed: error: "))
    if os.WEXITSTATUS(status) != 0 or not data:
        return Outcome("failed", f"internal error (the job's process exited with {os.WEXITSTATUS(status)}); "
                                 "the server log names job {job}")
    return Outcome(**json.loads(data))


def _child_setup(limits: JobLimits, worker: int) -> None:
    """In the job's process: default signal handling, death with the worker, the memory limit."""
    import resource

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    _die_with_parent(signal.SIGKILL)
    if os.getppid() != worker:  # the worker died before the line above
        os._exit(70)
    # the limit is what the job may add: the child starts with its worker's address space, which is not the
    # job's doing and can alone exceed the limit (a worker inside a process holding big untouched mappings:
    # duckdb reserves ~0.7 GiB, every thread its stack); a cap below it would fail every job's next mapping
    cap = limits.memory_mb * 1024**2 + _address_space()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = cap if hard == resource.RLIM_INFINITY else min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _address_space() -> int:
    """Bytes of address space this process maps now (Linux /proc; 0 where unknown)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _die_with_parent(sig: int) -> bool:
    """Linux: the kernel sends `sig` to this process when its parent dies. False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, int(sig), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def _put_back(store: Store, job: Job, me: str, interrupted: bool = True) -> None:
    """An interrupted job (or one claimed just as the worker stopped) goes back to the queue without using up
    an attempt."""
    with store.session() as s:
        s.execute(update(Job).where(Job.id == job.id, Job.worker == me, Job.state == "running").values(
            state="queued", attempts=Job.attempts - 1, interruptions=Job.interruptions + int(interrupted),
            worker=None,
            heartbeat_at=None, updated_at=utcnow()))


def clean_after_attempt(data_dir: Path, upload_id: int) -> None:
    """After a failed or cut-short attempt: its staging directories (only this job writes there) and
    partial indexed copies of dead writers."""
    for tmp in results_dir(data_dir, upload_id).glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)
    _clean_indexed(Path(data_dir), older_than=None)


def clean_stale(data_dir: Path, older_than: float = STALE_AFTER) -> int:
    """At worker start: staging directories of killed jobs, partial uploads and partial indexed copies
    left by dead processes. Returns how many were removed. A leftover is removed when nothing touched it
    for `older_than` seconds and no process here holds it open, or when the process named in its name is
    gone: a live server may be receiving an upload right now."""
    data_dir = Path(data_dir)
    removed = 0
    now = time.time()
    for tmp in data_dir.glob(f"results/*/{STAGING_PREFIX}*"):
        idle = now - _newest_mtime(tmp)
        pid = tmp.name[len(STAGING_PREFIX):].split("-", 1)[0]  # the writer's, in folders of this permed
        if idle > older_than or (pid.isdigit() and not _alive(int(pid)) and idle > DEAD_WRITER_GRACE):
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
    open_here = _open_files()
    for tmp in data_dir.glob("uploads/.upload-*"):
        if now - _mtime(tmp) > older_than and str(tmp.resolve()) not in open_here:
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed + _clean_indexed(data_dir, older_than)


def _clean_indexed(data_dir: Path, older_than: float | None) -> int:
    """Partial indexed copies (.<sha>.<host>-<pid>.<uuid>.tmp[.csi]): a dead local writer's at once, any
    other's once untouched for `older_than` seconds (None: never)."""
    host = socket.gethostname()
    removed = 0
    for tmp in (data_dir / "indexed").glob(".*.tmp*"):
        owner = tmp.name.split(".")[2] if tmp.name.count(".") >= 4 else ""
        writer_host, _, pid = owner.rpartition("-")
        dead = writer_host == host and pid.isdigit() and not _alive(int(pid))
        if dead or (older_than is not None and time.time() - _mtime(tmp) > older_than):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except FileNotFoundError:
        return time.time()


def _newest_mtime(folder: Path) -> float:
    return max([_mtime(folder), *(_mtime(p) for p in folder.rglob("*"))])


def _open_files() -> set[str]:
    """Files held open by processes this user can see (Linux /proc; empty elsewhere)."""
    found = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                try:
                    found.add(os.readlink(fd))
                except OSError:
                    continue
        except OSError:
            continue
    return found


def run_worker(store: Store, data_dir: Path, poll: float = 0.5, once: bool = False,
               lease: float = LEASE, engine: Engine | None = None, limits: JobLimits | None = None,
               parent_pid: int | None = None) -> int:
    """Process jobs until none is left (`once`), the worker is stopped (SIGTERM) or its server is gone.
    Returns the number of jobs run. The engine (knowledge base and all) is built once, before the first job.
    `parent_pid`: the server process this worker must not outlive (default: $PERMED_SUPERVISOR_PID)."""
    from permed.engine import Engine

    global _stop
    limits = limits or JobLimits()
    if parent_pid is None and os.environ.get(PARENT_ENV, "").isdigit():
        parent_pid = int(os.environ[PARENT_ENV])
    stop = _stop = _Stop(parent_pid)
    if parent_pid is not None:
        _die_with_parent(signal.SIGTERM)  # the server's death reaches us as a stop request
    restore = None
    if threading.current_thread() is threading.main_thread():
        restore = signal.signal(signal.SIGTERM, stop.handler)
    try:
        if stop.parent_gone():  # the server died before the line above
            return 0
        engine = engine or Engine()
        clean_stale(data_dir)
        me = worker_id()
        done = 0
        while not (stop.requested or stop.parent_gone()):
            recover(store, lease)
            job = claim(store, me)
            if job is None:
                if once:
                    return done
                time.sleep(poll)
                continue
            started = False
            try:
                with _Heartbeat(store, job.id, me, lease / BEATS_PER_LEASE), stop.waiting():
                    started = True
                    run_job(store, data_dir, job, me, engine, limits)
            except WorkerInterrupted:
                # a stop that came while the job was being claimed (e.g. both workers of a dead server: one
                # puts its job back, the other takes it as it stops) did not interrupt the job
                _put_back(store, job, me, interrupted=started)
                clean_after_attempt(data_dir, job.upload_id)
                log.info("worker stopped: job %d queued again", job.id)
                return done
            done += 1
        return done
    finally:
        if restore is not None:
            signal.signal(signal.SIGTERM, restore)
