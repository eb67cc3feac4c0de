"""The engine: VCF files -> genotypes -> gene calls, for one patient or a whole cohort.

Work is split into units (file x chromosome when the file is indexed, else whole files) that
run in worker processes; results are assembled in input order, so output does not depend on
the number of workers.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from permed.errors import UserError
from permed.genotypes.files import file_sha256
from permed.genotypes.model import CALLED
from permed.genotypes.vcf_reader import ReadOptions, read_genotypes
from permed.kb.model import KnowledgeBase
from permed.matcher.cohort import CohortCaller
from permed.matcher.gene_caller import MatchOptions
from permed.matcher.model import GeneCall, Message

CYP2D6 = "CYP2D6"
CYP2D6_VCF_WARNING = Message(
    name="cyp2d6-from-vcf",
    text="CYP2D6 was called from SNVs and small indels only. Gene deletions (*5), duplications and hybrid "
    "alleles are invisible in a VCF, so a *1/*1 call may hide *1/*5 or a duplication; confirm with a "
    "copy-number-aware caller before acting on it.",
)
CYP2D6_NOT_CALLED = Message(
    name="cyp2d6-not-called",
    text="CYP2D6 is not called from VCF by default because its deletions and duplications are invisible "
    "in a VCF. Provide an outside call (e.g. from a copy-number-aware caller) or use --cyp2d6-from-vcf.",
)


@dataclass(frozen=True)
class CallOptions:
    genes: tuple[str, ...] | None = None
    missing_to_ref: bool = False
    require_pass: bool = False
    find_combinations: bool = False
    all_matches: bool = False
    cyp2d6_from_vcf: bool = False
    workers: int = 1

    def match_options(self) -> MatchOptions:
        return MatchOptions(find_combinations=self.find_combinations, top_candidate_only=not self.all_matches)

    def read_options(self) -> ReadOptions:
        return ReadOptions(missing_to_ref=self.missing_to_ref, require_pass=self.require_pass,
                           find_combinations=self.find_combinations)

    def as_dict(self) -> dict:
        return {
            "missing_to_ref": self.missing_to_ref,
            "require_pass": self.require_pass,
            "find_combinations": self.find_combinations,
            "all_matches": self.all_matches,
            "cyp2d6_from_vcf": self.cyp2d6_from_vcf,
        }


@dataclass
class InputInfo:
    file: str
    sha256: str
    samples: tuple[str, ...]
    notices: list[str] = field(default_factory=list)


@dataclass
class CallSet:
    """Per-sample gene calls.  Samples sharing a genotype pattern share the same GeneCall object."""

    kb: KnowledgeBase
    options: CallOptions
    inputs: list[InputInfo]
    samples: list[str]
    genes: list[str]
    calls: dict[str, dict[str, GeneCall]]  # sample -> gene -> call
    sample_input: dict[str, list[int]]  # sample -> indexes into inputs
    gene_source: dict[tuple[str, str], str]  # (sample, gene) -> input file the call was made from
    vcf_warnings: dict[str, dict[str, list[str]]]  # sample -> "chr:pos" -> messages


def selected_genes(kb: KnowledgeBase, options: CallOptions) -> list[str]:
    genes = sorted(kb.genes)
    if options.genes:
        unknown = [g for g in options.genes if g not in kb.genes]
        if unknown:
            raise UserError(f"--genes: unknown gene(s) {', '.join(unknown)}; known: {', '.join(genes)}")
        genes = [g for g in genes if g in options.genes]
    return genes


def _has_index(path: Path) -> bool:
    return any(Path(str(path) + ext).exists() for ext in (".tbi", ".csi")) and path.suffix in (".gz", ".bgz", ".bcf")


@dataclass
class _Unit:
    file_index: int
    path: Path
    genes: list[str]
    regions: list[str] | None


@dataclass
class _UnitResult:
    file_index: int
    samples: tuple[str, ...]
    genes: dict[str, tuple[list[GeneCall], np.ndarray]]
    rank: dict[str, np.ndarray]  # gene -> per sample: 3 data read, 2 reference-filled, 1 filled far from data
    position_warnings: dict
    sample_warnings: dict
    notices: list[str]


def _plan(paths: list[Path], kb: KnowledgeBase, genes: list[str], workers: int) -> list[_Unit]:
    units = []
    for fi, p in enumerate(paths):
        if workers > 1 and _has_index(p):
            by_chrom: dict[str, list[str]] = {}
            for g in genes:
                by_chrom.setdefault(kb.genes[g].chromosome, []).append(g)
            for chrom, gs in sorted(by_chrom.items()):
                units.append(_Unit(fi, p, gs, [chrom]))
        else:
            units.append(_Unit(fi, p, genes, None))
    return units


def _run_unit(unit: _Unit, kb: KnowledgeBase, options: CallOptions) -> _UnitResult:
    gs = read_genotypes(unit.path, kb, unit.genes, options.read_options(), regions=unit.regions,
                        with_sha256=False)
    caller = CohortCaller(options.match_options())
    # genes with no position in this file are "no data" for every sample: leave them to _assemble
    out = {g: caller.call(gg) for g, gg in gs.genes.items() if gg.status.any() or gg.extra}
    rank = {}
    for g in out:
        gg = gs.genes[g]
        filled = 1 if gg.remote_fill else 2
        rank[g] = np.where((gg.status == CALLED).any(axis=1), 3, np.where(gg.status.any(axis=1), filled, 0))
    return _UnitResult(unit.file_index, gs.samples, out, rank, gs.position_warnings, gs.sample_warnings,
                       gs.notices)


_WORKER_STATE: dict = {}


def _init_worker(kb: KnowledgeBase, options: CallOptions) -> None:
    _WORKER_STATE["kb"] = kb
    _WORKER_STATE["options"] = options


def _run_in_worker(unit: _Unit) -> _UnitResult:
    return _run_unit(unit, _WORKER_STATE["kb"], _WORKER_STATE["options"])


def call_files(paths: list[Path], kb: KnowledgeBase, options: CallOptions) -> CallSet:
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("no input files given")
    seen_paths = set()
    for p in paths:
        key = os.path.realpath(p)
        if key in seen_paths:
            raise UserError(f"{p}: given more than once")
        seen_paths.add(key)
    genes = selected_genes(kb, options)
    vcf_genes = [g for g in genes if g != CYP2D6 or options.cyp2d6_from_vcf]
    units = _plan(paths, kb, vcf_genes, max(1, options.workers))
    if options.workers > 1 and len(units) > 1:
        with ProcessPoolExecutor(max_workers=options.workers, initializer=_init_worker,
                                 initargs=(kb, options)) as pool:
            results = list(pool.map(_run_in_worker, units))
    else:
        results = [_run_unit(u, kb, options) for u in units]
    return _assemble(paths, kb, options, genes, vcf_genes, results)


def _assemble(paths, kb, options, genes, vcf_genes, results: list[_UnitResult]) -> CallSet:
    inputs: list[InputInfo] = []
    for fi, p in enumerate(paths):
        mine = [r for r in results if r.file_index == fi]
        notices: list[str] = []
        for r in mine:
            notices.extend(n for n in r.notices if n not in notices)
        inputs.append(InputInfo(file=p.name, sha256=file_sha256(p), samples=mine[0].samples, notices=notices))

    samples: list[str] = []
    sample_input: dict[str, list[int]] = {}
    for fi, info in enumerate(inputs):
        for s in info.samples:
            if s not in sample_input:
                samples.append(s)
                sample_input[s] = []
            sample_input[s].append(fi)

    calls: dict[str, dict[str, GeneCall]] = {s: {} for s in samples}
    source: dict[tuple[str, str], str] = {}
    best: dict[tuple[str, str], int] = {}
    vcf_warnings: dict[str, dict[str, list[str]]] = {s: {} for s in samples}
    for r in results:
        file = inputs[r.file_index].file
        for gene, (gcalls, inverse) in r.genes.items():
            ranks = r.rank[gene]
            for si, s in enumerate(r.samples):
                # data actually read beats reference filling near data, which beats filling far from it
                rank = int(ranks[si])
                prev_rank = best.get((s, gene), -1)
                if rank == 3 and prev_rank == 3:
                    raise UserError(
                        f"sample {s}: {gene} positions are present in both {source[(s, gene)]} and {file}; "
                        "give each sample's data for a gene in one file"
                    )
                if rank > prev_rank:
                    calls[s][gene] = gcalls[inverse[si]]
                    source[(s, gene)] = file
                    best[(s, gene)] = rank
        for s in r.samples:
            for key, msgs in r.position_warnings.items():
                lst = vcf_warnings[s].setdefault(key, [])
                lst.extend(m for m in msgs if m not in lst)
        for (si, key), msgs in r.sample_warnings.items():
            s = r.samples[si]
            lst = vcf_warnings[s].setdefault(key, [])
            lst.extend(m for m in msgs if m not in lst)

    not_called = GeneCall(gene=CYP2D6, status="not_called", source_diplotypes=["Unknown/Unknown"],
                          warnings=[CYP2D6_NOT_CALLED])
    no_data = {
        g: GeneCall(gene=g, status="no_data", source_diplotypes=["Unknown/Unknown"],
                    missing_positions=[loc.position for loc in kb.genes[g].loci])
        for g in vcf_genes
    }
    flagged: dict[int, GeneCall] = {}  # keep calls shared between samples after adding the warning
    for s in samples:
        if CYP2D6 in genes:
            if not options.cyp2d6_from_vcf:
                calls[s][CYP2D6] = not_called
            elif CYP2D6 in calls[s]:
                c = calls[s][CYP2D6]
                if id(c) not in flagged:
                    flagged[id(c)] = c.model_copy(update={"warnings": [*c.warnings, CYP2D6_VCF_WARNING]})
                calls[s][CYP2D6] = flagged[id(c)]
        calls[s] = {g: calls[s][g] if g in calls[s] else no_data[g] for g in genes}
    return CallSet(kb=kb, options=options, inputs=inputs, samples=samples, genes=genes, calls=calls,
                   sample_input=sample_input, gene_source=source, vcf_warnings=vcf_warnings)
