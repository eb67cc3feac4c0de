"""Write a cohort's outputs into OUT atomically: calls.parquet, frequencies.parquet, summary.html
(and samples.parquet with the population table when one was given)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from permed.cohort.frequencies import frequency_table
from permed.cohort.populations import Populations, overall
from permed.cohort.summary import render_summary, summary_context
from permed.cohort.tables import CALLS_SCHEMA, calls_batches, distinct_rows, file_metadata
from permed.errors import UserError
from permed.phenotype.phenotype_set import PhenotypeSet
from permed.pipeline import CallSet
from permed.report.calls_tsv import DATA_LICENCE

# fixed writer settings: the same cohort gives the same bytes
_PARQUET = {"compression": "zstd", "use_dictionary": True, "write_statistics": True}


def write_cohort(callset: CallSet, pset: PhenotypeSet, out_dir: Path,
                 populations: Populations | None = None, block: int = 10_000) -> list[Path]:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".permed-", dir=out_dir))
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot write output ({exc.strerror})") from None
    try:
        written = []
        extra = {"permed.populations": populations.source} if populations else {}
        meta = file_metadata(callset, extra)
        rows = distinct_rows(callset, pset)
        schema = CALLS_SCHEMA.with_metadata(meta)
        with pq.ParquetWriter(tmp / "calls.parquet", schema, **_PARQUET) as w:
            for batch in calls_batches(callset, pset, rows, block):
                w.write_table(pa.Table.from_batches([batch], schema=schema), row_group_size=len(batch) or 1)
        written.append("calls.parquet")
        groupings = [overall(callset.samples)]
        if populations:
            groupings += populations.groupings(callset.samples)
            table = pa.table({"sample": callset.samples, **{
                level: [populations.table.get(s, {}).get(level) for s in callset.samples]
                for level in populations.levels}})
            pq.write_table(table.replace_schema_metadata(meta), tmp / "samples.parquet", **_PARQUET)
            written.append("samples.parquet")
        freq = frequency_table(pset.genes, rows, groupings)
        pq.write_table(freq.replace_schema_metadata(meta), tmp / "frequencies.parquet", **_PARQUET)
        written.append("frequencies.parquet")
        info = {"kb_version": callset.kb.kb_version, "licence": DATA_LICENCE,
                "inputs": ", ".join(i.file for i in callset.inputs)}
        html = render_summary(summary_context(freq, len(callset.samples), pset.genes, info))
        (tmp / "summary.html").write_text(html, encoding="utf-8")
        written.append("summary.html")
        final = []
        for fn in written:
            os.replace(tmp / fn, out_dir / fn)
            final.append(out_dir / fn)
        if not populations and (out_dir / "samples.parquet").exists():
            (out_dir / "samples.parquet").unlink()  # a stale population table would mislead queries
        return final
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot write output ({exc.strerror})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
