"""Bearer tokens of a node, one or more per requesting institution, each with one scope.

Scopes nest: `boolean` (does anyone match?) < `count` (how many) < `aggregate` (PGx counts per gene and
group). A token is shown once and stored as its SHA-256 (the service's hashing, service.tokens.hash_token's
scheme, reimplemented here so a node needs no database server); it expires after 90 days unless told.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from pathlib import Path

from permed.errors import ConfigurationError
from permed.federation.store import NodeStore, now

SCOPES = ("boolean", "count", "aggregate")
PREFIX = "pmdn_"  # told apart from the service's pmd_ tokens at a glance
DEFAULT_DAYS = 90


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def allows(scope: str, needed: str) -> bool:
    return SCOPES.index(scope) >= SCOPES.index(needed)


def create(cohort_dir: Path, scope: str, institution: str | None, expires_days: int | None = DEFAULT_DAYS
           ) -> tuple[int, str]:
    """(token id, the token: shown once, never stored)."""
    if scope not in SCOPES:
        raise ConfigurationError(f"--scope: {scope!r} is not one of {', '.join(SCOPES)}")
    name = (institution or "unnamed").strip()
    if not name or len(name) > 200 or not name.isprintable():
        raise ConfigurationError(f"--institution: {str(institution)[:50]!r} must be 1 to 200 printable characters")
    if expires_days is not None and expires_days < 0:
        raise ConfigurationError(f"--expires-days: {expires_days} is negative (0: never expires)")
    token = PREFIX + secrets.token_urlsafe(32)
    store = NodeStore(cohort_dir)
    try:
        return store.add_token(hash_token(token), scope, name, expires_days or None), token
    finally:
        store.close()


def why_unusable(row: dict | None) -> str | None:
    """"unknown", "revoked" or "expired", or None for a token that may be used."""
    if row is None:
        return "unknown"
    if row["revoked"]:
        return "revoked"
    if row["expires_at"] and datetime.fromisoformat(row["expires_at"]) <= now():
        return "expired"
    return None


def lookup(store: NodeStore, token: str) -> dict | None:
    return store.token(hash_token(token))
