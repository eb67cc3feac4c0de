"""Write all outputs into OUT atomically: files appear only when every one was written."""

from __future__ import annotations

import re
from pathlib import Path

from permed.advice.advice_set import AdviceSet
from permed.errors import UserError
from permed.phenotype.phenotype_set import PhenotypeSet
from permed.pipeline import CallSet
from permed.report.calls_tsv import write_calls_tsv
from permed.report.html_report import render_html, report_context, write_pdf
from permed.report.report_json import SampleReportWriter
from permed.staging import StagedOutput

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def sample_filename(sample: str) -> str:
    """A file name for a sample ID that is safe on every filesystem."""
    name = _UNSAFE.sub("_", sample)
    return name if name not in ("", ".", "..") else f"sample_{name}"


def write_outputs(callset: CallSet, pset: PhenotypeSet, out_dir: Path, sample_reports: bool = True,
                  advice: AdviceSet | None = None, formats: tuple[str, ...] = ("html",),
                  lang: str = "en", also_html: tuple[str, ...] = ()) -> list[Path]:
    """calls.tsv, and per sample: report JSON plus the clinician's report (`formats`: html and/or pdf)
    in `lang`, and an HTML report `<sample>.report.<lang>.html` for each language in `also_html`."""
    names: dict[str, int] = {}
    for si, s in enumerate(callset.samples):
        fn = sample_filename(s) + ".report.json"
        if fn in names:
            raise UserError(f"samples {callset.samples[names[fn]]!r} and {s!r} would write the same file {fn}")
        names[fn] = si
    with StagedOutput(out_dir) as out:
        with open(out.path("calls.tsv"), "w", newline="\n") as fh:
            write_calls_tsv(callset, pset, fh)
        if sample_reports:
            writer = SampleReportWriter(callset, pset, advice=advice)
            for fn, si in names.items():
                with open(out.path(fn), "w") as fh:
                    fh.write(writer.render(si))
                stem = fn.removesuffix(".json")
                sample_advice = advice.sample(si) if advice else None
                if formats:
                    html = render_html(report_context(callset, pset, si, sample_advice, lang, writer.created))
                    if "html" in formats:
                        out.path(f"{stem}.html").write_text(html, encoding="utf-8")
                    if "pdf" in formats:
                        write_pdf(html, out.path(f"{stem}.pdf"))
                for other in also_html:
                    html = render_html(report_context(callset, pset, si, sample_advice, other, writer.created))
                    out.path(f"{stem}.{other}.html").write_text(html, encoding="utf-8")
        return out.commit()
