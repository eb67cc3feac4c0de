"""Write a cohort's outputs into OUT atomically: calls.parquet, frequencies.parquet, summary.html
(and samples.parquet with the population table when one was given)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from permed.cohort.frequencies import frequency_table
from permed.cohort.populations import Populations, overall
from permed.cohort.summary import render_summary, summary_context
from permed.cohort.tables import CALLS_SCHEMA, calls_batches, distinct_rows, file_metadata
from permed.phenotype.phenotype_set import PhenotypeSet
from permed.pipeline import CallSet
from permed.report.calls_tsv import DATA_LICENCE
from permed.staging import StagedOutput

# fixed writer settings: the same cohort gives the same bytes
_PARQUET = {"compression": "zstd", "use_dictionary": True, "write_statistics": True}


def write_cohort(callset: CallSet, pset: PhenotypeSet, out_dir: Path,
                 populations: Populations | None = None, block: int = 10_000) -> list[Path]:
    with StagedOutput(out_dir) as out:
        extra = {"permed.populations": populations.source} if populations else {}
        meta = file_metadata(callset, extra)
        rows = distinct_rows(callset, pset)
        schema = CALLS_SCHEMA.with_metadata(meta)
        with pq.ParquetWriter(out.path("calls.parquet"), schema, **_PARQUET) as w:
            for batch in calls_batches(callset, pset, rows, block):
                w.write_table(pa.Table.from_batches([batch], schema=schema), row_group_size=len(batch) or 1)
        groupings = [overall(callset.samples)]
        if populations:
            groupings += populations.groupings(callset.samples)
            table = pa.table({"sample": callset.samples, **{
                level: [populations.table.get(s, {}).get(level) for s in callset.samples]
                for level in populations.levels}})
            pq.write_table(table.replace_schema_metadata(meta), out.path("samples.parquet"), **_PARQUET)
        freq = frequency_table(pset.genes, rows, groupings)
        pq.write_table(freq.replace_schema_metadata(meta), out.path("frequencies.parquet"), **_PARQUET)
        info = {"kb_version": callset.kb.kb_version, "licence": DATA_LICENCE,
                "inputs": ", ".join(i.file for i in callset.inputs)}
        html = render_summary(summary_context(freq, len(callset.samples), pset.genes, info))
        out.path("summary.html").write_text(html, encoding="utf-8")
        final = out.commit()
        stale = Path(out_dir) / "samples.parquet"
        if not populations and stale.exists():
            stale.unlink()  # a population table from an earlier run would mislead queries
        return final
