"""Units of work: file x chromosome x sample slice, each read and matched on its own.

A unit runs anywhere (this process, a local worker process, a Dask worker) and returns the distinct
calls of each chunk of samples with, per sample, the index of its call; `assembly` puts units together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from permed.genotypes.imputed import reader_for
from permed.genotypes.model import CALLED
from permed.genotypes.vcf_reader import ReadOptions
from permed.kb.model import KnowledgeBase
from permed.matcher.gene_caller import MatchOptions
from permed.matcher.model import GeneCall
from permed.matcher.patterns import PatternCaller
from permed.options import Options


def read_options(options: Options) -> ReadOptions:
    return ReadOptions(missing_to_ref=options.missing_to_ref, require_pass=options.require_pass,
                       find_combinations=options.find_combinations, use_index=options.use_index,
                       build=options.build, min_gp=options.min_gp, min_info=options.min_info)


def match_options(options: Options) -> MatchOptions:
    return MatchOptions(find_combinations=options.find_combinations, top_candidate_only=not options.all_matches)


@dataclass
class Unit:
    file_index: int
    path: Path
    label: str  # how messages name the file
    genes: list[str]
    regions: list[str] | None
    chunk_size: int | None = None
    samples: tuple[int, int] | None = None  # [start, stop) of the file's samples; None: all
    n_samples: int = 0  # samples this unit calls (progress is measured in samples x units)


@dataclass
class ChunkResult:
    offset: int  # index of the chunk's first sample in its file
    n: int
    genes: dict[str, tuple[list[GeneCall], np.ndarray, np.ndarray]]  # gene -> (distinct calls, inverse, rank)
    sample_warnings: dict[tuple[int, str], list[str]]


@dataclass
class UnitResult:
    file_index: int
    samples: tuple[str, ...]
    chunks: list[ChunkResult]
    position_warnings: dict[str, list[str]]
    notices: list[str]


AUTO_SPLIT_SAMPLES = 20_000  # below this, a second pass over the file costs more than it saves


def plan_units(paths: list[Path], labels: list[str], kb: KnowledgeBase, genes: list[str], options: Options,
               file_samples: list[tuple[str, ...]]) -> list[Unit]:
    """Independent pieces of work: file x chromosome (indexed files, several workers) x sample slice
    (`options.split_samples` samples each, when given; else one per worker for a big file that has fewer
    record units than workers)."""
    units = []
    by_region = options.parallel_regions or options.workers > 1
    for fi, (p, label) in enumerate(zip(paths, labels)):
        regions: list[list[str] | None] = [None]
        if by_region:
            # one unit per chromosome that has records; a file without any keeps a single unit
            present = reader_for(p, kb, genes, read_options(options), label=label).chromosomes_with_records()
            regions = [[c] for c in present or []] or [None]
        n = len(file_samples[fi])
        slices: list[tuple[int, int] | None] = [None]
        if options.split_samples and n > options.split_samples:
            step = options.split_samples
            slices = [(a, min(n, a + step)) for a in range(0, n, step)]
        elif options.workers > 1 and len(regions) < options.workers and n >= AUTO_SPLIT_SAMPLES:
            # a big file that cannot be split by records (no index, one chromosome): one sample slice per
            # worker; each re-reads the records but decodes only its samples (measured: issue 16)
            step = -(-n // options.workers)
            slices = [(a, min(n, a + step)) for a in range(0, n, step)]
        for region in regions:
            gs = genes if region is None else [g for g in genes if kb.genes[g].chromosome == region[0]]
            for sl in slices:
                units.append(Unit(fi, p, label, gs, region, options.chunk_size, sl, (sl[1] - sl[0]) if sl else n))
    return units


def unit_cost(unit: Unit) -> float:
    """Rough work estimate for scheduling: bytes of input times the share of samples read."""
    try:
        size = unit.path.stat().st_size
    except OSError:
        size = 0
    return size * (unit.samples[1] - unit.samples[0] if unit.samples else 1.0)


def run_unit(unit: Unit, kb: KnowledgeBase, options: Options, on_chunk=None) -> UnitResult:
    """Read and match one unit; `on_chunk(k)` is told after each chunk of k samples (in-process progress)."""
    reader = reader_for(unit.path, kb, unit.genes, read_options(options), regions=unit.regions, with_sha256=False,
                        sample_range=unit.samples, label=unit.label)
    caller = PatternCaller(match_options(options), evidence=options.evidence)
    chunks = []
    samples: tuple[str, ...] = ()
    offset = unit.samples[0] if unit.samples else 0
    gs = None
    for gs in reader.chunks(unit.chunk_size):
        samples = samples + gs.samples
        out = {}
        for g, gg in gs.genes.items():
            if not (gg.status.any() or gg.extra):
                continue  # no position of this gene in this file: "no data", settled at assembly
            calls, inverse = caller.call(gg)
            filled = 1 if gg.remote_fill else 2
            # data actually read beats reference filling near data, which beats filling far from it
            rank = np.where((gg.status == CALLED).any(axis=1), 3, np.where(gg.status.any(axis=1), filled, 0))
            out[g] = (calls, inverse.astype(np.int32), rank.astype(np.int8))
        chunks.append(ChunkResult(offset, len(gs.samples), out, gs.sample_warnings))
        offset += len(gs.samples)
        if on_chunk:
            on_chunk(len(gs.samples))
    return UnitResult(unit.file_index, samples, chunks, gs.position_warnings if gs else {}, gs.notices if gs else [])
