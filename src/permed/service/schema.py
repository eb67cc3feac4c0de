"""Schema migrations: every process that opens the store first brings the database to the current schema
(Alembic scripts in permed/service/migrations/versions/), so upgrading permed keeps tokens, samples,
jobs and the audit log. Processes starting together (server, workers) migrate one at a time."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

from permed import __version__
from permed.errors import ServiceError

MIGRATIONS = Path(__file__).with_name("migrations")
PG_LOCK_KEY = 0x7065726D  # any constant: the advisory lock that serialises migrations on PostgreSQL


def describe(engine: Engine) -> str:
    """The database as users name it, without a password."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return url.database
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


def _config(conn: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS))


def head() -> str:
    return _scripts().get_current_head()


def current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _file_lock(engine: Engine):
    """SQLite: a lock file beside the database, held until the migration's transaction has committed (taken
    before the transaction begins: released any earlier, the next process could read a half-done schema)."""
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        # owner-only whatever the umask, like every file of the data directory
        fd = os.open(f"{engine.url.database}.migrate-lock", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield
    else:
        yield


def _transaction_lock(engine: Engine, conn: Connection) -> None:
    """PostgreSQL: an advisory lock that the migration's transaction releases when it commits."""
    if engine.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")


def upgrade(engine: Engine) -> None:
    """Bring the database to the current schema. A database of this schema made before migrations
    existed is adopted; one from a newer permed, or an older unmigratable one, is refused (ServiceError)."""
    from permed.service.store import Base

    where = describe(engine)
    with _file_lock(engine), engine.begin() as conn:
        _transaction_lock(engine, conn)
        at = current(conn)
        if at == head():  # the usual start: nothing to do, and no Alembic environment to load
            return
        cfg = _config(conn)
        if at is None and inspect(conn).has_table("samples"):
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if diffs:
                raise ServiceError(f"{where}: database made by a development version of permed before schema "
                                f"migrations, with a different schema ({_first(diffs)}); start with a new database")
            command.stamp(cfg, "head")
            return
        if at is not None:
            try:
                _scripts().get_revision(at)
            except CommandError:
                raise ServiceError(f"{where}: database schema revision {at} is newer than this permed ({__version__}) "
                                f"knows; upgrade permed") from None
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # SQLite changes a table's constraints by copying it and dropping the old one, which foreign keys
            # from other tables' rows forbid: off while migrating (only possible outside a transaction,
            # as here: nothing has been written yet), checked afterwards
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        command.upgrade(cfg, "head")
        if sqlite:
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
            if broken is not None:
                raise ServiceError(f"{where}: the schema upgrade left a broken reference in table {broken[0]}")
    if engine.dialect.name == "sqlite":
        engine.dispose()  # the connection without foreign keys is not reused: new ones get them (store.py)


def _first(diffs: list) -> str:
    d = diffs[0]
    d = d[0] if isinstance(d, list) else d  # column changes come grouped
    return " ".join(str(x) for x in d[:4] if x is not None) if isinstance(d, tuple) else str(d)
