"""API tokens: random, shown once, stored as SHA-256; roles lab (upload), clinician (read, advice), admin."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from permed.errors import UserError
from permed.service.store import ApiToken, Store

ROLES = ("lab", "clinician", "admin")
PREFIX = "pmd_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_role(role: str) -> None:
    if role not in ROLES:
        raise UserError(f"--role: {role!r} is not one of {', '.join(ROLES)}")


def create_token(store: Store, role: str, name: str = "", by: ApiToken | None = None) -> tuple[ApiToken, str]:
    """(stored row, the token itself: shown once, never stored)."""
    check_role(role)
    token = PREFIX + secrets.token_urlsafe(32)
    with store.session() as s:
        row = ApiToken(name=name or role, role=role, token_hash=hash_token(token))
        s.add(row)
        s.flush()
        store.audit(s, by, f"token-create:{role}:{row.id}")
    return row, token


def find_token(store: Store, token: str) -> ApiToken | None:
    with store.session() as s:
        return s.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(token),
                                                ApiToken.revoked.is_(False))).first()
