"""The service's database schema is versioned (Alembic), on SQLite and PostgreSQL: a new database is
created by the migrations and matches the models exactly, an unversioned database of the same schema is
adopted with its data, anything else is refused with one line, and processes starting together
migrate one at a time."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from helpers import cli
from sqlalchemy import create_engine, select, text

from permed.errors import ServiceError
from permed.service import schema
from permed.service.store import ApiToken, Base, Store
from permed.service.tokens import create_token


def _url(database_url, tmp_path) -> str:
    return database_url or f"sqlite:///{tmp_path / 'permed.sqlite'}"


def _cli_database(database_url, tmp_path) -> list[str]:
    return ["--database", database_url] if database_url else ["--data-dir", str(tmp_path)]


def test_a_new_database_is_built_by_the_migrations_and_matches_the_models(database_url, tmp_path):
    store = Store(_url(database_url, tmp_path))
    with store.engine.connect() as conn:
        assert schema.current(conn) == schema.head()
        # a model changed without a migration (or the reverse) shows up here
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    create_token(store, "lab")
    again = Store(store.url)  # a second start changes nothing and keeps the data
    with again.session() as s:
        assert len(list(s.scalars(select(ApiToken)))) == 1


def test_an_unversioned_database_of_this_schema_is_adopted_with_its_data(database_url, tmp_path):
    url = _url(database_url, tmp_path)
    engine = create_engine(Store.driver_url(url))
    Base.metadata.create_all(engine)  # how the service made its tables before migrations
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO api_tokens (name, role, token_hash, created_at, revoked) "
                          "VALUES ('old', 'lab', 'abc', CURRENT_TIMESTAMP, false)"))
    store = Store(url)
    with store.engine.connect() as conn:
        assert schema.current(conn) == schema.head()
    with store.session() as s:
        assert [t.name for t in s.scalars(select(ApiToken))] == ["old"]


def test_a_database_of_another_schema_is_refused_in_one_line(database_url, tmp_path):
    url = _url(database_url, tmp_path)
    engine = create_engine(Store.driver_url(url))
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE jobs DROP COLUMN heartbeat_at"))
    with pytest.raises(ServiceError, match=r"before schema migrations, with a different schema .*heartbeat_at"):
        Store(url)
    r = cli("token", "create", "--role", "lab", *_cli_database(database_url, tmp_path))
    assert r.returncode == 4 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "start with a new database" in r.stderr and "Traceback" not in r.stderr


def test_a_database_from_a_newer_permed_is_refused(database_url, tmp_path):
    url = _url(database_url, tmp_path)
    with Store(url).engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    r = cli("token", "create", "--role", "lab", *_cli_database(database_url, tmp_path))
    assert r.returncode == 4 and r.stderr.count("\n") == 1
    assert "revision 9999 is newer than this permed" in r.stderr and "upgrade permed" in r.stderr


def test_an_unreachable_database_is_one_line_without_the_password():
    r = cli("token", "create", "--role", "lab", "--database", "postgresql://permed:secret@127.0.0.1:1/none")
    assert r.returncode == 4 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "postgresql://permed:***@127.0.0.1:1/none: cannot open the database" in r.stderr
    assert "secret" not in r.stderr


def test_processes_starting_together_migrate_one_at_a_time(database_url, tmp_path):
    """Four processes open a new database at once (a server and its workers starting): all succeed."""
    url = _url(database_url, tmp_path)
    code = ("import sys; from permed.service.store import Store; from permed.service.tokens import create_token; "
            "create_token(Store(sys.argv[1]), 'lab')")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    store = Store(url)
    with store.session() as s:
        assert len(list(s.scalars(select(ApiToken)))) == 4
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
