"""One gene of one patient in a line: the status every output prints and the label the report shows.

calls.tsv, calls.parquet, report.json, the HTML/PDF report and the CLI's table all take a gene's
status and its wording from here, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from permed.kb.wording import N_
from permed.matcher.model import GeneCall
from permed.phenotype.model import NO_RESULT, GeneReport, unspecified

DIPLOTYPE_JOINER = " OR "  # between the candidates of an ambiguous call (PharmCAT's separator)

# display labels (translated in the HTML report) and the report's CSS class, by display state
LABELS = {
    "called": (N_("called"), "s-called"),
    "uncallable": (N_("not callable"), "s-not"),
    "no_data": (N_("no data"), "s-not"),
    "not_called": (N_("not called"), "s-not"),
    "outside_call": (N_("outside call"), "s-outside"),
    "outside_call_unusable": (N_("outside call not usable"), "s-not"),
}


def gene_status(call: GeneCall | None, report: GeneReport) -> str:
    """The machine-readable status (report.json `status`, calls.tsv `Status`)."""
    if report.outside_call:
        return "outside_call" if report.reportable else "outside_call_unusable"
    return call.status if call is not None else "not_called"


def _display_state(call: GeneCall | None, report: GeneReport, status: str) -> str:
    """What the reader is told: a call advice can use is 'called' even when the matcher found no
    diplotype (SLCO1B1's rs4149056 fallback), and one it cannot use is 'not callable'."""
    if report.outside_call:
        return status
    if report.no_data:
        return "no_data"
    if call is not None and call.status == "not_called":
        return "not_called"
    return "called" if report.reportable else "uncallable"


def phenotype_text(report: GeneReport) -> str:
    return DIPLOTYPE_JOINER.join("; ".join(d.phenotypes) for d in report.recommendation_diplotypes
                                 if d.phenotypes)


def activity_text(report: GeneReport) -> str:
    scores = [d.activity_score for d in report.recommendation_diplotypes
              if not unspecified(d.activity_score) and d.activity_score != NO_RESULT]
    return DIPLOTYPE_JOINER.join(scores)


@dataclass(frozen=True)
class GeneSummary:
    gene: str
    status: str  # called | uncallable | no_data | not_called | outside_call | outside_call_unusable
    label: str  # display wording of the state (English; the HTML report translates it)
    css: str
    calls: tuple[str, ...]  # the call as shown (PharmCAT's display rules)
    phenotype: str  # per recommendation diplotype, joined by " OR "
    activity_score: str
    n_missing: int | None  # definition positions missing from the input (None: no VCF-based call)

    @property
    def call_text(self) -> str:
        return DIPLOTYPE_JOINER.join(self.calls)


def summarize(call: GeneCall | None, report: GeneReport) -> GeneSummary:
    status = gene_status(call, report)
    label, css = LABELS[_display_state(call, report, status)]
    return GeneSummary(
        gene=report.gene, status=status, label=label, css=css, calls=tuple(report.print_calls),
        phenotype=phenotype_text(report), activity_score=activity_text(report),
        n_missing=len(call.missing_positions) if call is not None and not report.outside_call else None,
    )
