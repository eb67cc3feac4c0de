"""Receiving an upload: the VCF streamed to a file in the data directory while it is hashed.

Two request shapes, one result:
- the VCF as the raw request body, with `X-Filename` and `X-Medications` headers (scripts, curl);
- `multipart/form-data` with a `vcf` file part and optional `outside_calls` (a file, as for
  `permed call --outside-calls`: PharmCAT's TSV or a CYP2D6 caller's output), `outside_calls_format`
  (as `--outside-calls-format`; default: detected) and `medications` (text) parts (browsers, LIS integrations).
The multipart body is parsed as it arrives (python-multipart's streaming parser), so the VCF is
never held in memory and the size limit stops a runaway upload early.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from permed.phenotype.caller_formats import FORMATS as OUTSIDE_CALL_FORMATS

MAX_SMALL_PART = 1024 * 1024  # outside calls and medication lists are text of a few lines
FIELDS = ("vcf", "outside_calls", "outside_calls_format", "medications")
OUTSIDE_CALLS_NAME = "outside_calls.tsv"  # how uploaded outside calls are named in reports and errors


class UploadRejected(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Received:
    """A request body received to a temporary file: the VCF with its extras."""

    path: Path  # temporary file in the data directory; the caller keeps or deletes it
    filename: str = "upload.vcf"
    size: int = 0
    outside_calls: str | None = None
    outside_calls_format: str | None = None
    outside_calls_name: str | None = None  # the outside-calls part's file name (StellarPGx names its sample there)
    medications: str | None = None
    _digest: object = field(default_factory=hashlib.sha256, repr=False)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


class _Sink:
    """Writes the VCF bytes to the temporary file, hashing and counting them."""

    def __init__(self, upload: Received, fh, limit: int):
        self.upload, self.fh, self.limit = upload, fh, limit
        self.total = 0  # every byte of the request, parts and framing, counts against the limit

    def count(self, n: int) -> None:
        self.total += n
        if self.total > self.limit:
            raise UploadRejected(413, f"upload larger than {self.limit} bytes")

    def vcf(self, data: bytes) -> None:
        self.upload.size += len(data)
        self.upload._digest.update(data)
        self.fh.write(data)


def _safe_name(name: str) -> str | None:
    """A file name as sent, without any folder part, control characters or excess length (it is shown in
    reports and errors); None when nothing is left."""
    base = Path(name.replace("\\", "/")).name
    base = "".join(c for c in base if c.isprintable())[:200]
    return base or None


def _text(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UploadRejected(400, f"form field {name!r} is not UTF-8 text (byte {exc.start})") from None


def _multipart_parser(boundary: bytes, upload: Received, sink: _Sink) -> tuple[dict, MultipartParser]:
    state: dict = {"headers": {}, "field": b"", "value": b"", "name": None, "small": bytearray(), "seen": set(),
                   "ended": False}

    def on_part_begin():
        state["headers"], state["name"], state["small"] = {}, None, bytearray()

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished():
        _, options = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name not in FIELDS:
            raise UploadRejected(400, f"unknown form field {name!r}: expected {', '.join(FIELDS)}")
        if name in state["seen"]:
            raise UploadRejected(400, f"form field {name!r} given twice")
        state["seen"].add(name)
        state["name"] = name
        if name == "vcf" and options.get(b"filename"):
            upload.filename = Path(options[b"filename"].decode("utf-8", "replace")).name or upload.filename
        if name == "outside_calls" and options.get(b"filename"):
            upload.outside_calls_name = _safe_name(options[b"filename"].decode("utf-8", "replace"))

    def on_part_data(data, start, end):
        if state["name"] == "vcf":
            sink.vcf(data[start:end])
        else:
            state["small"] += data[start:end]
            if len(state["small"]) > MAX_SMALL_PART:
                raise UploadRejected(413, f"form field {state['name']!r} is larger than {MAX_SMALL_PART} bytes")

    def on_part_end():
        if state["name"] in ("outside_calls", "medications"):
            text = _text(state["name"], bytes(state["small"]))
            # kept as sent (a leading TAB is an empty gene column), but blank means not given
            setattr(upload, state["name"], text if text.strip() else None)
        elif state["name"] == "outside_calls_format":
            fmt = _text(state["name"], bytes(state["small"])).strip().lower() or None
            if fmt is not None and fmt not in OUTSIDE_CALL_FORMATS:
                raise UploadRejected(400, f"form field 'outside_calls_format' must be one of "
                                          f"{', '.join(OUTSIDE_CALL_FORMATS)}")
            upload.outside_calls_format = fmt

    def on_end():
        state["ended"] = True

    return state, MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end, "on_end": on_end})


async def receive(request, tmp_dir: Path, limit: int, filename: str | None, medications: str | None) -> Received:
    """Read the request into a Received upload. On any error the temporary file is removed and
    UploadRejected raised."""
    import tempfile

    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=tmp_dir)
    upload = Received(path=Path(tmp_name))
    media, options = parse_options_header(request.headers.get("content-type"))
    try:
        with os.fdopen(fd, "wb") as fh:
            sink = _Sink(upload, fh, limit)
            if media == b"multipart/form-data":
                if not options.get(b"boundary"):
                    raise UploadRejected(400, "multipart upload without a boundary")
                form, parser = _multipart_parser(options[b"boundary"], upload, sink)
                async for chunk in request.stream():
                    sink.count(len(chunk))
                    parser.write(chunk)
                parser.finalize()
                # a body cut short would otherwise pass as a shorter VCF
                if not form["ended"]:
                    raise UploadRejected(400, "malformed multipart upload: the closing boundary is missing")
                if "vcf" not in form["seen"]:
                    raise UploadRejected(400, "the form has no 'vcf' file part")
            else:
                upload.filename = Path(filename or upload.filename).name or "upload.vcf"
                upload.medications = (medications or "").strip() or None
                async for chunk in request.stream():
                    sink.count(len(chunk))
                    sink.vcf(chunk)
        if upload.size == 0:
            raise UploadRejected(400, "empty upload: send the VCF as the request body or as the form's 'vcf' file")
    except MultipartParseError as exc:
        upload.path.unlink(missing_ok=True)
        raise UploadRejected(400, f"malformed multipart upload ({exc})") from None
    except BaseException:
        upload.path.unlink(missing_ok=True)
        raise
    return upload
