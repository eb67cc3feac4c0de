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


def test_a_0001_database_with_data_is_upgraded_into_the_default_organisation(database_url, tmp_path):
    """Schema 0001 (before organisations) with a lab and an admin token, an upload, its job and an audit row:
    after the upgrade the upload and the lab token are in "default", the admin in none, and the same upload
    request again still finds its upload (the idempotency key now includes the organisation)."""
    import hashlib

    from alembic import command
    from fastapi.testclient import TestClient
    from helpers import example_text

    from permed.service.app import Settings, create_app
    from permed.service.store import Organisation, Upload
    from permed.service.tokens import hash_token

    data = tmp_path / "data"
    data.mkdir()
    url = database_url or f"sqlite:///{data / 'permed.sqlite'}"
    engine = create_engine(Store.driver_url(url))
    with engine.begin() as conn:
        command.upgrade(schema._config(conn), "0001")
    body = example_text().encode()
    sha = hashlib.sha256(body).hexdigest()
    old_key = hashlib.sha256("\0".join((sha, "", "clopidogrel")).encode()).hexdigest()  # 0001's key
    with engine.begin() as conn:
        assert schema.current(conn) == "0001"
        conn.execute(text("INSERT INTO api_tokens (id, name, role, token_hash, created_at, revoked) VALUES "
                          "(1, 'lab', 'lab', :lab, CURRENT_TIMESTAMP, false), "
                          "(2, 'root', 'admin', :admin, CURRENT_TIMESTAMP, false)"),
                     {"lab": hash_token("pmd_old-lab"), "admin": hash_token("pmd_old-admin")})
        conn.execute(text("INSERT INTO samples (id, sha256, request_key, filename, size, medications, created_at, "
                          "created_by) VALUES (1, :sha, :key, 'p.vcf', :size, 'clopidogrel', CURRENT_TIMESTAMP, 1)"),
                     {"sha": sha, "key": old_key, "size": len(body)})
        conn.execute(text("INSERT INTO jobs (sample_id, state, attempts, created_at, updated_at) "
                          "VALUES (1, 'queued', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO audit_events (at, token_id, action, sample_id) "
                          "VALUES (CURRENT_TIMESTAMP, 1, 'upload', 1)"))
    engine.dispose()
    app = create_app(Settings(data_dir=data, database=database_url))
    store = app.state.store
    with store.engine.connect() as conn:
        assert schema.current(conn) == schema.head()
    with store.session() as s:
        (default,) = s.scalars(select(Organisation)).all()
        assert default.name == "default"
        assert {t.role: t.organisation_id for t in s.scalars(select(ApiToken))} == {"lab": default.id, "admin": None}
        assert [u.organisation_id for u in s.scalars(select(Upload))] == [default.id]
        assert [t.expires_at for t in s.scalars(select(ApiToken))] == [None, None]  # old tokens keep working
    r = TestClient(app).post("/api/v1/samples", content=body, headers={
        "Authorization": "Bearer pmd_old-lab", "X-Filename": "p.vcf", "X-Medications": "clopidogrel"})
    assert r.status_code == 200 and r.json()["id"] == 1, r.text  # found again, not a second upload
    listed = TestClient(app).get("/api/v1/samples", headers={"Authorization": "Bearer pmd_old-lab"}).json()
    assert [x["id"] for x in listed] == [1]


def test_a_0002_database_with_data_gains_patient_links(database_url, tmp_path):
    """Schema 0002 (organisations, before patient links) with an organisation, a lab token and an upload: the
    upgrade adds the patient-link table, keeps the rows, and one patient id per organisation is enforced by
    the database itself."""
    from alembic import command
    from sqlalchemy.exc import IntegrityError

    from permed.service.store import PatientLink, Upload

    url = _url(database_url, tmp_path)
    engine = create_engine(Store.driver_url(url))
    with engine.begin() as conn:
        command.upgrade(schema._config(conn), "0002")
    with engine.begin() as conn:
        assert schema.current(conn) == "0002"
        conn.execute(text("INSERT INTO organisations (id, name, created_at) VALUES (1, 'A', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO api_tokens (id, name, role, token_hash, created_at, revoked, organisation_id) "
                          "VALUES (1, 'lab', 'lab', 'h', CURRENT_TIMESTAMP, false, 1)"))
        conn.execute(text("INSERT INTO samples (id, sha256, request_key, filename, size, created_at, created_by, "
                          "organisation_id) VALUES (1, 's', 'k', 'p.vcf', 1, CURRENT_TIMESTAMP, 1, 1)"))
    engine.dispose()
    store = Store(url)
    with store.engine.connect() as conn:
        assert schema.current(conn) == schema.head() == "0004"
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    with store.session() as s:
        assert [u.filename for u in s.scalars(select(Upload))] == ["p.vcf"]
        s.add(PatientLink(organisation_id=1, patient_id="pat-1", upload_id=1, sample="S1", created_by=1))
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(PatientLink(organisation_id=1, patient_id="pat-1", upload_id=1, sample="S2", created_by=1))
    with store.engine.begin() as conn:  # and back: the table goes, the rest stays
        command.downgrade(schema._config(conn), "0002")
        assert not inspect_tables(conn) & {"patient_links"} and "samples" in inspect_tables(conn)



def test_a_0003_database_gains_outside_call_formats_and_keeps_its_request_keys(database_url, tmp_path):
    """0003 -> 0004 adds the outside calls' format and file name to uploads: existing rows keep their values
    (the new columns empty) and their request key, so the same request sent again finds its upload."""
    from alembic import command
    from sqlalchemy import inspect

    from permed.service.store import Upload

    url = _url(database_url, tmp_path)
    engine = create_engine(Store.driver_url(url))
    with engine.begin() as conn:
        command.upgrade(schema._config(conn), "0003")
        conn.execute(text("INSERT INTO organisations (id, name, created_at) VALUES (1, 'A', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO api_tokens (id, name, role, token_hash, created_at, revoked, organisation_id) "
                          "VALUES (1, 'lab', 'lab', 'h', CURRENT_TIMESTAMP, false, 1)"))
        conn.execute(text("INSERT INTO samples (id, sha256, request_key, filename, size, outside_calls, created_at, "
                          "created_by, organisation_id) VALUES (1, 's', 'k-1', 'p.vcf', 1, 'CYP2D6\t*1/*4', "
                          "CURRENT_TIMESTAMP, 1, 1)"))
    engine.dispose()
    store = Store(url)
    with store.engine.connect() as conn:
        assert schema.current(conn) == schema.head() == "0004"
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    with store.session() as s:
        (row,) = s.scalars(select(Upload))
        assert (row.request_key, row.outside_calls, row.outside_calls_format, row.outside_calls_name) == (
            "k-1", "CYP2D6\t*1/*4", None, None)
    with store.engine.begin() as conn:  # and back
        command.downgrade(schema._config(conn), "0003")
        columns = {c["name"] for c in inspect(conn).get_columns("samples")}
        assert "outside_calls" in columns and not columns & {"outside_calls_format", "outside_calls_name"}

def inspect_tables(conn) -> set[str]:
    from sqlalchemy import inspect

    return set(inspect(conn).get_table_names())
