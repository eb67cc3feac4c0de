"""Phenotypes for every sample of a call set, stored like the calls: shared reports plus index arrays.

A `PhenotypeSet` can be saved as JSON (`permed.phenotypes/1`) and loaded again, so advice can be
looked up for phenotypes interpreted earlier or elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from permed.documents import Document, load_document, read_text
from permed.phenotype.model import GeneReport
from permed.phenotype.outside_calls import OutsideCall, OutsideCallError, OutsideCallsText, read_outside_calls
from permed.phenotype.phenotyper import Phenotyper, outside_report

OUTSIDE_ONLY_GENES = ("HLA-A", "HLA-B", "MT-RNR1")
PHENOTYPES_SCHEMA = "permed.phenotypes/1"


@dataclass
class PhenotypeSet:
    """`choice[gene][i]` indexes `reports` for sample i (the call set's pattern sharing carries over)."""

    genes: list[str]
    samples: list[str]
    reports: list[GeneReport]
    choice: dict[str, np.ndarray]
    outside_files: list[str] = field(default_factory=list)
    outside_errors: list[OutsideCallError] = field(default_factory=list)

    def report(self, si: int, gene: str) -> GeneReport:
        return self.reports[self.choice[gene][si]]

    # ---- saving and loading (permed.phenotypes/1) ---------------------------------------------
    def to_json(self, kb) -> str:
        return PhenotypeSetDocument(
            schema=PHENOTYPES_SCHEMA, kb_version=kb.kb_version, kb_sha256=kb.sha256, genes=self.genes,
            samples=self.samples, reports=self.reports, choice={g: a.tolist() for g, a in self.choice.items()},
            outside_files=self.outside_files,
            outside_errors=self.outside_errors,
        ).dumps()

    def save(self, path: Path, kb) -> None:
        Path(path).write_text(self.to_json(kb), encoding="utf-8")

    @classmethod
    def from_json(cls, text: str | bytes, kb, where: str = "phenotypes") -> PhenotypeSet:
        doc = load_document(PhenotypeSetDocument, text, where, PHENOTYPES_SCHEMA, kb)
        return cls(genes=list(doc.genes), samples=list(doc.samples), reports=list(doc.reports),
                   choice={g: np.asarray(v, dtype=np.int32) for g, v in doc.choice.items()},
                   outside_files=list(doc.outside_files),
                   outside_errors=list(doc.outside_errors))

    @classmethod
    def load(cls, path: Path, kb) -> PhenotypeSet:
        return cls.from_json(read_text(path), kb, str(path))


class PhenotypeSetDocument(Document):
    """A saved PhenotypeSet: distinct gene reports plus, per gene, each sample's index into them."""

    genes: list[str]
    samples: list[str]
    reports: list[GeneReport]
    choice: dict[str, list[int]]
    outside_files: list[str]
    outside_errors: list[OutsideCallError]


def known_genes(kb) -> set[str]:
    return set(kb.genes) | set(kb.phenotypes) | {"HLA-A", "HLA-B"}


def read_all_outside_calls(paths: list[Path | OutsideCallsText], ph: Phenotyper):
    known = known_genes(ph.kb)
    calls: list[OutsideCall] = []
    errors: list[OutsideCallError] = []
    for p in paths:
        c, e = read_outside_calls(p if isinstance(p, OutsideCallsText) else Path(p), known.__contains__,
                                  ph.annotator)
        calls.extend(c)
        errors.extend(e)
    return calls, errors


def interpret(callset, outside_calls: list[Path | OutsideCallsText] | None = None,
              phenotyper: Phenotyper | None = None) -> PhenotypeSet:
    """One gene report per distinct gene call of the call set (pipeline.CallSet); outside calls replace
    the VCF-based report of their gene for every sample of the call set."""
    ph = phenotyper or Phenotyper(callset.kb)
    # the table repeats a call object once per chunk it was chosen in: interpret each object once
    seen: dict[int, GeneReport] = {}
    reports = []
    for call in callset.table:
        r = seen.get(id(call))
        if r is None:
            r = seen[id(call)] = ph.report(call)
        reports.append(r)
    choice = {g: callset.choice[g].copy() for g in callset.genes}
    genes = list(callset.genes)
    calls, errors = read_all_outside_calls(list(outside_calls or []), ph)
    by_gene: dict[str, tuple[list, list]] = {}
    for c in calls:
        by_gene.setdefault(c.gene, ([], []))[0].append(c)
    for e in errors:
        by_gene.setdefault(e.gene, ([], []))[1].append(e)
    n = len(callset.samples)
    for gene, (gcalls, gerrors) in by_gene.items():
        if gene in choice:
            old = choice[gene]
            new = np.empty_like(old)
            for idx in np.unique(old):  # one outside report per distinct VCF-based report it replaces
                reports.append(outside_report(ph, gene, gcalls, gerrors, reports[idx]))
                new[old == idx] = len(reports) - 1
            choice[gene] = new
        else:
            reports.append(outside_report(ph, gene, gcalls, gerrors, None))
            choice[gene] = np.full(n, len(reports) - 1, dtype=np.int32)
            genes.append(gene)
    return PhenotypeSet(genes=genes, samples=list(callset.samples), reports=reports, choice=choice,
                        outside_files=[str(p) for p in outside_calls or []], outside_errors=errors)
