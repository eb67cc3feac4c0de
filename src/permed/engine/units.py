"""Units of work: file x chromosome x sample slice, each read and matched on its own.

A unit runs anywhere (this process, a local worker process, a Dask worker) and returns the distinct
calls of each chunk of samples with, per sample, the index of its call; `assembly` puts units together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from permed.engine.allocator import unit_allocation
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
                       build=options.build, min_gp=options.min_gp, min_info=options.min_info,
                       sample_warnings=options.sample_warnings)


def match_options(options: Options) -> MatchOptions:
    return MatchOptions(find_combinations=options.find_combinations, top_candidate_only=not options.all_matches)


# samples of a file as [start, stop) ranges in header order, ascending
SampleRanges = tuple[tuple[int, int], ...]


def range_count(ranges: SampleRanges) -> int:
    return sum(b - a for a, b in ranges)


@dataclass
class Unit:
    file_index: int
    path: Path
    label: str  # how messages name the file
    genes: list[str]
    regions: list[str] | None
    chunk_size: int | None = None
    samples: SampleRanges | None = None  # the file's samples this unit reads; None: all
    n_samples: int = 0  # samples this unit calls (progress is measured in samples x units)


@dataclass
class ChunkResult:
    offset: int  # index of the chunk's first sample in its file
    n: int
    # gene -> (distinct calls, inverse, rank); calls as JSON text once `UnitResult.portable()` ran
    genes: dict[str, tuple[list[GeneCall | str], np.ndarray, np.ndarray]]
    sample_warnings: dict[tuple[int, str], list[str]]


@dataclass
class UnitResult:
    file_index: int
    samples: tuple[str, ...]
    chunks: list[ChunkResult]
    position_warnings: dict[str, list[str]]
    notices: list[str]

    def portable(self) -> UnitResult:
        """The same result with its distinct calls as JSON text, for sending to another process: cheaper to
        pickle than the models, and the receiving Assembly keys calls by that text anyway (it re-creates only
        calls it has not met: measured, unpickling the models cost the main process ~0.8 s at 100,000 samples)."""
        memo: dict[int, str] = {}

        def text(c: GeneCall) -> str:
            t = memo.get(id(c))
            if t is None:
                t = memo[id(c)] = c.model_dump_json()
            return t

        for ch in self.chunks:
            ch.genes = {g: ([text(c) for c in calls], inv, rank) for g, (calls, inv, rank) in ch.genes.items()}
        return self


AUTO_SPLIT_SAMPLES = 20_000  # below this, a second pass over the file costs more than it saves
# samples a streamed cohort run assembles, interprets and writes at once (measured at 100,000-500,000 samples:
# 20,000 beat 50,000 and 100,000 - more overlap with the workers, less memory)
MAX_BLOCK = 20_000


def sample_slices(n: int, options: Options, n_regions: int = 1) -> list[SampleRanges | None]:
    """How a file of `n` samples is cut into sample slices: `options.split_samples` each when given; else
    one per worker for a big file that has fewer record units than workers; else the whole file."""
    step = None
    if options.split_samples and n > options.split_samples:
        step = options.split_samples
    elif options.workers > 1 and n_regions < options.workers and n >= AUTO_SPLIT_SAMPLES:
        # a big file that cannot be split by records (no index, one chromosome): one sample slice per
        # worker; each re-reads the records but decodes only its samples (measured: issue 16)
        step = -(-n // options.workers)
    return [((a, min(n, a + step)),) for a in range(0, n, step)] if step else [None]


def interleaved_slices(n: int, workers: int, chunk: int) -> list[SampleRanges]:
    """One sample set per worker made of every `workers`-th run of `chunk` samples: the workers then finish
    chunks in the file's sample order, together, so a streamed run writes blocks as they come instead of
    holding a later slice's chunks until an earlier slice is done (measured: issue 16)."""
    runs = [(a, min(n, a + chunk)) for a in range(0, n, chunk)]
    return [tuple(runs[w::workers]) for w in range(min(workers, len(runs)))]


def file_regions(path: Path, label: str, kb: KnowledgeBase, genes: list[str], options: Options
                 ) -> list[list[str] | None]:
    """One region per chromosome that has records (indexed files, when splitting by records pays);
    a file without any keeps a single unit."""
    if not (options.parallel_regions or options.workers > 1):
        return [None]
    present = reader_for(path, kb, genes, read_options(options), label=label).chromosomes_with_records()
    return [[c] for c in present or []] or [None]


def plan_units(paths: list[Path], labels: list[str], kb: KnowledgeBase, genes: list[str], options: Options,
               file_samples: list[tuple[str, ...]], slices: list[SampleRanges] | None = None,
               regions: list[list[list[str] | None]] | None = None) -> list[Unit]:
    """Independent pieces of work: file x chromosome (indexed files, several workers) x sample slice.

    `regions`: each file's `file_regions`, when already known. With `slices` (files sharing one sample
    list), every file is cut into those sample slices, and units come slice by slice."""
    if regions is None:
        regions = [file_regions(p, label, kb, genes, options) for p, label in zip(paths, labels)]
    if slices is not None:
        work = [(fi, sl) for sl in slices for fi in range(len(paths))]
    else:
        work = [(fi, sl) for fi in range(len(paths))
                for sl in sample_slices(len(file_samples[fi]), options, len(regions[fi]))]
    units = []
    for fi, sl in work:
        n = len(file_samples[fi])
        sl = None if sl == ((0, n),) else sl
        for region in regions[fi]:
            gs = genes if region is None else [g for g in genes if kb.genes[g].chromosome == region[0]]
            units.append(Unit(fi, paths[fi], labels[fi], gs, region, options.chunk_size, sl,
                              range_count(sl) if sl else n))
    return units


def unit_cost(unit: Unit) -> float:
    """Rough work estimate for scheduling: bytes of input times the share of samples read."""
    try:
        size = unit.path.stat().st_size
    except OSError:
        size = 0
    return size * (range_count(unit.samples) if unit.samples else 1.0)


def run_unit(unit: Unit, kb: KnowledgeBase, options: Options, on_chunk=None) -> UnitResult:
    """Read and match one unit; `on_chunk(k)` is told after each chunk of k samples (in-process progress)."""
    chunks: list[ChunkResult] = []
    samples: list[str] = []
    last = None
    for last in iter_unit(unit, kb, options):
        chunks.extend(last.chunks)
        samples.extend(last.samples)
        if on_chunk:
            on_chunk(last.chunks[0].n)
    return UnitResult(unit.file_index, tuple(samples), chunks, last.position_warnings if last else {},
                      last.notices if last else [])


def iter_unit(unit: Unit, kb: KnowledgeBase, options: Options):
    """Read and match one unit a chunk at a time: a UnitResult per chunk of samples, each with the file's
    position warnings and notices known so far (complete with the last chunk)."""
    with unit_allocation():  # (Dask workers: large arrays from the heap while the unit runs)
        reader = reader_for(unit.path, kb, unit.genes, read_options(options), regions=unit.regions,
                            with_sha256=False, sample_ranges=unit.samples, label=unit.label)
        caller = PatternCaller(match_options(options), evidence=options.evidence)
        ranges = list(unit.samples or ())
        local = 0  # the next chunk's first sample among the unit's samples
        for gs in reader.chunks(unit.chunk_size):
            offset = _file_offset(ranges, local, len(gs.samples)) if ranges else local
            local += len(gs.samples)
            out = {}
            for g, gg in gs.genes.items():
                if not (gg.status.any() or gg.extra):
                    continue  # no position of this gene in this file: "no data", settled at assembly
                calls, inverse = caller.call(gg)
                filled = 1 if gg.remote_fill else 2
                # data actually read beats reference filling near data, which beats filling far from it
                rank = np.where((gg.status == CALLED).any(axis=1), 3, np.where(gg.status.any(axis=1), filled, 0))
                out[g] = (calls, inverse.astype(np.int32), rank.astype(np.int8))
            chunk = ChunkResult(offset, len(gs.samples), out, gs.sample_warnings)
            yield UnitResult(unit.file_index, gs.samples, [chunk], dict(gs.position_warnings), list(gs.notices))


def _file_offset(ranges: list[tuple[int, int]], local: int, n: int) -> int:
    """The file index of the unit's `local`-th sample; the chunk of `n` samples from there lies in one range
    (plans cut ranges at chunk boundaries)."""
    for a, b in ranges:
        if local < b - a:
            if local + n > b - a:
                raise RuntimeError("a chunk spans two sample ranges")  # the plan makes ranges of whole chunks
            return a + local
        local -= b - a
    raise RuntimeError("chunk beyond the unit's samples")
