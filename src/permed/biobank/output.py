"""A cohort's tables (calls, frequencies, samples) and its output directory: calls.parquet,
frequencies.parquet, summary.html (and samples.parquet with the population table when one was given)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from permed.biobank.frequencies import FrequencyCounts, frequency_table
from permed.biobank.populations import Grouping, Populations, overall
from permed.biobank.tables import CALLS_SCHEMA, DistinctRows, calls_batches, distinct_rows, file_metadata
from permed.engine.result import Result
from permed.report.calls_tsv import DATA_LICENCE
from permed.staging import StagedOutput

# fixed writer settings: the same cohort gives the same bytes
# (zstd level 1: the files come out the same size as at the default level, written in three quarters of the time)
_PARQUET = {"compression": "zstd", "compression_level": 1, "use_dictionary": True}
# min/max statistics where queries filter (DuckDB skips row groups by them); computing them for every text
# and list column cost a third of the writing time
_CALLS_STATISTICS = ["sample", "gene", "status", "phenotype", "match_score", "n_missing"]


class CohortTables:
    """A cohort run's tables as pyarrow Tables (`.to_polars()` when polars is installed)."""

    def __init__(self, result: Result, populations: Populations | None = None, block: int = 10_000,
                 row_cache: dict | None = None):
        self.result = result
        self.populations = populations
        self.block = block
        self.row_cache = row_cache  # rows of calls met in earlier blocks of a streamed run

    @cached_property
    def rows(self) -> DistinctRows:
        return distinct_rows(self.result, self.row_cache)

    @cached_property
    def metadata(self) -> dict[bytes, bytes]:
        extra = {"permed.populations": self.populations.source} if self.populations else {}
        return file_metadata(self.result, extra)

    @property
    def schema(self) -> pa.Schema:
        return CALLS_SCHEMA.with_metadata(self.metadata)

    def call_batches(self):
        """calls.parquet's rows, a block of samples at a time (sample-major, genes in report order)."""
        return calls_batches(self.result, self.rows, self.block)

    @cached_property
    def calls(self) -> pa.Table:
        """One row per sample x gene (as calls.tsv); `call_batches()` streams the same rows."""
        return pa.Table.from_batches(list(self.call_batches()), schema=self.schema)

    @cached_property
    def samples(self) -> pa.Table | None:
        """sample -> population groups (None without a population table)."""
        if not self.populations:
            return None
        samples = self.result.samples
        return pa.table({"sample": pa.array(samples, pa.string()), **{
            level: pa.array([self.populations.table.get(s, {}).get(level) for s in samples], pa.string())
            for level in self.populations.levels}}).replace_schema_metadata(self.metadata)

    @cached_property
    def frequencies(self) -> pa.Table:
        """Allele, diplotype and phenotype counts per gene, overall and per population group."""
        freq = frequency_table(self.result.phenotypes.genes, self.rows, self.groupings)
        return freq.replace_schema_metadata(self.metadata)

    @property
    def groupings(self) -> list[Grouping]:
        samples = self.result.samples
        return [overall(samples)] + (self.populations.groupings(samples) if self.populations else [])

    def to_polars(self) -> dict:
        """The tables as polars DataFrames (needs the polars package)."""
        import polars as pl

        out = {"calls": pl.from_arrow(self.calls), "frequencies": pl.from_arrow(self.frequencies)}
        if self.samples is not None:
            out["samples"] = pl.from_arrow(self.samples)
        return out

    def write(self, out_dir: Path) -> list[Path]:
        return write_cohort(self, Path(out_dir))


def write_cohort(tables: CohortTables, out_dir: Path) -> list[Path]:
    return write_cohort_blocks([tables.result], Path(out_dir), tables.populations, tables.block).paths


class RowGroups:
    """calls.parquet's row groups: `rows` rows each, whatever blocks the rows arrived in, each with its own
    sorted dictionaries; so the file's bytes do not depend on workers, blocks or chunk sizes."""

    def __init__(self, schema: pa.Schema, rows: int):
        self.schema, self.rows = schema, max(1, rows)
        self.pending: list[pa.RecordBatch] = []
        self.count = 0

    def add(self, batch: pa.RecordBatch):
        while batch.num_rows:
            take = min(batch.num_rows, self.rows - self.count)
            self.pending.append(batch.slice(0, take))
            self.count += take
            batch = batch.slice(take)
            if self.count == self.rows:
                yield self._group()

    def finish(self):
        if self.count:
            yield self._group()

    def _group(self) -> pa.Table:
        table = pa.Table.from_batches(self.pending, schema=self.schema).combine_chunks()
        self.pending, self.count = [], 0
        return pa.table([canonical_dictionary(c.chunk(0)) if c.num_chunks else c for c in table.columns],
                        schema=self.schema)


def canonical_dictionary(column: pa.Array) -> pa.Array:
    """A dictionary column re-encoded over the values it uses, sorted (other columns unchanged)."""
    if not pa.types.is_dictionary(column.type):
        return column
    indices = column.indices.to_numpy(zero_copy_only=False)
    used = np.flatnonzero(np.bincount(indices, minlength=len(column.dictionary)))
    values = column.dictionary.take(pa.array(used))
    order = np.asarray(pc.sort_indices(values))
    remap = np.empty(len(column.dictionary), dtype=np.int32)
    remap[used[order]] = np.arange(len(used), dtype=np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(remap[indices]), values.take(pa.array(order)))


class OrderedWrites:
    """Blocks' rows arranged, encoded and written by one thread, in the order given: pyarrow does that work
    without holding the GIL, so the next block is assembled meanwhile (with a single worker, on the core it
    leaves idle). At most `depth` blocks wait; a failed write is raised by the next `add` or by `finish`."""

    def __init__(self, depth: int = 2):
        self.depth = depth
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="permed-parquet")
        self.pending: deque = deque()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        # on an error, queued writes are dropped (the staged output is removed); the running one ends first
        self.pool.shutdown(wait=True, cancel_futures=exc[0] is not None)

    def add(self, write, *args) -> None:
        while len(self.pending) >= self.depth:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(write, *args))

    def finish(self) -> None:
        while self.pending:
            self.pending.popleft().result()


def _write_calls(writer: pq.ParquetWriter, groups: RowGroups, tables: CohortTables | None) -> None:
    """A block's calls.parquet rows into row groups (None: the last, partial group)."""
    for group in groups.finish() if tables is None else (g for b in tables.call_batches() for g in groups.add(b)):
        writer.write_table(group, row_group_size=group.num_rows or 1)


@dataclass
class CohortWritten:
    paths: list[Path]
    n_samples: int
    genes: list[str]
    outside_warnings: list[str]  # each once, in the order the blocks met them
    unassigned: int  # samples without a population group


def write_cohort_blocks(results: Iterable[Result], out_dir: Path, populations: Populations | None = None,
                        block: int = 10_000) -> CohortWritten:
    """Write a cohort's files from its Results, one block of samples at a time (`Engine.stream`): rows go to
    calls.parquet (and samples.parquet) as each block arrives, in row groups of `block` samples; frequencies
    are counted per block and summed, so no step needs the whole cohort in memory."""
    from permed.biobank.summary import render_summary, summary_context

    counts = FrequencyCounts()
    n = unassigned = 0
    warnings: dict[str, None] = {}
    first: CohortTables | None = None
    with StagedOutput(Path(out_dir)) as out, ExitStack() as writers:
        calls_w = samples_w = None
        # closed before the Parquet writers it uses (an ExitStack closes in reverse order)
        queue = OrderedWrites()
        row_cache: dict = {}
        for result in results:
            if len(row_cache) > 100_000:
                row_cache.clear()
            tables = CohortTables(result, populations, block, row_cache)
            if first is None:
                first = tables
                groups = RowGroups(tables.schema, block * len(result.phenotypes.genes))
                calls_w = writers.enter_context(pq.ParquetWriter(out.path("calls.parquet"), tables.schema,
                                                                 **_PARQUET, write_statistics=_CALLS_STATISTICS))
                if tables.samples is not None:
                    sample_groups = RowGroups(tables.samples.schema, block)
                    samples_w = writers.enter_context(pq.ParquetWriter(
                        out.path("samples.parquet"), tables.samples.schema, **_PARQUET, write_statistics=True))
                writers.enter_context(queue)
            # counted first: that makes `tables.rows` here, before the writer thread reads them
            counts.add(result.phenotypes.genes, tables.rows, tables.groupings)
            queue.add(_write_calls, calls_w, groups, tables)
            if samples_w is not None:
                for batch in tables.samples.to_batches():
                    for group in sample_groups.add(batch):
                        samples_w.write_table(group)
            n += len(result.samples)
            unassigned += populations.unassigned(result.samples) if populations else 0
            warnings.update(dict.fromkeys(result.phenotypes.outside_warnings))
        if first is None:
            raise ValueError("no results to write")
        queue.add(_write_calls, calls_w, groups, None)
        queue.finish()
        for group in sample_groups.finish() if samples_w is not None else ():
            samples_w.write_table(group)
        writers.close()
        result = first.result
        freq = counts.table().replace_schema_metadata(first.metadata)
        pq.write_table(freq, out.path("frequencies.parquet"), **_PARQUET, write_statistics=True)
        info = {"kb_version": result.kb.kb_version, "licence": DATA_LICENCE,
                "inputs": ", ".join(i.file for i in result.calls.inputs)}
        html = render_summary(summary_context(freq, n, result.phenotypes.genes, info))
        out.path("summary.html").write_text(html, encoding="utf-8")
        final = out.commit()
        stale = Path(out_dir) / "samples.parquet"
        if populations is None and stale.exists():
            stale.unlink()  # a population table from an earlier run would mislead queries
        return CohortWritten(final, n, list(result.phenotypes.genes), list(warnings), unassigned)
