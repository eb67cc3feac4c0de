"""API tokens: random, shown once, stored as SHA-256; roles lab (upload), clinician (read, advice), admin."""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import select

from permed.errors import ConfigurationError
from permed.service.store import ApiToken, Store

ROLES = ("lab", "clinician", "admin")
PREFIX = "pmd_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_role(role: str) -> None:
    if role not in ROLES:
        raise ConfigurationError(f"--role: {role!r} is not one of {', '.join(ROLES)}")


DEFAULT_ORGANISATION = "default"


def create_token(store: Store, role: str, name: str = "", by: ApiToken | None = None,
                 organisation: str | None = None) -> tuple[ApiToken, str]:
    """(stored row, the token itself: shown once, never stored). Tokens other than an admin's belong to one
    organisation (created on first use)."""
    check_role(role)
    token = PREFIX + secrets.token_urlsafe(32)
    with store.session() as s:
        org = None
        if role != "admin" or organisation:
            org = store.organisation(s, organisation or DEFAULT_ORGANISATION).id
        row = ApiToken(name=name or role, role=role, token_hash=hash_token(token), organisation_id=org)
        s.add(row)
        s.flush()
        store.audit(s, by, f"token-create:{role}:{row.id}")
    return row, token


class TokenCache:
    """Valid tokens remembered for `ttl` seconds, so a request costs no database read for its token.
    Revoking through the API clears it at once; a change made by another process shows within `ttl`.
    Unknown tokens are not remembered (random guesses cannot grow it)."""

    def __init__(self, store: Store, ttl: float = 5.0):
        self.store, self.ttl = store, ttl
        self._valid: dict[str, tuple[ApiToken, float]] = {}

    def cached(self, token: str) -> ApiToken | None:
        """The token if it was found valid less than `ttl` seconds ago; never touches the database."""
        hit = self._valid.get(hash_token(token))
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def find(self, token: str) -> ApiToken | None:
        hit = self.cached(token)
        if hit is not None:
            return hit
        key = hash_token(token)
        now = time.monotonic()
        row = _find_hashed(self.store, key)
        if row is None:
            self._valid.pop(key, None)
        else:
            self._valid[key] = (row, now + self.ttl)
        return row

    def clear(self) -> None:
        self._valid.clear()


def _find_hashed(store: Store, key: str) -> ApiToken | None:
    with store.session() as s:
        return s.scalars(select(ApiToken).where(ApiToken.token_hash == key, ApiToken.revoked.is_(False))).first()
