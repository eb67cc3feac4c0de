"""The PGx aggregate a node releases for a set of individuals: counts per gene, kind, value and group, under
disclosure control (exact counts with k and complementary suppression) or with differential privacy.

The result is the `permed.aggregate/1` document (schemas.AGGREGATE_SCHEMA) carried in the `info` of a
Beacon count response. It never holds an identifier or a genotype of anyone, only counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from permed.biobank.frequencies import undetermined
from permed.federation import disclosure, privacy
from permed.federation.cohort import ALL, NodeCohort
from permed.federation.config import NodeConfig

SCHEMA_ID = "permed.aggregate/1"
OTHER = "(other)"  # differential privacy: values fewer than k individuals of the whole cohort hold


@dataclass(frozen=True)
class AggregateRequest:
    genes: tuple[str, ...]
    kinds: tuple[str, ...]
    levels: tuple[str, ...]  # "all" first, then the groupings asked


def _count(value: int, state: str | None):
    return {"suppressed": state} if state else int(value)


def exact(cohort: NodeCohort, mask: np.ndarray, req: AggregateRequest, k: int) -> dict:
    levels = list(req.levels)
    sizes = disclosure.size_table(cohort, mask, levels)
    size_sup, derivable = disclosure.suppress(sizes, k)
    while derivable and len(levels) > 1:  # group sizes that cannot be protected: drop the finest level
        levels.pop()
        sizes = disclosure.size_table(cohort, mask, levels)
        size_sup, derivable = disclosure.suppress(sizes, k)
    groups = [{"level": key[3], "group": key[4], "n": _count(c, size_sup.get(i))}
              for i, (key, c) in enumerate(zip(sizes.keys, sizes.counts))]
    cells, totals, withheld = [], [], []
    for gene in req.genes:
        t = disclosure.gene_table(cohort, gene, mask, list(req.kinds), levels, sizes)
        pre = {t.index[sizes.keys[i]]: state for i, state in size_sup.items()}
        sup, derivable = disclosure.suppress(t, k, pre)
        if derivable:
            withheld.append(gene)  # no cell left to hide: publishing the gene would give a count away
            continue
        for i, (g, kind, value, level, group) in enumerate(t.keys):
            if not g:
                continue
            if kind.startswith("determined:"):
                totals.append({"gene": g, "kind": kind.split(":", 1)[1], "level": level, "group": group,
                               "nDetermined": _count(t.counts[i], sup.get(i))})
            else:
                cells.append({"gene": g, "kind": kind, "value": value, "level": level, "group": group,
                              "count": _count(t.counts[i], sup.get(i))})
    out = {"schema": SCHEMA_ID, "k": k, "nSamples": int(mask.sum()), "levels": levels, "groups": groups,
           "cells": cells, "totals": totals, "privacy": {"mechanism": "none"}}
    if withheld:
        out["withheld"] = withheld
    return out


def vocabulary(cohort: NodeCohort, gene: str, kind: str, k: int) -> tuple[list[str], np.ndarray]:
    """(public labels, code -> public label index): values fewer than k of the whole cohort hold are pooled
    as "(other)", so the labels an answer can carry are fixed before any query (and listed by
    /api/filtering_terms)."""
    g = cohort.genes[gene]
    labels = g.labels(kind)
    if kind == "allele":
        held = np.bincount(g.allele1[g.allele1 >= 0], minlength=len(labels)) + np.bincount(
            g.allele2[g.allele2 >= 0], minlength=len(labels))
    else:
        held = np.bincount(getattr(g, kind), minlength=len(labels))
    public = [x for x, c in zip(labels, held) if c >= k]
    index = {x: i for i, x in enumerate(public)}
    other = len(public)
    mapping = np.array([index.get(x, other) for x in labels] + [-1], dtype=np.int64)  # last: no allele (-1)
    if (held[(held > 0)] < k).any():
        public.append(OTHER)
    return public, mapping


def noisy(cohort: NodeCohort, mask: np.ndarray, req: AggregateRequest, k: int, noise: privacy.Noise) -> dict:
    """Noisy counts over the public vocabulary and every group of each level (zeros included, so which
    cells appear says nothing); counts below k after noise are shown as "<k" (post-processing)."""
    sel = np.flatnonzero(mask)
    vectors, layout = [], []
    for level in req.levels:
        grouping = cohort.groupings[level]
        G = len(grouping.labels)
        vectors.append(np.bincount(grouping.codes[sel], minlength=G))
        layout.append(("n", level, None, None, None, G))
        for gene in req.genes:
            g = cohort.genes[gene]
            for kind in req.kinds:
                labels, mapping = vocabulary(cohort, gene, kind, k)
                V = len(labels)
                if not V:
                    continue
                gc = grouping.codes[sel]
                if kind == "allele":
                    counts = sum(np.bincount(gc[mapping[a[sel]] >= 0] * V + mapping[a[sel]][mapping[a[sel]] >= 0],
                                             minlength=G * V) for a in (g.allele1, g.allele2))
                else:
                    counts = np.bincount(gc * V + mapping[getattr(g, kind)[sel]], minlength=G * V)
                vectors.append(counts)
                layout.append(("cells", level, gene, kind, labels, G))
    flat = np.concatenate(vectors) if vectors else np.zeros(0, dtype=np.int64)
    released = np.maximum(privacy.noisy(noise, flat), 0)  # negative counts carry no information: clamp
    groups, cells, totals = [], [], []
    pos = 0
    for what, level, gene, kind, labels, G in layout:
        names = cohort.groupings[level].labels
        if what == "n":
            for gi in range(G):
                groups.append({"level": level, "group": names[gi], "n": _shown(released[pos + gi], k)})
            pos += G
            continue
        V = len(labels)
        block = released[pos:pos + G * V].reshape(G, V)
        pos += G * V
        det = np.array([kind == "allele" or not undetermined(x) for x in labels], dtype=bool)
        for gi in range(G):
            for vi in range(V):
                cells.append({"gene": gene, "kind": kind, "value": labels[vi], "level": level, "group": names[gi],
                              "count": _shown(block[gi, vi], k)})
            totals.append({"gene": gene, "kind": kind, "level": level, "group": names[gi],
                           "nDetermined": _shown(int(block[gi][det].sum()), k)})
    return {"schema": SCHEMA_ID, "k": k, "nSamples": None, "levels": list(req.levels), "groups": groups,
            "cells": cells, "totals": totals, "privacy": noise.describe()}


def _shown(x: int, k: int):
    return {"suppressed": "<k"} if x < k else int(x)


def answer(cohort: NodeCohort, mask: np.ndarray, req: AggregateRequest, config: NodeConfig,
           noise: privacy.Noise | None) -> dict:
    k = config.disclosure.k
    if noise is not None:
        return noisy(cohort, mask, req, k, noise)
    return exact(cohort, mask, req, k)


def request_levels(cohort: NodeCohort, by: list[str]) -> tuple[str, ...]:
    """"all" and the groupings asked, coarse to fine, each only once."""
    order = [ALL, "superpopulation", "population"]
    asked = {ALL, *by}
    return tuple(x for x in order if x in asked and x in cohort.groupings)
