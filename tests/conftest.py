import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    """None for the service's default (SQLite in its data directory), or the URL of a fresh PostgreSQL
    database on the server named by PERMED_TEST_POSTGRES (scripts/test.sh starts one)."""
    if request.param == "sqlite":
        yield None
        return
    server = os.environ.get("PERMED_TEST_POSTGRES")
    if not server:
        if os.environ.get("PERMED_REQUIRE_POSTGRES"):
            pytest.fail("PERMED_REQUIRE_POSTGRES is set but PERMED_TEST_POSTGRES is not")
        pytest.skip("no PostgreSQL server: set PERMED_TEST_POSTGRES (scripts/test.sh starts one)")
    import psycopg

    name = f"permed_test_{uuid.uuid4().hex[:12]}"
    admin = server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield admin.rsplit("/", 1)[0] + "/" + name
    _drop_database(psycopg, admin, name)


def _drop_database(psycopg, admin, name, attempts=50):
    """Drop a test database. A plain DROP first: the server itself ends an autovacuum worker busy in it,
    while DROP ... WITH (FORCE) refuses to (a role the test user may not signal) and so failed a teardown
    at random. FORCE only when one of the test's own connections is still open."""
    import time

    for attempt in range(attempts):
        with psycopg.connect(admin, autocommit=True) as conn:
            try:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                return
            except psycopg.errors.ObjectInUse:
                try:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    return
                except (psycopg.errors.ObjectInUse, psycopg.errors.InsufficientPrivilege):
                    if attempt == attempts - 1:
                        raise
        time.sleep(0.1)
