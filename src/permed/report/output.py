"""Write a run's outputs into OUT atomically: files appear only when every one was written."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from permed.report.calls_tsv import write_calls_tsv
from permed.report.naming import CALLS_TSV, report_files
from permed.staging import StagedOutput

if TYPE_CHECKING:
    from permed.engine.result import Result

REPORT_FORMATS = ("html", "pdf", "pharmcat-tsv", "fhir")  # besides the JSON report, which is always written


def write_outputs(result: Result, out_dir: Path, sample_reports: bool = True, formats: tuple[str, ...] = ("html",),
                  lang: str = "en", also_html: tuple[str, ...] = (), fhir_bundle: str = "transaction",
                  fhir_patient: str | None = None) -> list[Path]:
    """calls.tsv, and per sample: report JSON plus the clinician's report (`formats`: html and/or pdf)
    in `lang`, and an HTML report `<sample>.report.<lang>.html` for each language in `also_html`;
    `fhir` in formats: the FHIR bundle (`fhir_bundle`: transaction or collection) whose subject is
    `fhir_patient` (Patient/ID; default: a Patient made from the sample name)."""
    files = report_files(result.samples)
    if "fhir" in formats and sample_reports:
        from permed.report.fhir import check_fhir_options, fhir_bundle_json

        check_fhir_options(fhir_bundle, fhir_patient, len(result.samples))
    if sample_reports and (formats or also_html):
        from permed.report.html_report import render_html, report_context, write_pdf  # jinja2: only when used
        from permed.report.pharmcat_tsv import write_pharmcat_tsv
    with StagedOutput(out_dir) as out:
        with open(out.path(CALLS_TSV), "w", newline="\n", encoding="utf-8") as fh:
            write_calls_tsv(result, fh)
        if sample_reports:
            for si, names in enumerate(files):
                out.path(names.json).write_text(result.report_json(si), encoding="utf-8")
                if not formats and not also_html:
                    continue
                sample_advice = result.advice.sample(si) if result.advice is not None else None
                if "fhir" in formats:
                    text = fhir_bundle_json(result.report(si), bundle_type=fhir_bundle, patient_ref=fhir_patient,
                                            lang=lang, kb=result.kb)
                    out.path(names.fhir).write_text(text, encoding="utf-8")
                if "pharmcat-tsv" in formats:
                    with open(out.path(names.tsv), "w", newline="\n", encoding="utf-8") as fh:
                        write_pharmcat_tsv(result, si, fh)
                if "html" in formats or "pdf" in formats:
                    html = render_html(report_context(result, si, sample_advice, lang))
                    if "html" in formats:
                        out.path(names.html()).write_text(html, encoding="utf-8")
                    if "pdf" in formats:
                        write_pdf(html, out.path(names.pdf()))
                for other in also_html:
                    html = render_html(report_context(result, si, sample_advice, other))
                    out.path(names.html(other)).write_text(html, encoding="utf-8")
        return out.commit()
