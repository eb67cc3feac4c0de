"""frequencies.parquet: allele, diplotype and phenotype counts per gene, overall and per group.

Counting is one `np.bincount` per gene, kind and grouping over integer codes; Python only touches
distinct values. Samples whose value is not determined (no data, ambiguous, uncallable...) are
counted under a bracketed value such as "(ambiguous)"; they and uninformative phenotypes
("Indeterminate", "n/a") are left out of `frequency`'s denominator.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from permed.biobank.populations import Grouping
from permed.biobank.tables import DistinctRows
from permed.report.gene_summary import DIPLOTYPE_JOINER

DETERMINED_STATUS = ("called", "outside_call")
NOT_DETERMINED = "(not determined)"
AMBIGUOUS = "(ambiguous)"

FREQUENCY_SCHEMA = pa.schema([
    ("gene", pa.string()),
    ("kind", pa.string()),  # allele, diplotype, phenotype
    ("value", pa.string()),
    ("level", pa.string()),  # all, superpopulation, population
    ("group", pa.string()),
    ("count", pa.int64()),
    ("n_samples", pa.int64()),  # samples in the group
    ("n_determined", pa.int64()),  # samples (alleles for kind=allele) with a determined value
    ("frequency", pa.float64()),  # count / n_determined; null for bracketed values
    ("share", pa.float64()),  # count / n_samples (kind diplotype and phenotype)
])


# phenotypes a guideline cannot act on: reported as such, but not part of the frequency denominator
UNINFORMATIVE = frozenset({"Indeterminate", "n/a", "No Result"})


def undetermined(value: str) -> bool:
    return value.startswith("(") or value in UNINFORMATIVE


def row_values(status: str, diplotypes: list[str], phenotype: str, hap1: str, hap2: str):
    """(diplotype value, phenotype value, alleles) of one distinct calls-table row."""
    if status in DETERMINED_STATUS and len(diplotypes) == 1:
        diplotype = diplotypes[0]
        alleles = [h for h in (hap1, hap2) if h]
    elif status in DETERMINED_STATUS and len(diplotypes) > 1:
        diplotype, alleles = AMBIGUOUS, []
    else:
        diplotype, alleles = f"({status})", []
    phenos = {p for p in phenotype.split(DIPLOTYPE_JOINER) if p} if status in DETERMINED_STATUS else set()
    pheno = phenos.pop() if len(phenos) == 1 else NOT_DETERMINED
    return diplotype, pheno, alleles


def _codes(values: list[str]) -> tuple[list[str], np.ndarray]:
    labels = sorted(set(values))
    index = {v: i for i, v in enumerate(labels)}
    return labels, np.array([index[v] for v in values], dtype=np.int64)


def frequency_table(genes: list[str], rows: DistinctRows, groupings: list[Grouping]) -> pa.Table:
    counts = FrequencyCounts()
    counts.add(genes, rows, groupings)
    return counts.table()


class FrequencyCounts:
    """Counts summed over blocks of samples (a streamed cohort run adds one block at a time); the table,
    with its denominators and frequencies, is made once from the sums."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str, str, str], int] = {}  # (gene, kind, level, group, value) -> n
        self.sizes: dict[tuple[str, str], int] = {}  # (level, group) -> samples

    def add(self, genes: list[str], rows: DistinctRows, groupings: list[Grouping]) -> None:
        t = rows.table
        status = t.column("status").to_pylist()
        dips = t.column("source_diplotypes").to_pylist()
        phen = t.column("phenotype").to_pylist()
        h1 = t.column("haplotype_1").to_pylist()
        h2 = t.column("haplotype_2").to_pylist()
        values = [row_values(*x) for x in zip(status, dips, phen, h1, h2)]
        counts = self.counts
        for grouping in groupings:
            for gi, size in enumerate(np.bincount(grouping.codes, minlength=len(grouping.labels)).tolist()):
                key = (grouping.level, grouping.labels[gi])
                self.sizes[key] = self.sizes.get(key, 0) + size

        def emit(gene, kind, labels, table, grouping):
            for gi, vi in zip(*np.nonzero(table)):
                key = (gene, kind, grouping.level, grouping.labels[gi], labels[vi])
                counts[key] = counts.get(key, 0) + int(table[gi, vi])

        for gene in genes:
            key = rows.keys[gene]
            present = np.unique(key)
            dip_labels, dip_code = _codes([values[k][0] for k in present])
            phe_labels, phe_code = _codes([values[k][1] for k in present])
            allele_names = sorted({a for k in present for a in values[k][2]})
            aidx = {a: i for i, a in enumerate(allele_names)}
            # per distinct row: codes; spread to samples through the row keys
            pos = np.searchsorted(present, key)
            a1 = np.array([aidx[values[k][2][0]] if len(values[k][2]) > 0 else -1 for k in present], dtype=np.int64)
            a2 = np.array([aidx[values[k][2][1]] if len(values[k][2]) > 1 else -1 for k in present], dtype=np.int64)
            s_dip, s_phe, s_a1, s_a2 = dip_code[pos], phe_code[pos], a1[pos], a2[pos]
            for grouping in groupings:
                G = len(grouping.labels)
                gc = grouping.codes
                for kind, labels, code in (("diplotype", dip_labels, s_dip), ("phenotype", phe_labels, s_phe)):
                    V = len(labels)
                    emit(gene, kind, labels, np.bincount(gc * V + code, minlength=G * V).reshape(G, V), grouping)
                V = len(allele_names)
                if V:
                    table = np.zeros((G, V), dtype=np.int64)
                    for a in (s_a1, s_a2):
                        ok = a >= 0
                        table += np.bincount(gc[ok] * V + a[ok], minlength=G * V).reshape(G, V)
                    emit(gene, "allele", allele_names, table, grouping)

    def table(self) -> pa.Table:
        # denominators: samples (alleles for kind=allele) with a determined value, per gene, kind and group
        determined: dict[tuple[str, str, str, str], int] = {}
        for (gene, kind, level, group, value), c in self.counts.items():
            if kind == "allele" or not undetermined(value):
                k = (gene, kind, level, group)
                determined[k] = determined.get(k, 0) + c
        out: dict[str, list] = {name: [] for name in FREQUENCY_SCHEMA.names}
        for (gene, kind, level, group, value), c in self.counts.items():
            size = self.sizes[(level, group)]
            det = determined.get((gene, kind, level, group), 0)
            out["gene"].append(gene)
            out["kind"].append(kind)
            out["value"].append(value)
            out["level"].append(level)
            out["group"].append(group)
            out["count"].append(c)
            out["n_samples"].append(size)
            out["n_determined"].append(det)
            out["frequency"].append(None if undetermined(value) or not det else c / det)
            out["share"].append(None if kind == "allele" else c / size)
        table = pa.table(out, schema=FREQUENCY_SCHEMA)
        order = pc.sort_indices(table, sort_keys=[
            ("gene", "ascending"), ("kind", "ascending"), ("level", "ascending"), ("group", "ascending"),
            ("count", "descending"), ("value", "ascending")])
        return table.take(order)
