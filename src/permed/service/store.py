"""Persistent state of the service (SQLAlchemy): API tokens, uploads, jobs and the audit log.

SQLite in the data directory by default; any SQLAlchemy URL (e.g. postgresql://) through the same code.
Genotypes never enter the database: uploaded files live in the data directory, named by SHA-256.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint, create_engine, event, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from permed.errors import ServiceError


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Organisation(Base):
    """A lab, hospital or project: every upload belongs to one, and every token but an admin's is scoped to one."""

    __tablename__ = "organisations"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)  # SHA-256, never the token
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked: Mapped[bool] = mapped_column(default=False)
    # None only for admins, who work across organisations
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)  # None: never (tokens made before expiry)


class Upload(Base):
    """An uploaded VCF/BCF file with its request (outside calls, medications). The API calls it a
    "sample" (routes /samples/{sample_id}, fields sample_id), as it did from the start; the VCF samples
    (patients) it holds are the report's `sample`. The table keeps its first name."""

    __tablename__ = "samples"
    id: Mapped[int] = mapped_column(primary_key=True)
    # the VCF's SHA-256 names its file; the request key adds the outside calls and medications, so the
    # same upload twice is one row while the same VCF with a new medication list is a new report
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    request_key: Mapped[str] = mapped_column(String(64), unique=True)
    filename: Mapped[str] = mapped_column(String(500))
    size: Mapped[int] = mapped_column(BigInteger)
    medications: Mapped[str | None] = mapped_column(Text, default=None)
    outside_calls: Mapped[str | None] = mapped_column(Text, default=None)
    # the outside calls' format as asked (None: detected from the text) and their file's name as uploaded
    outside_calls_format: Mapped[str | None] = mapped_column(String(16), default=None)
    outside_calls_name: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    upload_id: Mapped[int] = mapped_column("sample_id", ForeignKey("samples.id"), index=True)
    state: Mapped[str] = mapped_column(String(20), default="queued", index=True)  # queued running done failed
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # the worker running the job and its last sign of life; a job whose heartbeat stops is re-queued
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # JSON object: result file name -> SHA-256, written with the results and checked when they are served
    results_sha256: Mapped[str | None] = mapped_column(Text, default=None)
    # times the job was cut short by a server stop or restart (not the job's fault: no attempt used)
    interruptions: Mapped[int] = mapped_column(default=0)


class PatientLink(Base):
    """Which stored patient (an upload and a VCF sample in it) an EHR's FHIR Patient id stands for, filled in
    by the lab. CDS Hooks calls find a patient through it, within the organisation of the calling EHR only;
    one link per patient id and organisation (a second one is refused: see docs/cds-hooks.md)."""

    __tablename__ = "patient_links"
    __table_args__ = (UniqueConstraint("organisation_id", "patient_id", name="uq_patient_links_organisation_patient"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    patient_id: Mapped[str] = mapped_column(String(64))  # FHIR ids are at most 64 characters
    upload_id: Mapped[int] = mapped_column("sample_id", ForeignKey("samples.id"), index=True)
    sample: Mapped[str] = mapped_column(Text)  # the VCF sample name inside the upload
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"), default=None)
    action: Mapped[str] = mapped_column(String(100))
    upload_id: Mapped[int | None] = mapped_column("sample_id", ForeignKey("samples.id"), default=None)
    client: Mapped[str | None] = mapped_column(String(100), default=None)  # the client's address


def _audit_row(token: ApiToken | None, action: str, upload_id: int | None, client: str | None) -> dict:
    """An audit row keyed by column name (inserted through the table: one path for both writers)."""
    return {"at": utcnow(), "token_id": token.id if token else None, "action": action[:100], "sample_id": upload_id,
            "client": client[:100] if client else None}


class Store:
    def __init__(self, url: str):
        from permed.service import schema

        url = self.url = self.driver_url(url)
        self.engine = create_engine(url)
        if url.startswith("sqlite"):
            self._private_sqlite_file(url)
            @event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record):  # concurrent readers while a writer works; enforce foreign keys
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: a commit survives the process dying (kill -9); only a power cut can lose the last ones
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()
        try:
            schema.upgrade(self.engine)
        except OperationalError as exc:  # unreachable server, wrong password, unwritable file: say which
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise ServiceError(f"{schema.describe(self.engine)}: cannot open the database ({reason})") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @staticmethod
    def driver_url(url: str) -> str:
        """postgresql:// URLs go through the driver we ship, psycopg 3."""
        if url.startswith(("postgresql://", "postgres://")):
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        return url

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> Store:
        return cls(f"sqlite:///{Path(data_dir).resolve() / 'permed.sqlite'}")

    @staticmethod
    def _private_sqlite_file(url: str) -> None:
        """Create a SQLite database file readable by its owner only, whatever the umask: SQLite gives its
        -wal and -shm files the database file's permissions."""
        from sqlalchemy.engine import make_url

        path = make_url(url).database
        if path and path != ":memory:" and not path.startswith("file:") and not os.path.exists(path):
            try:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError:
                pass  # SQLite reports the problem when it opens the file (one line, see below)

    @contextmanager
    def session(self):
        with self._sessions() as s, s.begin():
            yield s

    def organisation(self, s: Session, name: str) -> Organisation:
        """The organisation of that name, created on first use."""
        query = select(Organisation).where(Organisation.name == name)
        row = s.scalars(query).first()
        if row is None:
            try:
                with s.begin_nested():  # processes starting together may create it at once: one wins
                    row = Organisation(name=name)
                    s.add(row)
                    s.flush()
            except IntegrityError:
                row = s.scalars(query).one()
        return row

    def audit(self, s: Session, token: ApiToken | None, action: str, upload_id: int | None = None,
              client: str | None = None) -> None:
        """One audit row in the session's transaction (a Core INSERT: cheaper than the ORM). Reports and
        advice go through AuditWriter instead."""
        s.execute(insert(AuditEvent.__table__), [_audit_row(token, action, upload_id, client)])


class AuditWriter:
    """Group commit for the audit rows of read requests: one thread writes whatever rows are waiting
    in one transaction and then tells each request its row is stored. A request answers only after
    its row is committed (nothing is lost to a crash), yet 200 concurrent reads cost a few commits
    instead of 200, and the event loop never waits on the database."""

    MAX_BATCH = 1000

    def __init__(self, store: Store):
        self.store = store
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="permed-audit", daemon=True)
        self._thread.start()

    def submit(self, token: ApiToken | None, action: str, upload_id: int | None = None,
               client: str | None = None) -> Future:
        done: Future = Future()
        self._queue.put((_audit_row(token, action, upload_id, client), done))
        return done

    def submit_async(self, token: ApiToken | None, action: str, upload_id: int | None = None,
                     client: str | None = None) -> asyncio.Future:
        """`submit` for the event loop: an asyncio future, and the loop is woken once per committed batch
        rather than once per row (per-row wake-ups were a tenth of a CDS call's time under load)."""
        done = asyncio.get_running_loop().create_future()
        self._queue.put((_audit_row(token, action, upload_id, client), done))
        return done

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            error = None
            try:
                with self.store.engine.begin() as conn:
                    conn.execute(insert(AuditEvent.__table__), [row for row, _ in batch])
            except Exception as exc:  # the requests waiting on these rows fail (500); the writer goes on
                error = exc
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
            for _, done in batch:
                if isinstance(done, asyncio.Future):
                    by_loop.setdefault(done.get_loop(), []).append(done)
                elif error is not None:
                    done.set_exception(error)
                else:
                    done.set_result(None)
            for loop, futures in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, futures, error)
                except RuntimeError:  # the loop has closed (a test's client went away): nobody waits
                    pass


def _settle(futures: list[asyncio.Future], error: Exception | None) -> None:
    for done in futures:
        if not done.done():  # the request may have been cancelled (client gone)
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(None)
