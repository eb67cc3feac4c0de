"""The cohort a node serves, held as integer codes per gene and sample: what filters and counts run on.

Read once from a `permed cohort` directory (calls.parquet, samples.parquet). Values are derived exactly as
frequencies.parquet derives them (biobank.frequencies.row_values), so a node's counts over its whole cohort
equal that file's, and the federated sum over nodes equals `permed cohort` on the pooled samples.
Sample names are read only to line the two tables up; they are not kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from permed.biobank.frequencies import row_values, undetermined
from permed.biobank.populations import LEVELS, UNASSIGNED
from permed.errors import InputFileError

ALL = "all"


@dataclass
class GeneCodes:
    """One gene: per sample, codes into the label lists (-1: no allele)."""

    diplotype: np.ndarray
    diplotype_labels: list[str]
    phenotype: np.ndarray
    phenotype_labels: list[str]
    allele1: np.ndarray
    allele2: np.ndarray
    allele_labels: list[str]
    activity: np.ndarray  # float; nan without a score

    def labels(self, kind: str) -> list[str]:
        return {"diplotype": self.diplotype_labels, "phenotype": self.phenotype_labels,
                "allele": self.allele_labels}[kind]

    def determined(self, kind: str) -> np.ndarray:
        """Per label: whether it counts towards n_determined (alleles: all do)."""
        labels = self.labels(kind)
        if kind == "allele":
            return np.ones(len(labels), dtype=bool)
        return np.array([not undetermined(x) for x in labels], dtype=bool)


@dataclass
class Grouping:
    level: str
    labels: list[str]
    codes: np.ndarray


@dataclass
class NodeCohort:
    n: int
    genes: dict[str, GeneCodes]
    groupings: dict[str, Grouping]  # "all" and the levels samples.parquet has
    parents: dict[str, dict[str, str]]  # population -> superpopulation, when every sample agrees
    source: str

    @property
    def levels(self) -> list[str]:
        return list(self.groupings)


def _activity(text: str) -> float:
    """calls.parquet's activity score text as a number: '≥3.0' reads as 3.0 (its lower bound)."""
    t = (text or "").strip().lstrip("≥>").strip()
    try:
        return float(t)
    except ValueError:
        return math.nan


def load_cohort(directory: Path) -> NodeCohort:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    directory = Path(directory)
    calls_path = directory / "calls.parquet"
    if not calls_path.is_file():
        raise InputFileError(f"{calls_path}: not found; give a directory written by `permed cohort`")
    cols = ["sample", "gene", "status", "source_diplotypes", "phenotype", "haplotype_1", "haplotype_2",
            "activity_score"]
    try:
        table = pq.read_table(calls_path, columns=cols)
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise InputFileError(f"{calls_path}: not a permed cohort calls table ({str(exc)[:200]})") from None
    samples = pc.unique(table.column("sample").cast(pa.string())).to_pylist()
    sample_index = {s: i for i, s in enumerate(samples)}
    n = len(samples)
    text = ["status", "phenotype", "haplotype_1", "haplotype_2", "activity_score"]
    genes: dict[str, GeneCodes] = {}
    gene_col = table.column("gene").cast(pa.string())
    for gene in pc.unique(gene_col).to_pylist():
        part = table.filter(pc.equal(gene_col, gene))
        rows = np.array([sample_index[s] for s in part.column("sample").cast(pa.string()).to_pylist()])
        if len(rows) != n or len(set(rows.tolist())) != n:
            raise InputFileError(f"{calls_path}: gene {gene} does not have exactly one row per sample")
        # distinct (status, diplotypes, phenotype, haplotypes, score) tuples: Python touches each once
        keys = [part.column(c).cast(pa.string()).fill_null("").to_pylist() for c in text]
        dips = part.column("source_diplotypes").to_pylist()
        seen: dict[tuple, int] = {}
        code = np.empty(len(rows), dtype=np.int64)
        distinct = []
        for i, key in enumerate(zip(*keys, map(lambda d: tuple(d or ()), dips))):
            j = seen.get(key)
            if j is None:
                j = seen[key] = len(distinct)
                distinct.append(key)
            code[i] = j
        derived = [row_values(st, list(d), ph, h1, h2) for st, ph, h1, h2, _, d in distinct]
        dip_labels = sorted({d for d, _, _ in derived})
        phe_labels = sorted({p for _, p, _ in derived})
        allele_labels = sorted({a for _, _, al in derived for a in al})
        di = {x: i for i, x in enumerate(dip_labels)}
        pi = {x: i for i, x in enumerate(phe_labels)}
        ai = {x: i for i, x in enumerate(allele_labels)}
        d_code = np.array([di[d] for d, _, _ in derived], dtype=np.int64)
        p_code = np.array([pi[p] for _, p, _ in derived], dtype=np.int64)
        a1 = np.array([ai[al[0]] if len(al) > 0 else -1 for _, _, al in derived], dtype=np.int64)
        a2 = np.array([ai[al[1]] if len(al) > 1 else -1 for _, _, al in derived], dtype=np.int64)
        act = np.array([_activity(k[4]) for k in distinct], dtype=np.float64)
        order = np.empty(n, dtype=np.int64)
        order[rows] = code  # per sample (cohort order)
        genes[gene] = GeneCodes(d_code[order], dip_labels, p_code[order], phe_labels, a1[order], a2[order],
                                allele_labels, act[order])
    groupings = {ALL: Grouping(ALL, ["ALL"], np.zeros(n, dtype=np.int64))}
    parents: dict[str, dict[str, str]] = {}
    samples_path = directory / "samples.parquet"
    if samples_path.is_file():
        try:
            st = pq.read_table(samples_path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputFileError(f"{samples_path}: unreadable ({str(exc)[:200]})") from None
        if "sample" not in st.column_names:
            raise InputFileError(f"{samples_path}: no 'sample' column")
        names = st.column("sample").to_pylist()
        per_level = {}
        for level in LEVELS:
            if level not in st.column_names:
                continue
            of = dict(zip(names, st.column(level).to_pylist()))
            values = [of.get(s) or UNASSIGNED for s in samples]
            labels = sorted(set(values), key=lambda x: (x == UNASSIGNED, x))
            index = {x: i for i, x in enumerate(labels)}
            groupings[level] = Grouping(level, labels, np.array([index[v] for v in values], dtype=np.int64))
            per_level[level] = values
        if "superpopulation" in per_level and "population" in per_level:
            pairs: dict[str, set[str]] = {}
            for pop, sup in zip(per_level["population"], per_level["superpopulation"]):
                pairs.setdefault(pop, set()).add(sup)
            parents["population"] = {p: next(iter(s)) for p, s in pairs.items() if len(s) == 1}
    return NodeCohort(n, genes, groupings, parents, str(directory))
