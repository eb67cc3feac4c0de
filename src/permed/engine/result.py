"""A run's result: calls, phenotypes and advice for every sample, and each patient's report."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from permed.advice.advice_set import AdviceSet
from permed.kb.model import KnowledgeBase
from permed.matcher.callset import CallSet
from permed.options import Options
from permed.phenotype.phenotype_set import PhenotypeSet

if TYPE_CHECKING:
    from permed.report.builder import ReportBuilder
    from permed.report.gene_summary import GeneSummary
    from permed.report.model import PatientReport


def now_iso() -> str:
    """The report timestamp; SOURCE_DATE_EPOCH (reproducible-builds convention) pins it, so a rerun
    can be byte-identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = (_dt.datetime.fromtimestamp(int(epoch), _dt.UTC) if epoch and epoch.isdigit()
           else _dt.datetime.now(_dt.UTC))
    return now.replace(microsecond=0).isoformat()


@dataclass
class Result:
    kb: KnowledgeBase
    options: Options
    calls: CallSet
    phenotypes: PhenotypeSet
    advice: AdviceSet | None  # None when the run did not look advice up (cohort tables)
    created: str = field(default_factory=now_iso)
    _builder: ReportBuilder | None = field(default=None, repr=False)

    @property
    def samples(self) -> list[str]:
        return self.calls.samples

    @property
    def genes(self) -> list[str]:
        return self.phenotypes.genes

    def index(self, sample: str) -> int:
        return self.calls.sample_index(sample)

    @property
    def builder(self) -> ReportBuilder:
        if self._builder is None:
            from permed.report.builder import ReportBuilder

            self._builder = ReportBuilder(self)
        return self._builder

    def report(self, si: int) -> PatientReport:
        """Sample `si`'s report (permed.report/1)."""
        return self.builder.patient(si)

    def report_json(self, si: int) -> str:
        """Sample `si`'s report as written to `<sample>.report.json` (= `report(si).dumps()`)."""
        return self.builder.dumps(si)

    def patient(self, sample: str) -> PatientReport:
        """The report of the patient (VCF sample) named `sample`."""
        return self.report(self.index(sample))

    def patients(self) -> Iterator[PatientReport]:
        return (self.report(si) for si in range(len(self.samples)))

    def summaries(self, si: int) -> list[GeneSummary]:
        """One line per gene of sample `si`, as every output states it."""
        from permed.report.gene_summary import summarize

        called = set(self.calls.genes)
        return [summarize(self.calls.call(si, g) if g in called else None, self.phenotypes.report(si, g))
                for g in self.phenotypes.genes]

    def write(self, out_dir: Path, formats: tuple[str, ...] = ("html",), lang: str = "en",
              sample_reports: bool = True, also_html: tuple[str, ...] = (), fhir_bundle: str = "transaction",
              fhir_patient: str | None = None) -> list[Path]:
        """calls.tsv plus each patient's report JSON and HTML/PDF/FHIR reports, written atomically."""
        from permed.report.output import write_outputs

        return write_outputs(self, Path(out_dir), sample_reports=sample_reports, formats=formats, lang=lang,
                             also_html=also_html, fhir_bundle=fhir_bundle, fhir_patient=fhir_patient)
