"""Write all outputs into OUT atomically: files appear only when every one was written."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from permed.advice.advice_set import AdviceSet
from permed.errors import UserError
from permed.phenotype.phenotype_set import PhenotypeSet
from permed.pipeline import CallSet
from permed.report.calls_tsv import write_calls_tsv
from permed.report.html_report import render_html, report_context, write_pdf
from permed.report.report_json import SampleReportWriter

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def sample_filename(sample: str) -> str:
    """A file name for a sample ID that is safe on every filesystem."""
    name = _UNSAFE.sub("_", sample)
    return name if name not in ("", ".", "..") else f"sample_{name}"


def write_outputs(callset: CallSet, pset: PhenotypeSet, out_dir: Path, sample_reports: bool = True,
                  advice: AdviceSet | None = None, formats: tuple[str, ...] = ("html",),
                  lang: str = "en") -> list[Path]:
    """calls.tsv, and per sample: report JSON plus the clinician's report (`formats`: html and/or pdf)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a directory")
    names: dict[str, int] = {}
    for si, s in enumerate(callset.samples):
        fn = sample_filename(s) + ".report.json"
        if fn in names:
            raise UserError(f"samples {callset.samples[names[fn]]!r} and {s!r} would write the same file {fn}")
        names[fn] = si
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".permed-", dir=out_dir))
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot write output ({exc.strerror})") from None
    try:
        written = []
        with open(tmp / "calls.tsv", "w", newline="\n") as fh:
            write_calls_tsv(callset, pset, fh)
        written.append("calls.tsv")
        if sample_reports:
            writer = SampleReportWriter(callset, pset, advice=advice)
            for fn, si in names.items():
                with open(tmp / fn, "w") as fh:
                    fh.write(writer.render(si))
                written.append(fn)
                if formats:
                    stem = fn.removesuffix(".json")
                    ctx = report_context(callset, pset, si, advice.sample(si) if advice else None, lang,
                                         writer.created)
                    html = render_html(ctx)
                    if "html" in formats:
                        (tmp / f"{stem}.html").write_text(html, encoding="utf-8")
                        written.append(f"{stem}.html")
                    if "pdf" in formats:
                        write_pdf(html, tmp / f"{stem}.pdf")
                        written.append(f"{stem}.pdf")
        final = []
        for fn in written:
            os.replace(tmp / fn, out_dir / fn)
            final.append(out_dir / fn)
        return final
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot write output ({exc.strerror})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
