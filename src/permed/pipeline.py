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
from permed.genotypes.files import file_sha256, has_index
from permed.genotypes.model import CALLED
from permed.genotypes.vcf_reader import ReadOptions, VcfReader
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
    use_index: bool = True  # indexed files: read only windows around definition positions

    def match_options(self) -> MatchOptions:
        return MatchOptions(find_combinations=self.find_combinations, top_candidate_only=not self.all_matches)

    def read_options(self) -> ReadOptions:
        return ReadOptions(missing_to_ref=self.missing_to_ref, require_pass=self.require_pass,
                           find_combinations=self.find_combinations, use_index=self.use_index)

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
    position_warnings: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class CallSet:
    """Gene calls for every sample, stored as arrays: `choice[gene][i]` indexes `table` for sample i.

    Samples sharing a genotype pattern share one GeneCall object; a patient is a cohort of one.
    """

    kb: KnowledgeBase
    options: CallOptions
    inputs: list[InputInfo]
    samples: list[str]
    genes: list[str]
    table: list[GeneCall]
    choice: dict[str, np.ndarray]  # gene -> int32 per sample: index into table
    source: dict[str, np.ndarray]  # gene -> int16 per sample: index into inputs (-1: none)
    sample_files: list[list[int]]  # per sample: inputs it appears in
    sample_warnings: dict[int, dict[str, list[str]]]  # sample index -> "chr:pos" -> messages

    def call(self, si: int, gene: str) -> GeneCall:
        return self.table[self.choice[gene][si]]

    def gene_source(self, si: int, gene: str) -> str | None:
        fi = int(self.source[gene][si])
        return self.inputs[fi].file if fi >= 0 else None

    def sample_vcf_warnings(self, si: int) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for fi in self.sample_files[si]:
            for key, msgs in self.inputs[fi].position_warnings.items():
                lst = out.setdefault(key, [])
                lst.extend(m for m in msgs if m not in lst)
        for key, msgs in self.sample_warnings.get(si, {}).items():
            lst = out.setdefault(key, [])
            lst.extend(m for m in msgs if m not in lst)
        return out

    @property
    def calls(self) -> dict[str, dict[str, GeneCall]]:
        """sample -> gene -> call (a convenience view; index arrays are the storage)."""
        return {s: {g: self.table[self.choice[g][i]] for g in self.genes} for i, s in enumerate(self.samples)}

    @property
    def vcf_warnings(self) -> dict[str, dict[str, list[str]]]:
        return {s: self.sample_vcf_warnings(i) for i, s in enumerate(self.samples)}


def selected_genes(kb: KnowledgeBase, options: CallOptions) -> list[str]:
    genes = sorted(kb.genes)
    if options.genes:
        unknown = [g for g in options.genes if g not in kb.genes]
        if unknown:
            raise UserError(f"--genes: unknown gene(s) {', '.join(unknown)}; known: {', '.join(genes)}")
        genes = [g for g in genes if g in options.genes]
    return genes


@dataclass
class Unit:
    file_index: int
    path: Path
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


def plan_units(paths: list[Path], kb: KnowledgeBase, genes: list[str], workers: int,
               chunk_size: int | None = None, split_samples: int | None = None,
               file_samples: list[tuple[str, ...]] | None = None) -> list[Unit]:
    """Independent pieces of work: file x chromosome (indexed files, several workers) x sample slice
    (`split_samples` samples each, when given)."""
    units = []
    for fi, p in enumerate(paths):
        regions: list[list[str] | None] = [None]
        if workers > 1 and has_index(p):
            # one unit per chromosome that has records; a file without any keeps a single unit
            present = VcfReader(p, kb, genes).chromosomes_with_records() or []
            regions = [[c] for c in present] or [None]
        n = len(file_samples[fi]) if file_samples is not None else 0
        slices: list[tuple[int, int] | None] = [None]
        if split_samples and n > split_samples:
            slices = [(a, min(n, a + split_samples)) for a in range(0, n, split_samples)]
        for region in regions:
            gs = genes if region is None else [g for g in genes if kb.genes[g].chromosome == region[0]]
            for sl in slices:
                units.append(Unit(fi, p, gs, region, chunk_size, sl, (sl[1] - sl[0]) if sl else n))
    return units


def run_unit(unit: Unit, kb: KnowledgeBase, options: CallOptions, evidence: bool = True,
             on_chunk=None) -> UnitResult:
    """Call one unit; `on_chunk(k)` is told after each chunk of k samples (in-process progress)."""
    reader = VcfReader(unit.path, kb, unit.genes, options.read_options(), regions=unit.regions, with_sha256=False,
                       sample_range=unit.samples)
    caller = CohortCaller(options.match_options(), evidence=evidence)
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


class Assembly:
    """Choose, for every sample and gene, the call from the best source; vectorised over samples."""

    def __init__(self, paths: list[Path], kb: KnowledgeBase, options: CallOptions, genes: list[str],
                 vcf_genes: list[str], file_samples: list[tuple[str, ...]]):
        self.kb, self.options, self.genes, self.vcf_genes = kb, options, genes, vcf_genes
        self.paths = paths
        self.samples: list[str] = []
        index: dict[str, int] = {}
        self.sample_files: list[list[int]] = []
        self.file_index: list[np.ndarray] = []  # file -> global index of each of its samples
        for fi, names in enumerate(file_samples):
            idx = []
            for s in names:
                if s not in index:
                    index[s] = len(self.samples)
                    self.samples.append(s)
                    self.sample_files.append([])
                self.sample_files[index[s]].append(fi)
                idx.append(index[s])
            self.file_index.append(np.array(idx, dtype=np.int64))
        n = len(self.samples)
        self.table: list[GeneCall] = []
        self._by_content: dict[str, int] = {}
        self._by_id: dict[int, int] = {}  # valid while one unit's result (which holds the objects) is added
        self.choice = {g: np.full(n, -1, dtype=np.int32) for g in genes}
        self.rank = {g: np.full(n, -1, dtype=np.int8) for g in genes}
        self.source = {g: np.full(n, -1, dtype=np.int16) for g in genes}
        self.sample_warnings: dict[int, dict[str, list[str]]] = {}
        self.notices: dict[int, list[str]] = {}
        self.position_warnings: dict[int, dict[str, list[str]]] = {}

    def _intern(self, calls: list[GeneCall]) -> np.ndarray:
        """Table index of each call; equal calls from different chunks, units or workers share one
        entry (thousands of distinct genotype patterns come down to far fewer distinct calls)."""
        out = np.empty(len(calls), dtype=np.int32)
        for i, c in enumerate(calls):
            k = self._by_id.get(id(c))
            if k is None:
                key = c.model_dump_json()
                k = self._by_content.get(key)
                if k is None:
                    k = self._by_content[key] = len(self.table)
                    self.table.append(c)
                self._by_id[id(c)] = k
            out[i] = k
        return out

    def add(self, r: UnitResult) -> None:
        fi = r.file_index
        notices = self.notices.setdefault(fi, [])
        notices.extend(x for x in r.notices if x not in notices)
        pw = self.position_warnings.setdefault(fi, {})
        for key, msgs in r.position_warnings.items():
            lst = pw.setdefault(key, [])
            lst.extend(m for m in msgs if m not in lst)
        for ch in r.chunks:
            gidx = self.file_index[fi][ch.offset:ch.offset + ch.n]
            for (si, key), msgs in ch.sample_warnings.items():
                lst = self.sample_warnings.setdefault(int(gidx[si]), {}).setdefault(key, [])
                lst.extend(m for m in msgs if m not in lst)
            for gene, (calls, inverse, rank) in ch.genes.items():
                best = self.rank[gene][gidx]
                clash = (rank == 3) & (best == 3)
                if clash.any():
                    s = self.samples[int(gidx[np.flatnonzero(clash)[0]])]
                    other = self.paths[int(self.source[gene][gidx[np.flatnonzero(clash)[0]]])].name
                    raise UserError(f"sample {s}: {gene} positions are present in both {other} and "
                                    f"{self.paths[fi].name}; give each sample's data for a gene in one file")
                better = rank > best
                if better.any():
                    target = gidx[better]
                    self.choice[gene][target] = self._intern(calls)[inverse[better]]
                    self.rank[gene][target] = rank[better]
                    self.source[gene][target] = fi
        self._by_id.clear()

    def finish(self) -> CallSet:
        inputs = [InputInfo(file=p.name, sha256=file_sha256(p), samples=tuple(self.samples[i] for i in idx),
                            notices=self.notices.get(fi, []), position_warnings=self.position_warnings.get(fi, {}))
                  for fi, (p, idx) in enumerate(zip(self.paths, self.file_index))]
        for g in self.genes:
            missing = self.choice[g] < 0
            if g == CYP2D6 and not self.options.cyp2d6_from_vcf:
                missing[:] = True
                default = GeneCall(gene=CYP2D6, status="not_called", source_diplotypes=["Unknown/Unknown"],
                                   warnings=[CYP2D6_NOT_CALLED])
            else:
                default = GeneCall(gene=g, status="no_data", source_diplotypes=["Unknown/Unknown"],
                                   missing_positions=[loc.position for loc in self.kb.genes[g].loci])
            if missing.any():
                self.table.append(default)
                self.choice[g][missing] = len(self.table) - 1
                self.source[g][missing] = -1
            if g == CYP2D6 and self.options.cyp2d6_from_vcf:
                # every CYP2D6 call made from a VCF says what it cannot see
                flagged: dict[int, int] = {}
                for k in np.unique(self.choice[g]):
                    c = self.table[k]
                    self.table.append(c.model_copy(update={"warnings": [*c.warnings, CYP2D6_VCF_WARNING]}))
                    flagged[int(k)] = len(self.table) - 1
                self.choice[g] = np.vectorize(flagged.get, otypes=[np.int32])(self.choice[g])
        return CallSet(kb=self.kb, options=self.options, inputs=inputs, samples=self.samples, genes=self.genes,
                       table=self.table, choice=self.choice, source=self.source, sample_files=self.sample_files,
                       sample_warnings=self.sample_warnings)


_WORKER_STATE: dict = {}


def _init_worker(kb: KnowledgeBase, options: CallOptions, evidence: bool) -> None:
    _WORKER_STATE.update(kb=kb, options=options, evidence=evidence)


def _run_in_worker(unit: Unit) -> UnitResult:
    return run_unit(unit, _WORKER_STATE["kb"], _WORKER_STATE["options"], _WORKER_STATE["evidence"])


def check_inputs(paths: list[Path]) -> list[Path]:
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("no input files given")
    seen = set()
    for p in paths:
        key = os.path.realpath(p)
        if key in seen:
            raise UserError(f"{p}: given more than once")
        seen.add(key)
    return paths


def unit_cost(unit: Unit) -> float:
    """Rough work estimate for scheduling: bytes of input times the share of samples read."""
    try:
        size = unit.path.stat().st_size
    except OSError:
        size = 0
    return size * (unit.samples[1] - unit.samples[0] if unit.samples else 1.0)


def execute(units: list[Unit], kb: KnowledgeBase, options: CallOptions, evidence: bool = True,
            progress=None):
    """Run units on local worker processes; yield results in unit order (deterministic output).

    The largest units are started first so that one big file does not finish last on its own."""
    if options.workers > 1 and len(units) > 1:
        with ProcessPoolExecutor(max_workers=options.workers, initializer=_init_worker,
                                 initargs=(kb, options, evidence)) as pool:
            futures = {}
            for i in sorted(range(len(units)), key=lambda i: -unit_cost(units[i])):
                futures[i] = pool.submit(_run_in_worker, units[i])
                if progress:
                    futures[i].add_done_callback(lambda _f, k=units[i].n_samples: progress(advance=k))
            for i in range(len(units)):
                yield futures[i].result()
    else:
        for u in units:
            on_chunk = (lambda k: progress(advance=k)) if progress else None
            yield run_unit(u, kb, options, evidence, on_chunk)


def call_files(paths: list[Path], kb: KnowledgeBase, options: CallOptions, evidence: bool = True,
               chunk_size: int | None = None, runner=None, progress=None, split_samples: int | None = None,
               parallel_regions: bool = False) -> CallSet:
    """Call every gene for every sample of the input files.

    `progress(total=n)` is called once with the work to do (samples summed over units), then
    `progress(advance=k)` as units or their chunks finish.
    `parallel_regions` splits indexed files by chromosome even on one worker (a cluster runner)."""
    paths = check_inputs(paths)
    genes = selected_genes(kb, options)
    vcf_genes = [g for g in genes if g != CYP2D6 or options.cyp2d6_from_vcf]
    file_samples = [VcfReader(p, kb, vcf_genes, options.read_options()).sample_names() for p in paths]
    units = plan_units(paths, kb, vcf_genes, 2 if parallel_regions else max(1, options.workers), chunk_size,
                       split_samples, file_samples)
    if progress:
        progress(total=sum(u.n_samples for u in units))
    assembly = Assembly(paths, kb, options, genes, vcf_genes, file_samples)
    for r in (runner or execute)(units, kb, options, evidence, progress):
        assembly.add(r)
    return assembly.finish()


def empty_callset(kb: KnowledgeBase, sample: str, options: CallOptions | None = None) -> CallSet:
    """A cohort of one without VCF data: every gene comes from outside calls (or is not reported)."""
    return CallSet(kb=kb, options=options or CallOptions(), inputs=[], samples=[sample], genes=[], table=[],
                   choice={}, source={}, sample_files=[[]], sample_warnings={})
