"""OUT/calls.tsv: one row per sample x gene, PharmCAT's calls-only column names first."""

from __future__ import annotations

from typing import TextIO

from permed.pipeline import CallSet

COLUMNS = [
    "Sample", "Gene", "Source Diplotype", "Phenotype", "Activity Score", "Match Score", "Missing Positions",
    "Phased", "Status", "Haplotype 1", "Haplotype 2", "Warnings", "Input File", "KB Version", "Data Licence",
]
DIPLOTYPE_JOINER = " OR "
DATA_LICENCE = "CPIC CC0 1.0; ClinPGx/PharmGKB CC BY-SA 4.0"


def _cell(value: str) -> str:
    return value.replace("\t", " ").replace("\n", " ")


def write_calls_tsv(callset: CallSet, fh: TextIO) -> None:
    kb_version = callset.kb.kb_version
    fh.write("\t".join(COLUMNS) + "\n")
    row_cache: dict[int, str] = {}
    for si, sample in enumerate(callset.samples):
        for gene in callset.genes:
            call = callset.call(si, gene)
            files = callset.gene_source(si, gene) or ""
            tail = row_cache.get(id(call))
            if tail is None:
                hap1 = hap2 = ""
                if len(call.diplotypes) == 1:
                    haps = call.diplotypes[0].haplotypes
                    hap1 = haps[0].name
                    hap2 = haps[1].name if len(haps) > 1 else ""
                tail = "\t".join([
                    _cell(DIPLOTYPE_JOINER.join(call.source_diplotypes)),
                    "",  # Phenotype: filled by the interpretation stage
                    "",  # Activity Score
                    "" if call.match_score is None else str(call.match_score),
                    ";".join(str(p) for p in call.missing_positions),
                    "yes" if call.phased else "no",
                    call.status,
                    _cell(hap1),
                    _cell(hap2),
                    _cell(";".join(w.name for w in call.warnings)),
                ])
                row_cache[id(call)] = tail
            fh.write(f"{_cell(sample)}\t{gene}\t{tail}\t{files}\t{kb_version}\t{DATA_LICENCE}\n")
