"""A cohort's tables (calls, frequencies, samples) and its output directory: calls.parquet,
frequencies.parquet, summary.html (and samples.parquet with the population table when one was given)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from permed.biobank.frequencies import frequency_table
from permed.biobank.populations import Populations, overall
from permed.biobank.tables import CALLS_SCHEMA, DistinctRows, calls_batches, distinct_rows, file_metadata
from permed.engine.result import Result
from permed.report.calls_tsv import DATA_LICENCE
from permed.staging import StagedOutput

# fixed writer settings: the same cohort gives the same bytes
_PARQUET = {"compression": "zstd", "use_dictionary": True, "write_statistics": True}


class CohortTables:
    """A cohort run's tables as pyarrow Tables (`.to_polars()` when polars is installed)."""

    def __init__(self, result: Result, populations: Populations | None = None, block: int = 10_000):
        self.result = result
        self.populations = populations
        self.block = block

    @cached_property
    def rows(self) -> DistinctRows:
        return distinct_rows(self.result)

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
        return pa.table({"sample": samples, **{
            level: [self.populations.table.get(s, {}).get(level) for s in samples]
            for level in self.populations.levels}}).replace_schema_metadata(self.metadata)

    @cached_property
    def frequencies(self) -> pa.Table:
        """Allele, diplotype and phenotype counts per gene, overall and per population group."""
        samples = self.result.samples
        groupings = [overall(samples)] + (self.populations.groupings(samples) if self.populations else [])
        freq = frequency_table(self.result.phenotypes.genes, self.rows, groupings)
        return freq.replace_schema_metadata(self.metadata)

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
    from permed.biobank.summary import render_summary, summary_context

    result = tables.result
    with StagedOutput(out_dir) as out:
        schema = tables.schema
        with pq.ParquetWriter(out.path("calls.parquet"), schema, **_PARQUET) as w:
            for batch in tables.call_batches():
                w.write_table(pa.Table.from_batches([batch], schema=schema), row_group_size=len(batch) or 1)
        if tables.samples is not None:
            pq.write_table(tables.samples, out.path("samples.parquet"), **_PARQUET)
        freq = tables.frequencies
        pq.write_table(freq, out.path("frequencies.parquet"), **_PARQUET)
        info = {"kb_version": result.kb.kb_version, "licence": DATA_LICENCE,
                "inputs": ", ".join(i.file for i in result.calls.inputs)}
        html = render_summary(summary_context(freq, len(result.samples), result.phenotypes.genes, info))
        out.path("summary.html").write_text(html, encoding="utf-8")
        final = out.commit()
        stale = Path(out_dir) / "samples.parquet"
        if tables.samples is None and stale.exists():
            stale.unlink()  # a population table from an earlier run would mislead queries
        return final
