"""`OUT/<sample>.report.tsv`: one patient's calls in the column layout of PharmCAT 3.1's calls-only TSV, so
pipelines built around PharmCAT's file can read permed's.

A first line names the tool and version; then the 16 columns below, one row per gene with data (genes
without data are left out, as PharmCAT does). Conventions follow PharmCAT's writer: a gene that is not
called is a "no call" row; several source diplotypes share one row, joined by " OR " (alleles found on
their own for DPYD/RYR1, unphased, by " AND "), with phenotypes, activity scores and match scores joined by
" / " and the haplotype columns empty; a phenotype or activity score that says nothing ("n/a", "No
Result") is a single space; "Outside Call" and "Missing positions" are yes/no; the recommendation lookup
columns are filled when exactly one diplotype is used for advice; activity scores only for activity-score
genes.
"""

from __future__ import annotations

from typing import TextIO

from permed import __version__
from permed.kb.policy import LOWEST_FUNCTION_GENES
from permed.phenotype.model import Diplotype, GeneReport

COLUMNS = ("Gene", "Source Diplotype", "Phenotype", "Activity Score", "Haplotype 1", "Haplotype 1 Function",
           "Haplotype 1 Activity Value", "Haplotype 2", "Haplotype 2 Function", "Haplotype 2 Activity Value",
           "Outside Call", "Match Score", "Missing positions", "Recommendation Lookup Diplotype",
           "Recommendation Lookup Phenotype", "Recommendation Lookup Activity Score")
_SAYS_NOTHING = frozenset({"", "n/a", "No Result"})


def _value(text: str | None) -> str:
    return " " if text is None or text.strip() in _SAYS_NOTHING else text


def _phenotype(d: Diplotype) -> str:
    return ", ".join(_value(p) for p in d.phenotypes)


def _name(d: Diplotype, homozygous: list[str]) -> str:
    """Allele names joined by "/"; a single allele found on both chromosomes (unphased DPYD/RYR1) twice."""
    if len(d.alleles) == 1 and d.alleles[0] in homozygous:
        return f"{d.alleles[0]}/{d.alleles[0]}"
    return "/".join(d.alleles)


class PharmcatTsv:
    """Rows of one patient's TSV from the phenotype stage (gene reports) and the matcher's calls."""

    def __init__(self, result, si: int):
        self.result, self.si = result, si
        kb = result.kb
        self.activity_genes = {g for g, p in kb.phenotypes.items() if p.activity}

    def rows(self) -> list[list[str]]:
        pset = self.result.phenotypes
        out = []
        for gene in sorted(pset.genes):
            report = pset.report(self.si, gene)
            if report.no_data:
                continue
            out.append(self._row(gene, report))
        return out

    def _call(self, gene: str):
        calls = self.result.calls
        return calls.call(self.si, gene) if gene in calls.genes else None

    def _common(self, gene: str, report: GeneReport, match: str, lookup: bool) -> list[str]:
        call = self._call(gene)
        missing = bool(call is not None and call.missing_positions and not report.outside_call)
        cells = ["yes" if report.outside_call else "no", match, "yes" if missing else "no"]
        recs = report.recommendation_diplotypes
        if lookup and len(recs) == 1:
            rec = recs[0]
            cells += [_name(rec, report.homozygous_components), _phenotype(rec),
                      _value(rec.activity_score) if gene in self.activity_genes else ""]
        else:
            cells += ["", "", ""]
        return cells

    def _row(self, gene: str, report: GeneReport) -> list[str]:
        if not report.called:
            return [gene, "no call", "", "", "", "", "", "", "", ""] + self._common(gene, report, "", False)
        sources = report.source_diplotypes
        call = self._call(gene)
        scores = {d.name: d.score for d in call.diplotypes} if call is not None else {}
        singles = gene in LOWEST_FUNCTION_GENES and call is not None and not call.diplotypes
        homozygous = report.homozygous_components
        if len(sources) > 1 or singles:
            names = (" AND " if singles else " OR ").join(_name(d, homozygous) for d in sources)
            phenos = " / ".join(_phenotype(d) for d in sources) if not singles and any(
                d.phenotypes and d.phenotypes[0].strip() not in _SAYS_NOTHING for d in sources) else ""
            scores_text = " / ".join(_value(d.activity_score) for d in sources) if gene in self.activity_genes \
                and any(_value(d.activity_score) != " " for d in sources) else ""
            match = "" if singles else " / ".join(str(scores.get("/".join(d.alleles), call.match_score or 0))
                                                  for d in sources)
            return [gene, names, phenos, scores_text, "", "", "", "", "", ""] + \
                self._common(gene, report, match, True)
        d = sources[0]
        haps = []
        for i in range(2):
            if i < len(d.alleles):
                fn = d.functions[i] if i < len(d.functions) else None
                av = d.activity_values[i] if i < len(d.activity_values) else None
                haps += [d.alleles[i], fn or "", "" if av in (None, "n/a") else av]
            else:
                haps += ["", "", ""]
        activity = _value(d.activity_score) if gene in self.activity_genes and d.activity_score is not None else ""
        match = str(call.match_score) if call is not None and call.match_score is not None else "0"
        return [gene, _name(d, homozygous), _phenotype(d), activity, *haps] + self._common(gene, report, match, True)


def write_pharmcat_tsv(result, si: int, fh: TextIO) -> None:
    fh.write(f"permed {__version__} (calls in PharmCAT 3.1's TSV layout)\n")
    fh.write("\t".join(COLUMNS) + "\n")
    for row in PharmcatTsv(result, si).rows():
        fh.write("\t".join(row) + "\n")
