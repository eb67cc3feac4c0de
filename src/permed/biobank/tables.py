"""calls.parquet: one row per sample x gene, the same facts as calls.tsv, typed.

Rows are built once per distinct (gene call, gene report) pair and spread to samples with `take`,
so the cost grows with the number of distinct calls, not with samples x genes in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from permed.report.calls_tsv import DATA_LICENCE, call_row

if TYPE_CHECKING:
    from permed.engine.result import Result

_TEXT = pa.dictionary(pa.int32(), pa.string())  # few distinct values per column: store each once

CALLS_SCHEMA = pa.schema([
    ("sample", _TEXT),
    ("gene", _TEXT),
    ("status", _TEXT),
    ("diplotype", _TEXT),  # labels joined with " OR " (calls.tsv "Source Diplotype")
    ("source_diplotypes", pa.list_(pa.string())),
    ("phenotype", _TEXT),
    ("activity_score", _TEXT),
    ("match_score", pa.int32()),
    ("missing_positions", _TEXT),  # ";"-joined as in calls.tsv (often hundreds of positions)
    ("n_missing", pa.int32()),
    ("phased", pa.bool_()),
    ("haplotype_1", _TEXT),
    ("haplotype_2", _TEXT),
    ("flags", pa.list_(pa.string())),
    ("outside_call", pa.bool_()),
    ("recommendation_diplotype", _TEXT),
    ("lookup_keys", _TEXT),
    ("input_file", _TEXT),
])


@dataclass
class DistinctRows:
    """Distinct rows of the calls table plus, per gene, each sample's row index."""

    table: pa.Table  # all columns except sample and gene
    keys: dict[str, np.ndarray]  # gene -> int64 per sample: row of `table`


def distinct_rows(result: Result, cache: dict | None = None) -> DistinctRows:
    """`cache`: (id(call), id(report)) -> (call, report, row), kept by a caller writing blocks whose calls and
    reports are shared objects (a streamed run)."""
    callset, pset = result.calls, result.phenotypes
    called = set(callset.genes)
    n = len(callset.samples)
    rows: list = []
    files: list[str] = []
    index: dict[tuple, int] = {}
    keys: dict[str, np.ndarray] = {}
    for gene in pset.genes:
        rep = pset.choice[gene].astype(np.int64)
        if gene in called:
            call_idx = callset.choice[gene].astype(np.int64)
            src = callset.source[gene].astype(np.int64)
        else:
            call_idx = np.full(n, -1, dtype=np.int64)
            src = np.full(n, -1, dtype=np.int64)
        uniq, inverse = _distinct_triples(call_idx, rep, src)
        local = np.empty(len(uniq), dtype=np.int64)
        for j, (ci, ri, fi) in enumerate(uniq.tolist()):
            key = (ci, ri, fi)
            k = index.get(key)
            if k is None:
                call = callset.table[ci] if ci >= 0 else None
                report = pset.reports[ri]
                k = index[key] = len(rows)
                hit = cache.get((id(call), id(report))) if cache is not None else None
                if hit is None or hit[0] is not call or hit[1] is not report:  # held: ids are not reused
                    hit = (call, report, call_row(call, report))
                    if cache is not None:
                        cache[(id(call), id(report))] = hit
                rows.append(hit[2])
                files.append(callset.inputs[fi].file if fi >= 0 else "")
            local[j] = k
        keys[gene] = local[inverse.reshape(-1)]
    table = pa.table({
        "status": pa.array([r.status for r in rows], pa.string()),
        "diplotype": pa.array([r.diplotype for r in rows], pa.string()),
        "source_diplotypes": pa.array([list(r.source_diplotypes) for r in rows], pa.list_(pa.string())),
        "phenotype": pa.array([r.phenotype for r in rows], pa.string()),
        "activity_score": pa.array([r.activity_score for r in rows], pa.string()),
        "match_score": pa.array([r.match_score for r in rows], pa.int32()),
        "missing_positions": pa.array([";".join(map(str, r.missing_positions)) for r in rows], pa.string()),
        "n_missing": pa.array([len(r.missing_positions) for r in rows], pa.int32()),
        "phased": pa.array([r.phased for r in rows], pa.bool_()),
        "haplotype_1": pa.array([r.haplotype_1 for r in rows], pa.string()),
        "haplotype_2": pa.array([r.haplotype_2 for r in rows], pa.string()),
        "flags": pa.array([list(r.flags) for r in rows], pa.list_(pa.string())),
        "outside_call": pa.array([r.outside_call for r in rows], pa.bool_()),
        "recommendation_diplotype": pa.array([r.recommendation_diplotype for r in rows], pa.string()),
        "lookup_keys": pa.array([r.lookup_keys for r in rows], pa.string()),
        "input_file": pa.array(files, pa.string()),
    })
    return DistinctRows(table, keys)


def _distinct_triples(call_idx: np.ndarray, rep: np.ndarray, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct (call, report, source file) rows, index of each sample's row). Usually a call fixes its
    report and file (outside calls aside): then the rows are found by counting call indices, with no sort."""
    if len(call_idx) and call_idx.min() >= -1 and call_idx.max() < 16 * len(call_idx) + 65_536:
        shifted = call_idx + 1
        present = np.bincount(shifted) > 0
        first = np.full(len(present), -1, dtype=np.int64)
        first[shifted] = np.arange(len(shifted))  # a sample of each call (which one does not matter: checked)
        used = np.flatnonzero(present)
        at = first[used]
        if (rep == rep[first[shifted]]).all() and (src == src[first[shifted]]).all():
            rank = np.cumsum(present) - 1
            return np.stack([used - 1, rep[at], src[at]], axis=1), rank[shifted]
    # one row per distinct triple, found as one int64 per sample (a 1-D unique is far cheaper than unique rows)
    nr, nf = int(rep.max()) + 2, int(src.max()) + 2
    packed = ((call_idx + 1) * nr + (rep + 1)) * nf + (src + 1)
    uniq_packed, inverse = np.unique(packed, return_inverse=True)
    uniq = np.stack([uniq_packed // (nr * nf) - 1, uniq_packed // nf % nr - 1, uniq_packed % nf - 1], axis=1)
    return uniq, inverse.reshape(-1)


def _dictionary(values: list[str]) -> tuple[pa.Array, np.ndarray]:
    """(sorted distinct values, code of each input value)."""
    uniq = sorted(set(values))
    index = {v: i for i, v in enumerate(uniq)}
    return pa.array(uniq, pa.string()), np.array([index[v] for v in values], dtype=np.int32)


def calls_batches(result: Result, rows: DistinctRows, block: int = 10_000):
    """calls.parquet content as record batches of `block` samples (sample-major, genes in report order).

    Text columns are dictionary arrays over the distinct rows, so a batch costs a few integers per
    row whatever the text (missing-position lists can be long)."""
    callset, genes = result.calls, result.phenotypes.genes
    n, g = len(callset.samples), len(genes)
    key_matrix = np.stack([rows.keys[x] for x in genes], axis=1) if genes else np.zeros((n, 0), np.int64)
    dicts = {}
    for name in CALLS_SCHEMA.names[2:]:
        if CALLS_SCHEMA.field(name).type == _TEXT:
            dicts[name] = _dictionary(rows.table.column(name).to_pylist())
    gene_dict = pa.array(genes, pa.string())
    for start in range(0, n, block):
        stop = min(n, start + block)
        keys = key_matrix[start:stop].reshape(-1)
        cols = {
            # each row group's dictionary holds its own samples only (not the whole cohort's names again)
            "sample": pa.DictionaryArray.from_arrays(
                pa.array(np.repeat(np.arange(stop - start, dtype=np.int32), g)),
                pa.array(callset.samples[start:stop], pa.string())),
            "gene": pa.DictionaryArray.from_arrays(pa.array(np.tile(np.arange(g, dtype=np.int32), stop - start)),
                                                   gene_dict),
        }
        take = pa.array(keys)
        for name in CALLS_SCHEMA.names[2:]:
            if name in dicts:
                values, codes = dicts[name]
                cols[name] = pa.DictionaryArray.from_arrays(pa.array(codes[keys]), values)
            else:
                cols[name] = rows.table.column(name).combine_chunks().take(take)
        yield pa.RecordBatch.from_pydict(cols, schema=CALLS_SCHEMA)


def file_metadata(result: Result, extra: dict[str, str] | None = None) -> dict[bytes, bytes]:
    """Provenance stored in every Parquet file's key-value metadata."""
    kb, callset = result.kb, result.calls
    meta = {
        "permed.schema": "permed.cohort/1",
        "permed.kb_version": kb.kb_version,
        "permed.kb_sha256": kb.sha256,
        "permed.data_licence": DATA_LICENCE,
        "permed.inputs": "; ".join(f"{i.file} sha256:{i.sha256}" for i in callset.inputs),
        **(extra or {}),
    }
    return {k.encode(): v.encode() for k, v in meta.items()}
