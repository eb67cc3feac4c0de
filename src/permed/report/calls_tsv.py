"""OUT/calls.tsv: one row per sample x gene, PharmCAT's calls-only column names first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from permed.phenotype.model import GeneReport
from permed.report.gene_summary import DIPLOTYPE_JOINER, summarize

if TYPE_CHECKING:
    from permed.engine.result import Result

COLUMNS = [
    "Sample", "Gene", "Source Diplotype", "Phenotype", "Activity Score", "Match Score", "Missing Positions",
    "Phased", "Status", "Haplotype 1", "Haplotype 2", "Warnings", "Input File", "KB Version", "Data Licence",
    "Outside Call", "Recommendation Diplotype", "Lookup Keys",
]
DATA_LICENCE = "CPIC CC0 1.0; ClinPGx/PharmGKB CC BY-SA 4.0"


def _cell(value: str) -> str:
    return value.replace("\t", " ").replace("\n", " ")


@dataclass(frozen=True)
class CallRow:
    """What one sample x gene row says, typed; calls.tsv and the cohort's calls.parquet both print it."""

    source_diplotypes: tuple[str, ...]
    phenotype: str
    activity_score: str
    match_score: int | None
    missing_positions: tuple[int, ...]
    phased: bool
    status: str
    haplotype_1: str
    haplotype_2: str
    flags: tuple[str, ...]
    outside_call: bool
    recommendation_diplotype: str
    lookup_keys: str

    @property
    def diplotype(self) -> str:
        return DIPLOTYPE_JOINER.join(self.source_diplotypes)


def call_row(call, report: GeneReport) -> CallRow:
    hap1 = hap2 = ""
    if report.outside_call:
        labels = [d.label for d in report.source_diplotypes]
        recs = report.recommendation_diplotypes
        if len(recs) == 1 and recs[0].alleles:
            hap1 = recs[0].alleles[0]
            hap2 = recs[0].alleles[1] if len(recs[0].alleles) > 1 else ""
    else:
        labels = call.source_diplotypes if call is not None else []
        if call is not None and len(call.diplotypes) == 1:
            haps = call.diplotypes[0].haplotypes
            hap1 = haps[0].name
            hap2 = haps[1].name if len(haps) > 1 else ""
    matcher = call if call is not None and not report.outside_call else None
    recs = report.recommendation_diplotypes if report.reportable else []
    summary = summarize(call, report)
    return CallRow(
        source_diplotypes=tuple(labels),
        phenotype=summary.phenotype,
        activity_score=summary.activity_score,
        match_score=matcher.match_score if matcher is not None else None,
        missing_positions=tuple(matcher.missing_positions) if matcher else (),
        phased=matcher is not None and matcher.phased,
        status=summary.status,
        haplotype_1=hap1,
        haplotype_2=hap2,
        flags=tuple(m.name for m in report.messages),
        outside_call=report.outside_call,
        recommendation_diplotype=DIPLOTYPE_JOINER.join("/".join(d.alleles) for d in recs),
        lookup_keys=DIPLOTYPE_JOINER.join(";".join(d.lookup_keys) for d in recs),
    )


def _tail(row: CallRow) -> str:
    return "\t".join([
        _cell(row.diplotype),
        _cell(row.phenotype),
        _cell(row.activity_score),
        "" if row.match_score is None else str(row.match_score),
        ";".join(str(p) for p in row.missing_positions),
        "yes" if row.phased else "no",
        row.status,
        _cell(row.haplotype_1),
        _cell(row.haplotype_2),
        _cell(";".join(row.flags)),
    ])


def _extra(row: CallRow) -> str:
    return "\t".join([
        "yes" if row.outside_call else "no",
        _cell(row.recommendation_diplotype),
        _cell(row.lookup_keys),
    ])


def write_calls_tsv(result: Result, fh: TextIO) -> None:
    callset, pset = result.calls, result.phenotypes
    kb_version = result.kb.kb_version
    fh.write("\t".join(COLUMNS) + "\n")
    cache: dict[tuple[int, int], tuple[str, str]] = {}
    called_genes = set(callset.genes)
    for si, sample in enumerate(callset.samples):
        for gene in pset.genes:
            report = pset.report(si, gene)
            call = callset.call(si, gene) if gene in called_genes else None
            files = (callset.gene_source(si, gene) or "") if gene in called_genes else ""
            key = (id(call), id(report))
            parts = cache.get(key)
            if parts is None:
                row = call_row(call, report)
                parts = cache[key] = (_tail(row), _extra(row))
            fh.write(f"{_cell(sample)}\t{gene}\t{parts[0]}\t{files}\t{kb_version}\t{DATA_LICENCE}\t{parts[1]}\n")
