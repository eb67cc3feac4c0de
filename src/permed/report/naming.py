"""File names of a patient's reports, in one place (the CLI, the service and its worker use them)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from permed.errors import InputFileError
from permed.report.i18n import SOURCE_LANGUAGE

CALLS_TSV = "calls.tsv"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_STEM = 200  # leaves room for ".report.<lang>.html" within 255 bytes
_LEADING_DOTS = re.compile(r"^\.+")
_HIDDEN = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})  # control, format (bidi, zero-width), unassigned


def sample_filename(sample: str) -> str:
    """A file name for a sample ID that is safe on every filesystem and visible: path separators and other
    characters become "_", and leading dots too (`../../x` must not become the hidden `.._.._x`)."""
    name = _UNSAFE.sub("_", sample)
    name = _LEADING_DOTS.sub(lambda m: "_" * len(m.group()), name)
    if len(name) > MAX_STEM:  # file systems refuse names over 255 bytes: keep a readable start, unique end
        import hashlib

        name = f"{name[:MAX_STEM - 13]}_{hashlib.sha256(sample.encode()).hexdigest()[:12]}"
    return name or "sample_"


def display_name(sample: str) -> str:
    """A sample ID as people see it (HTML, terminal): control and invisible formatting characters, such as
    the right-to-left override U+202E that makes text read backwards, are shown as their code point."""
    return "".join(f"<U+{ord(c):04X}>" if unicodedata.category(c) in _HIDDEN else c for c in sample)


@dataclass(frozen=True)
class ReportFiles:
    """OUT/<stem>.report.json, .report.html (.report.<lang>.html for other languages), .report.pdf, and
    <sample>.fhir.json."""

    stem: str  # e.g. "NA12878.report"

    @classmethod
    def for_sample(cls, sample: str) -> ReportFiles:
        return cls(f"{sample_filename(sample)}.report")

    @classmethod
    def from_json_name(cls, name: str) -> ReportFiles:
        return cls(name.removesuffix(".json"))

    @property
    def json(self) -> str:
        return f"{self.stem}.json"

    @property
    def tsv(self) -> str:
        """PharmCAT 3.1's TSV layout (`--format pharmcat-tsv`)."""
        return f"{self.stem}.tsv"

    @property
    def fhir(self) -> str:
        """The FHIR bundle (`--format fhir`): OUT/<sample>.fhir.json."""
        return f"{self.stem.removesuffix('.report')}.fhir.json"

    def html(self, lang: str = SOURCE_LANGUAGE) -> str:
        return f"{self.stem}.html" if lang == SOURCE_LANGUAGE else f"{self.stem}.{lang}.html"

    def pdf(self, lang: str = SOURCE_LANGUAGE) -> str:
        return f"{self.stem}.pdf" if lang == SOURCE_LANGUAGE else f"{self.stem}.{lang}.pdf"


def report_files(samples: list[str]) -> list[ReportFiles]:
    """Each sample's report files; two samples whose names would write the same files are refused."""
    seen: dict[str, str] = {}
    out = []
    for s in samples:
        files = ReportFiles.for_sample(s)
        if files.json in seen:
            raise InputFileError(f"samples {seen[files.json]!r} and {s!r} would write the same file {files.json}")
        seen[files.json] = s
        out.append(files)
    return out
