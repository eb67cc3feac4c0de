"""API tokens: random, shown once, stored as SHA-256; roles lab (upload, job state), clinician (reports,
advice), admin (everything, across organisations). Tokens expire (DEFAULT_TOKEN_DAYS unless told)."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime, timedelta

from sqlalchemy import select

from permed.errors import ConfigurationError
from permed.service.limits import DEFAULT_TOKEN_DAYS
from permed.service.store import ApiToken, Store, utcnow

ROLES = ("lab", "clinician", "admin")
PREFIX = "pmd_"
DEFAULT_ORGANISATION = "default"
MAX_ORGANISATION_NAME = 200


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_role(role: str) -> None:
    if role not in ROLES:
        raise ConfigurationError(f"--role: {role!r} is not one of {', '.join(ROLES)}")


def check_organisation(name: str | None) -> str | None:
    """An organisation name as given (stripped), or a ConfigurationError saying what is wrong with it."""
    if name is None:
        return None
    text = name.strip()
    if not text or len(text) > MAX_ORGANISATION_NAME or not text.isprintable():
        raise ConfigurationError(f"--organisation: {name[:50]!r} must be 1 to {MAX_ORGANISATION_NAME} "
                                 "printable characters")
    return text


def expiry(days: int | None) -> datetime | None:
    """When a token made now with `days` of validity expires (0 or None: never)."""
    return utcnow() + timedelta(days=days) if days else None


def create_token(store: Store, role: str, name: str = "", by: ApiToken | None = None,
                 organisation: str | None = None, expires_days: int | None = DEFAULT_TOKEN_DAYS,
                 client: str | None = None) -> tuple[ApiToken, str]:
    """(stored row, the token itself: shown once, never stored). Tokens other than an admin's belong to one
    organisation (created on first use); an admin's works across all of them."""
    check_role(role)
    organisation = check_organisation(organisation)
    if role == "admin" and organisation:
        raise ConfigurationError("--organisation: an admin token works across organisations; give none")
    if expires_days is not None and expires_days < 0:
        raise ConfigurationError(f"--expires-days: {expires_days} is negative (0: never expires)")
    token = PREFIX + secrets.token_urlsafe(32)
    with store.session() as s:
        org = None
        if role != "admin":
            org = store.organisation(s, organisation or DEFAULT_ORGANISATION).id
        row = ApiToken(name=name or role, role=role, token_hash=hash_token(token), organisation_id=org,
                       expires_at=expiry(expires_days))
        s.add(row)
        s.flush()
        store.audit(s, by, f"token-create:{role}:{row.id}", client=client)
    return row, token


def usable(row: ApiToken | None, now: datetime | None = None) -> str | None:
    """Why a found token cannot be used ("unknown", "revoked", "expired"), or None when it can."""
    if row is None:
        return "unknown"
    if row.revoked:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= (now or utcnow()):
        return "expired"
    return None


class TokenCache:
    """Valid tokens remembered for `ttl` seconds, so a request costs no database read for its token.
    Revoking through the API clears it at once; a change made by another process shows within `ttl`.
    Unknown, revoked and expired tokens are not remembered (random guesses cannot grow it)."""

    def __init__(self, store: Store, ttl: float = 5.0):
        self.store, self.ttl = store, ttl
        self._valid: dict[str, tuple[ApiToken, float]] = {}

    def cached(self, token: str) -> ApiToken | None:
        """The token if it was found valid less than `ttl` seconds ago; never touches the database."""
        hit = self._valid.get(hash_token(token))
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def find(self, token: str) -> ApiToken | None:
        """The stored token, valid or not (callers check `usable`: a revoked or expired token is named in
        the audit row of its refusal), or None when no token has that value."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        key = hash_token(token)
        now = time.monotonic()
        row = _find_hashed(self.store, key)
        if usable(row) is None:
            self._valid[key] = (row, now + self.ttl)
        else:
            self._valid.pop(key, None)
        return row

    def clear(self) -> None:
        self._valid.clear()


def _find_hashed(store: Store, key: str) -> ApiToken | None:
    with store.session() as s:
        return s.scalars(select(ApiToken).where(ApiToken.token_hash == key)).first()
