"""Lowest-function genes (DPYD, RYR1): reduce what the matcher found to the one diplotype advice uses.

On each strand the allele with the lowest function stands for the strand (CPIC's DPYD and RYR1
guidance): DPYD by activity value, RYR1 by malignant-hyperthermia association. Tie-breaks follow
PharmCAT 3.1.1 so our recommendation diplotypes are the same as its.
"""

from __future__ import annotations

from functools import cmp_to_key

from permed.matcher.names import combination_parts, name_cmp
from permed.phenotype.annotate import GeneAnnotator
from permed.phenotype.model import Diplotype, unspecified

MHS_MARKER = "Malignant"


def _activity(ann: GeneAnnotator, name: str) -> float | None:
    v = ann.table.activity.get(name) if ann.table else None
    if unspecified(v):
        return None
    try:
        return float(v.lstrip("≥>"))
    except ValueError:
        return None


def _is_mhs(ann: GeneAnnotator, name: str) -> bool:
    fn = ann.function(name)
    return fn is not None and MHS_MARKER in fn


def allele_cmp(ann: GeneAnnotator):
    """Order alleles lowest function first. DPYD: an allele without an activity value sorts first."""
    def cmp(a: str, b: str) -> int:
        if ann.gene == "DPYD":
            va, vb = _activity(ann, a), _activity(ann, b)
            if va != vb:
                if va is None:
                    return -1
                if vb is None:
                    return 1
                return -1 if va < vb else 1
        elif ann.gene == "RYR1":
            ma, mb = _is_mhs(ann, a), _is_mhs(ann, b)
            if ma != mb:
                return -1 if ma else 1
        return name_cmp(a, b)
    return cmp


def _diplotype_rank(ann: GeneAnnotator, pair: tuple[str, str]):
    if ann.gene == "DPYD":
        # here a missing activity value counts as normal (2.0): PharmCAT's diplotype-level rule
        return sum(2.0 if (v := _activity(ann, a)) is None else v for a in pair)
    return -sum(_is_mhs(ann, a) for a in pair)


def infer_from_strands(ann: GeneAnnotator, candidates: list[tuple[list[str], ...]], sources: list[str]) -> Diplotype:
    """Phased (or effectively phased) calls: each candidate is (strand1 names, strand2 names)."""
    key = cmp_to_key(allele_cmp(ann))
    best = None
    for strands in candidates:
        picks = []
        for strand in strands:
            parts = [p for name in strand for p in combination_parts(name)]
            picks.append(min(parts, key=key))
        pair = tuple(picks)
        rank = (_diplotype_rank(ann, pair), *(cmp_to_key(name_cmp)(p) for p in pair))
        if best is None or rank < best[0]:
            best = (rank, pair)
    return ann.diplotype(list(best[1]), inferred_from=sources)


def infer_unphased(ann: GeneAnnotator, names: list[str], sources: list[str]) -> Diplotype:
    """Unphased: all alleles found (a homozygous allele twice); the two lowest-function ones."""
    parts = [p for n in names for p in combination_parts(n)]
    ordered = sorted(parts, key=cmp_to_key(allele_cmp(ann)))
    return ann.diplotype(ordered[:2], inferred_from=sources)
