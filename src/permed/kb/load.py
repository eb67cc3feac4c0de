"""Serialise, checksum and load knowledge bases.

A KB file is gzip'd JSON: `{"sha256":"<hex>","kb":<body>}` where the body is the KB's canonical JSON
(sorted keys, no spaces) and the hash is taken over exactly those bytes. Loading checks the hash
over the bytes as read (no re-serialisation) and validates the body in one pass (pydantic-core's
JSON parser), so the packaged KB loads in a few tens of milliseconds; a truncated, edited or
mismatched file is refused instead of yielding calls. `permed.kb/1` files (one JSON document with a
`sha256` field) are still read, the slow way.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from permed.errors import KnowledgeBaseError
from permed.kb.model import KB_SCHEMA, KnowledgeBase

PACKAGED_KB = "permed-kb.json.gz"
OLD_SCHEMAS = ("permed.kb/1",)
_PREFIX = b'{"sha256":"'
_BODY_AT = len(_PREFIX) + 64 + len(b'","kb":')  # the body starts after the fixed-width header


def canonical_body(kb: KnowledgeBase) -> bytes:
    data = kb.model_dump(mode="json", by_alias=True, exclude={"sha256"})
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def seal(kb: KnowledgeBase) -> KnowledgeBase:
    """Return the KB with its content checksum (SHA-256 of the canonical body) filled in."""
    return kb.model_copy(update={"sha256": hashlib.sha256(canonical_body(kb)).hexdigest()})


def dump_kb(kb: KnowledgeBase, path: Path) -> None:
    body = canonical_body(kb)
    digest = hashlib.sha256(body).hexdigest()
    payload = _PREFIX + digest.encode() + b'","kb":' + body + b"}"
    tmp = path.with_name(path.name + ".tmp")
    # mtime=0 keeps the file byte-identical across rebuilds of the same data
    with open(tmp, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
        gz.write(payload)
    tmp.replace(path)


def _validated(body: bytes | dict, where: str) -> KnowledgeBase:
    try:
        return (KnowledgeBase.model_validate_json(body) if isinstance(body, bytes)
                else KnowledgeBase.model_validate(body))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        if first["type"] == "json_invalid":
            raise KnowledgeBaseError(f"{where}: knowledge base is not valid JSON ({first['msg']})") from None
        if loc == "schema":
            raise KnowledgeBaseError(f"{where}: knowledge base schema {first.get('input')!r} is not "
                                     f"{KB_SCHEMA!r}") from None
        raise KnowledgeBaseError(f"{where}: knowledge base failed validation at {loc}: {first['msg']}") from None


def parse_kb(payload: bytes, where: str) -> KnowledgeBase:
    if payload.startswith(_PREFIX) and payload[_BODY_AT - 7:_BODY_AT] == b'","kb":' and payload.endswith(b"}"):
        # as written by dump_kb: hash the body's bytes as they are
        expected = payload[len(_PREFIX):len(_PREFIX) + 64].decode("ascii", "replace")
        body = payload[_BODY_AT:-1]
        found = hashlib.sha256(body).hexdigest()
        if found != expected:
            raise KnowledgeBaseError(f"{where}: knowledge base checksum mismatch (file {expected}, content {found})")
        return _validated(body, where).model_copy(update={"sha256": expected})
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KnowledgeBaseError(f"{where}: knowledge base is not valid JSON ({exc})") from None
    if isinstance(data, dict) and set(data) == {"sha256", "kb"} and isinstance(data["kb"], dict):
        body, expected = data["kb"], data["sha256"]  # re-written by another tool: hash the canonical form
    elif isinstance(data, dict) and data.get("schema") in OLD_SCHEMAS:
        body, expected = {k: v for k, v in data.items() if k != "sha256"}, data.get("sha256")
    else:
        inner = data.get("kb") if isinstance(data, dict) else None
        found = (inner if isinstance(inner, dict) else data).get("schema") if isinstance(data, dict) \
            else type(data).__name__
        raise KnowledgeBaseError(f"{where}: knowledge base schema {found!r} is not {KB_SCHEMA!r}")
    # permed.kb/1 hashed its canonical form with non-ASCII characters escaped
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=body.get("schema") in OLD_SCHEMAS)
    found = hashlib.sha256(canonical.encode()).hexdigest()
    if found != expected:
        raise KnowledgeBaseError(f"{where}: knowledge base checksum mismatch (file {expected}, content {found})")
    # an old schema is read as the current one (its rows become tables); any other schema is refused
    kb = _validated({**body, "schema": KB_SCHEMA} if body.get("schema") in OLD_SCHEMAS else body, where)
    return kb.model_copy(update={"sha256": expected})


def load_kb_file(path: Path) -> KnowledgeBase:
    try:
        raw = path.read_bytes()
        payload = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise KnowledgeBaseError(f"{path}: cannot read knowledge base ({exc})") from None
    return parse_kb(payload, str(path))


@lru_cache(maxsize=1)
def packaged_kb() -> KnowledgeBase:
    path = Path(str(resources.files("permed.kb") / "data" / PACKAGED_KB))
    if not path.exists():
        raise KnowledgeBaseError(f"{path}: packaged knowledge base missing; run `permed kb build`")
    return load_kb_file(path)


def load_kb(path: Path | None = None) -> KnowledgeBase:
    return load_kb_file(path) if path else packaged_kb()
