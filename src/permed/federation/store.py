"""A node's own state, beside the cohort it serves: `COHORT_DIR/node.sqlite` (mode 0600).

Tables: tokens (SHA-256 of the token, never the token; scope, institution, expiry, revoked), audit (one row
per request: time, token, institution, endpoint, filters, granularity asked and answered, epsilon spent,
outcome, client address), budget (epsilon spent per token) and query_sets (the individuals of answered
queries, as packed bits, for the differencing check). SQLite in WAL mode: one writer, the server process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from permed.errors import ServiceError

FILE = "node.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY, token_hash TEXT UNIQUE NOT NULL, scope TEXT NOT NULL, institution TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, token_id INTEGER, institution TEXT, endpoint TEXT NOT NULL,
    filters TEXT, requested TEXT, returned TEXT, epsilon REAL NOT NULL DEFAULT 0, outcome TEXT NOT NULL,
    client TEXT);
CREATE TABLE IF NOT EXISTS budget (token_id INTEGER PRIMARY KEY, spent REAL NOT NULL);
CREATE TABLE IF NOT EXISTS query_sets (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, bits BLOB NOT NULL);
"""


def now() -> datetime:
    return datetime.now(UTC)


class NodeStore:
    def __init__(self, cohort_dir: Path):
        self.path = Path(cohort_dir) / FILE
        old = os.umask(0o077)  # tokens' hashes and the audit log: the node's user only
        try:
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ServiceError(f"{self.path}: cannot open the node's store ({exc})") from None
        finally:
            os.umask(old)
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass
        self.lock = threading.Lock()  # one connection shared by the server's threads

    def close(self) -> None:
        self.db.close()

    # tokens
    def add_token(self, token_hash: str, scope: str, institution: str, expires_days: int | None) -> int:
        expires = (now() + timedelta(days=expires_days)).isoformat() if expires_days else None
        with self.lock:
            cur = self.db.execute("INSERT INTO tokens (token_hash, scope, institution, created_at, expires_at) "
                                  "VALUES (?, ?, ?, ?, ?)", (token_hash, scope, institution, now().isoformat(),
                                                             expires))
            return int(cur.lastrowid)

    def token(self, token_hash: str) -> dict | None:
        with self.lock:
            row = self.db.execute("SELECT id, scope, institution, expires_at, revoked FROM tokens "
                                  "WHERE token_hash = ?", (token_hash,)).fetchone()
        if row is None:
            return None
        return {"id": row[0], "scope": row[1], "institution": row[2], "expires_at": row[3], "revoked": bool(row[4])}

    def tokens(self) -> list[dict]:
        with self.lock:
            rows = self.db.execute("SELECT t.id, scope, institution, created_at, expires_at, revoked, "
                                   "coalesce(b.spent, 0) FROM tokens t LEFT JOIN budget b ON b.token_id = t.id "
                                   "ORDER BY t.id").fetchall()
        keys = ("id", "scope", "institution", "created_at", "expires_at", "revoked", "epsilon_spent")
        return [dict(zip(keys, r)) for r in rows]

    def revoke(self, token_id: int) -> bool:
        with self.lock:
            return self.db.execute("UPDATE tokens SET revoked = 1 WHERE id = ?", (token_id,)).rowcount > 0

    # privacy budget: checked and charged in one step, so concurrent queries cannot overspend
    def charge(self, token_id: int, epsilon: float, budget: float) -> float | None:
        """Charge `epsilon` and return what remains, or None (nothing charged) when it would pass `budget`."""
        with self.lock:
            row = self.db.execute("SELECT spent FROM budget WHERE token_id = ?", (token_id,)).fetchone()
            spent = row[0] if row else 0.0
            if spent + epsilon > budget + 1e-12:
                return None
            self.db.execute("INSERT INTO budget (token_id, spent) VALUES (?, ?) ON CONFLICT(token_id) "
                            "DO UPDATE SET spent = excluded.spent", (token_id, spent + epsilon))
            return budget - spent - epsilon

    def spent(self, token_id: int) -> float:
        with self.lock:
            row = self.db.execute("SELECT spent FROM budget WHERE token_id = ?", (token_id,)).fetchone()
        return row[0] if row else 0.0

    # differencing history
    def add_query_set(self, n: int, bits: bytes, keep: int) -> None:
        with self.lock:
            self.db.execute("INSERT INTO query_sets (n, bits) VALUES (?, ?)", (n, zlib.compress(bits)))
            self.db.execute("DELETE FROM query_sets WHERE id <= (SELECT max(id) FROM query_sets) - ?", (keep,))

    def query_sets(self, n: int, keep: int) -> list[bytes]:
        with self.lock:
            rows = self.db.execute("SELECT bits FROM query_sets WHERE n = ? ORDER BY id DESC LIMIT ?",
                                   (n, keep)).fetchall()
        return [zlib.decompress(r[0]) for r in reversed(rows)]

    # audit
    def audit(self, token: dict | None, endpoint: str, outcome: str, filters=None, requested: str | None = None,
              returned: str | None = None, epsilon: float = 0.0, client: str | None = None) -> None:
        with self.lock:
            self.db.execute(
                "INSERT INTO audit (at, token_id, institution, endpoint, filters, requested, returned, epsilon, "
                "outcome, client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now().isoformat(), token["id"] if token else None, token["institution"] if token else None,
                 endpoint, json.dumps(filters) if filters is not None else None, requested, returned, epsilon,
                 outcome[:500], client))

    def audit_rows(self) -> list[dict]:
        with self.lock:
            cur = self.db.execute("SELECT id, at, token_id, institution, endpoint, filters, requested, returned, "
                                  "epsilon, outcome, client FROM audit ORDER BY id")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
