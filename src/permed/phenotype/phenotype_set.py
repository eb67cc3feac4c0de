"""Phenotypes for every sample of a call set, stored like the calls: shared reports plus index arrays.

A `PhenotypeSet` can be saved as JSON (`permed.phenotypes/1`) and loaded again, so advice can be
looked up for phenotypes interpreted earlier or elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from permed.documents import Document, load_document, read_text
from permed.phenotype.caller_formats import GENE as CALLER_GENE
from permed.phenotype.caller_formats import PHARMCAT, check_format, detect_format, read_caller_file
from permed.phenotype.model import GeneReport
from permed.phenotype.outside_calls import (
    OutsideCall,
    OutsideCallError,
    OutsideCallsText,
    read_outside_calls,
    source_content,
)
from permed.phenotype.phenotyper import Phenotyper, outside_report

OUTSIDE_ONLY_GENES = ("HLA-A", "HLA-B", "MT-RNR1")
PHENOTYPES_SCHEMA = "permed.phenotypes/1"
MAX_ROW_WARNINGS = 20  # per-sample rows not used, listed one by one up to this many


@dataclass
class PhenotypeSet:
    """`choice[gene][i]` indexes `reports` for sample i (the call set's pattern sharing carries over)."""

    genes: list[str]
    samples: list[str]
    reports: list[GeneReport]
    choice: dict[str, np.ndarray]
    outside_files: list[str] = field(default_factory=list)
    outside_errors: list[OutsideCallError] = field(default_factory=list)  # PharmCAT-format lines not used
    # per-sample rows not used, rows for samples not in the VCF, ignored parts of callers' files
    outside_warnings: list[str] = field(default_factory=list)

    def report(self, si: int, gene: str) -> GeneReport:
        return self.reports[self.choice[gene][si]]

    # ---- saving and loading (permed.phenotypes/1) ---------------------------------------------
    def to_json(self, kb) -> str:
        return PhenotypeSetDocument(
            schema=PHENOTYPES_SCHEMA, kb_version=kb.kb_version, kb_sha256=kb.sha256, genes=self.genes,
            samples=self.samples, reports=self.reports, choice={g: a.tolist() for g, a in self.choice.items()},
            outside_files=self.outside_files,
            outside_errors=self.outside_errors, outside_warnings=self.outside_warnings,
        ).dumps()

    def save(self, path: Path, kb) -> None:
        Path(path).write_text(self.to_json(kb), encoding="utf-8")

    @classmethod
    def from_json(cls, text: str | bytes, kb, where: str = "phenotypes") -> PhenotypeSet:
        doc = load_document(PhenotypeSetDocument, text, where, PHENOTYPES_SCHEMA, kb)
        return cls(genes=list(doc.genes), samples=list(doc.samples), reports=list(doc.reports),
                   choice={g: np.asarray(v, dtype=np.int32) for g, v in doc.choice.items()},
                   outside_files=list(doc.outside_files),
                   outside_errors=list(doc.outside_errors), outside_warnings=list(doc.outside_warnings))

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
    outside_warnings: list[str] = []


def known_genes(kb) -> set[str]:
    return set(kb.genes) | set(kb.phenotypes) | {"HLA-A", "HLA-B"}


@dataclass
class OutsideCallsRead:
    """Every outside-call source read: PharmCAT-format calls for every sample (`shared_*`) and, from
    callers' files that name samples, each sample's calls and unusable rows by gene."""

    files: list[str] = field(default_factory=list)
    shared_calls: list[OutsideCall] = field(default_factory=list)
    shared_errors: list[OutsideCallError] = field(default_factory=list)
    per_sample: dict[str, dict[str, tuple[list[OutsideCall], list[OutsideCallError]]]] = field(default_factory=dict)
    sample_files: dict[str, list[str]] = field(default_factory=dict)  # gene -> caller files giving it
    samples: list[str] = field(default_factory=list)  # named by caller files, first appearance first
    warnings: list[str] = field(default_factory=list)

    def sample_errors(self) -> list[OutsideCallError]:
        return [e for genes in self.per_sample.values() for _, errs in genes.values() for e in errs]


def read_outside_sources(paths: list[Path | OutsideCallsText], ph: Phenotyper,
                         fmt: str | None = None) -> OutsideCallsRead:
    """Read outside calls in any supported format (`fmt` forces one for every file; a text's own
    `format` wins). A file that cannot be used raises OutsideCallsError."""
    known = known_genes(ph.kb)
    out = OutsideCallsRead(files=[str(p) for p in paths])
    for p in paths:
        source = p if isinstance(p, OutsideCallsText) else Path(p)
        data, text = source_content(source)
        f = check_format((source.format if isinstance(source, OutsideCallsText) else None) or fmt)
        f = f or detect_format(data, text)
        if f == PHARMCAT:
            if text is None:
                read_outside_calls(source, known.__contains__, ph.annotator)  # raises the UTF-8 error
            c, e = read_outside_calls(source, known.__contains__, ph.annotator, text=text)
            out.shared_calls.extend(c)
            out.shared_errors.extend(e)
            continue
        got = read_caller_file(str(source), f, data, text, ph.annotator(CALLER_GENE))
        out.warnings.extend(got.warnings)
        out.sample_files.setdefault(CALLER_GENE, []).append(got.name)
        for sample in got.samples:
            if sample not in out.per_sample:
                out.per_sample[sample] = {}
                out.samples.append(sample)
            calls, errors = out.per_sample[sample].setdefault(CALLER_GENE, ([], []))
            if sample in got.calls:
                calls.append(got.calls[sample])
            if sample in got.errors:
                errors.append(got.errors[sample])
    return out


def read_all_outside_calls(paths: list[Path | OutsideCallsText], ph: Phenotyper, fmt: str | None = None):
    """(calls for every sample, every line or row that cannot be used)."""
    read = read_outside_sources(paths, ph, fmt)
    return read.shared_calls, read.shared_errors + read.sample_errors()


def interpret(callset, outside_calls: list[Path | OutsideCallsText] | None = None,
              phenotyper: Phenotyper | None = None, outside_calls_format: str | None = None,
              read: OutsideCallsRead | None = None, known_samples: set[str] | None = None,
              report_cache: dict[int, tuple] | None = None) -> PhenotypeSet:
    """One gene report per distinct gene call of the call set (pipeline.CallSet); outside calls replace
    the VCF-based report of their gene: PharmCAT-format calls for every sample of the call set, callers'
    files (Cyrius, Aldy, StellarPGx, PyPGx) for the sample each row names. `known_samples`: every sample of
    the run when the call set holds a block of them (rows for other blocks' samples are not "not in the VCF").
    `report_cache`: id(call) -> (call, report), kept by the caller across blocks whose calls are shared objects."""
    ph = phenotyper or Phenotyper(callset.kb)
    # the table repeats a call object once per chunk it was chosen in: interpret each object once
    seen: dict[int, tuple] = report_cache if report_cache is not None else {}
    reports = []
    for call in callset.table:
        hit = seen.get(id(call))
        if hit is None or hit[0] is not call:  # the call itself is held, so its id cannot be another's
            hit = seen[id(call)] = (call, ph.report(call))
        reports.append(hit[1])
    choice = {g: callset.choice[g].copy() for g in callset.genes}
    genes = list(callset.genes)
    oc = read if read is not None else read_outside_sources(list(outside_calls or []), ph, outside_calls_format)
    by_gene: dict[str, tuple[list, list]] = {}
    for c in oc.shared_calls:
        by_gene.setdefault(c.gene, ([], []))[0].append(c)
    for e in oc.shared_errors:
        by_gene.setdefault(e.gene, ([], []))[1].append(e)
    n = len(callset.samples)
    for gene, (gcalls, gerrors) in by_gene.items():
        if gene in oc.sample_files:
            continue  # with the per-sample calls below
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
    warnings = list(oc.warnings)
    index = {s: i for i, s in enumerate(callset.samples)}
    for gene, files in oc.sample_files.items():
        unused: list[str] = []
        shared_calls, shared_errors = by_gene.get(gene, ([], []))
        old = choice.get(gene)
        new = np.full(n, -1, dtype=np.int32)
        absent: dict[int, int] = {}  # VCF-based report -> the report of samples the files have no row for
        for i, sample in enumerate(callset.samples):
            prior = reports[old[i]] if old is not None else None
            own = oc.per_sample.get(sample, {}).get(gene)
            if own is None and (shared_calls or shared_errors):
                own = ([], [])
            if own is None:
                key = int(old[i]) if old is not None else -1
                if key not in absent:
                    missing = OutsideCallError(gene, ", ".join(files), f"no {gene} row for this sample (sample "
                                               "names must match the VCF's); not called")
                    reports.append(outside_report(ph, gene, [], [missing], prior))
                    absent[key] = len(reports) - 1
                new[i] = absent[key]
                continue
            calls, errors = own
            reports.append(outside_report(ph, gene, shared_calls + calls, shared_errors + errors, prior))
            new[i] = len(reports) - 1
            unused.extend(f"{e.where}: sample {sample}: {e.reason} ({gene} reported as not called)" for e in errors)
        if len(unused) > MAX_ROW_WARNINGS:  # a cohort's no-calls: each report says why; the log stays short
            unused[MAX_ROW_WARNINGS // 2:] = [f"{', '.join(files)}: {len(unused) - MAX_ROW_WARNINGS // 2} more "
                                               f"{gene} row(s) not used (see each sample's report)"]
        warnings.extend(unused)
        if gene not in choice:
            genes.append(gene)
        choice[gene] = new
        extra = [s for s in oc.samples if s not in (known_samples or index) and gene in oc.per_sample[s]]
        if extra:
            shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
            warnings.append(f"{', '.join(files)}: {gene} row(s) for {len(extra)} sample(s) not in the VCF ignored: "
                            f"{shown}")
    return PhenotypeSet(genes=genes, samples=list(callset.samples), reports=reports, choice=choice,
                        outside_files=list(oc.files), outside_errors=list(oc.shared_errors),
                        outside_warnings=warnings)
