"""Serialise, checksum and load knowledge bases.

The packaged KB is a gzip'd canonical JSON document with a SHA-256 over its content, so a
truncated, edited or mismatched file is refused at load time instead of yielding calls.
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


def _canonical_data(data: dict) -> bytes:
    body = {k: v for k, v in data.items() if k != "sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _canonical(kb: KnowledgeBase) -> bytes:
    return _canonical_data(kb.model_dump(mode="json", by_alias=True))


def seal(kb: KnowledgeBase) -> KnowledgeBase:
    """Return the KB with its content checksum filled in."""
    return kb.model_copy(update={"sha256": hashlib.sha256(_canonical(kb)).hexdigest()})


def dump_kb(kb: KnowledgeBase, path: Path) -> None:
    data = kb.model_dump(mode="json", by_alias=True)
    payload = json.dumps(data, sort_keys=True, indent=1).encode()
    tmp = path.with_name(path.name + ".tmp")
    # mtime=0 keeps the file byte-identical across rebuilds of the same data
    with open(tmp, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
        gz.write(payload)
    tmp.replace(path)


def parse_kb(payload: bytes, where: str) -> KnowledgeBase:
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise KnowledgeBaseError(f"{where}: knowledge base is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != KB_SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise KnowledgeBaseError(f"{where}: knowledge base schema {found!r} is not {KB_SCHEMA!r}")
    try:
        kb = KnowledgeBase.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise KnowledgeBaseError(f"{where}: knowledge base failed validation at {loc}: {first['msg']}") from None
    # The checksum covers the file's own content (identical to the model dump it was written from),
    # which avoids re-serialising a large model on every start.
    expected = hashlib.sha256(_canonical_data(data)).hexdigest()
    if kb.sha256 != expected:
        raise KnowledgeBaseError(f"{where}: knowledge base checksum mismatch (file {kb.sha256}, content {expected})")
    return kb


def load_kb_file(path: Path) -> KnowledgeBase:
    try:
        raw = path.read_bytes()
        payload = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise KnowledgeBaseError(f"{path}: cannot read knowledge base ({exc})") from None
    return parse_kb(payload, str(path))


@lru_cache(maxsize=1)
def packaged_kb() -> KnowledgeBase:
    ref = resources.files("permed.kb") / "data" / PACKAGED_KB
    with resources.as_file(ref) as path:
        if not path.exists():
            raise KnowledgeBaseError(f"{path}: packaged knowledge base missing; run `permed kb build`")
        return load_kb_file(path)


def load_kb(path: Path | None = None) -> KnowledgeBase:
    return load_kb_file(path) if path else packaged_kb()
