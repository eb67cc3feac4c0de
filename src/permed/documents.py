"""Saved stage results (calls, phenotypes): versioned JSON documents, read back with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from permed.errors import InputFileError


class Document(BaseModel):
    """Base of a saved stage result: `schema` names the format and its version."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    schema_: str = Field(alias="schema")
    kb_version: str
    kb_sha256: str | None

    def dumps(self) -> str:
        return self.model_dump_json(by_alias=True)


def read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None


def load_document(model: type[Document], text: str | bytes, where: str, schema: str, kb) -> Document:
    """Parse and validate a saved document made with the same knowledge base as `kb`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != schema:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise InputFileError(f"{where}: schema {found!r} is not {schema!r}")
    try:
        doc = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputFileError(f"{where}: invalid at {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if doc.kb_sha256 and kb.sha256 and doc.kb_sha256 != kb.sha256:
        raise InputFileError(f"{where}: made with knowledge base {doc.kb_sha256[:12]}..., not the loaded "
                             f"{kb.sha256[:12]}... ({kb.kb_version}); load the same knowledge base")
    return doc
