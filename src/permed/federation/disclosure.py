"""Disclosure control on exact counts: minimum cell count k with complementary suppression.

An answer is a table of cells: individuals per (gene, kind, value, level, group), group sizes, and the
number of determined values per (gene, kind, level, group). The attacker we plan for knows how they relate
(linear equalities over non-negative integers) and knows this method:

* a group's cells of one kind add up to the group's size (diplotype, phenotype) or to its determined
  count; the determined cells add up to that count;
* a superpopulation's cell is the sum of its populations' cells, the overall cell the sum of the
  superpopulations' (the same for sizes and determined counts);
* when diplotypes and phenotypes are asked together, a block of diplotypes and the phenotypes they map to
  hold the same individuals, and an allele's count is the sum of the diplotype cells carrying it.

Cells of 1..k-1 individuals are suppressed ("<k", primary). Then, until nothing changes: an equality with
exactly one suppressed cell gets a second one (its smallest published cell, "complementary"), and the
attack itself is run (bounds propagated through every equality; a primary cell holds 1..k-1, a
complementary one k or more): a primary cell whose bounds meet is derivable, so one more cell near it is
suppressed. Group sizes are decided first, for all genes alike, so that two answers about different genes
never hide different group sizes. What this does not cover is in docs/federation.md (answers of different
shapes about the same individuals; sets that differ by k or more).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from permed.federation.cohort import ALL, GeneCodes, NodeCohort

KINDS = ("diplotype", "phenotype", "allele")
PRIMARY, COMPLEMENTARY = "<k", "complementary"


@dataclass
class CellTable:
    """Cells of one gene over one set of individuals: counts, keys and the equalities between them."""

    counts: list[int] = field(default_factory=list)
    keys: list[tuple] = field(default_factory=list)  # (gene, kind, value, level, group); "n", "determined:KIND"
    index: dict[tuple, int] = field(default_factory=dict)
    constraints: list[list[tuple[int, int]]] = field(default_factory=list)  # sum(a * x) == 0
    fixed: set[int] = field(default_factory=set)  # always published (the size of the whole set)

    def cell(self, key: tuple, count: int) -> int:
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.counts)
            self.counts.append(int(count))
            self.keys.append(key)
        return i

    def equal(self, left: list[tuple[int, int]], right: list[tuple[int, int]]) -> None:
        """sum(w * x for left) == sum(w * x for right), over listed cells only (zero cells are public)."""
        terms: dict[int, int] = defaultdict(int)
        for i, w in left:
            terms[i] += w
        for i, w in right:
            terms[i] -= w
        c = [(i, a) for i, a in terms.items() if a]
        if len(c) >= 2:
            self.constraints.append(c)


def _counts(codes: np.ndarray, groups: np.ndarray, n_groups: int, n_values: int) -> np.ndarray:
    ok = codes >= 0
    return np.bincount(groups[ok] * n_values + codes[ok], minlength=n_groups * n_values).reshape(n_groups, n_values)


def size_table(cohort: NodeCohort, mask: np.ndarray, levels: list[str]) -> CellTable:
    """Group sizes alone: their suppression is decided first and then holds for every gene, so an answer
    about one gene and an answer about another never hide different group sizes."""
    t = CellTable()
    sel = np.flatnonzero(mask)
    for level in levels:
        grouping = cohort.groupings[level]
        sizes = np.bincount(grouping.codes[sel], minlength=len(grouping.labels))
        for gi, group in enumerate(grouping.labels):
            if sizes[gi]:
                t.cell(("", "n", "", level, group), sizes[gi])
    t.fixed.add(t.cell(("", "n", "", ALL, "ALL"), len(sel)))
    _hierarchy(t, cohort, levels)
    return t


def gene_table(cohort: NodeCohort, gene: str, mask: np.ndarray, kinds: list[str], levels: list[str],
               sizes: CellTable) -> CellTable:
    """One gene's cells of the kinds and levels asked, with the group sizes (whose fate is already decided:
    they are never chosen as complementary cells here)."""
    t = CellTable()
    for i, key in enumerate(sizes.keys):
        j = t.cell(key, sizes.counts[i])
        t.fixed.add(j)
    sel = np.flatnonzero(mask)
    g: GeneCodes = cohort.genes[gene]
    for kind in kinds:
        labels, det = g.labels(kind), g.determined(kind)
        for level in levels:
            grouping = cohort.groupings[level]
            gc, G = grouping.codes[sel], len(grouping.labels)
            if kind == "allele":
                counts = _counts(g.allele1[sel], gc, G, len(labels)) + _counts(g.allele2[sel], gc, G, len(labels))
            else:
                counts = _counts(getattr(g, kind)[sel], gc, G, len(labels))
            for gi, group in enumerate(grouping.labels):
                n_key = ("", "n", "", level, group)
                if n_key not in t.index:
                    continue
                row = counts[gi]
                nz = np.flatnonzero(row)
                parts = [(t.cell((gene, kind, labels[v], level, group), row[v]), 1) for v in nz]
                det_parts = [p for v, p in zip(nz, parts) if det[v]]
                n_det = int(row[det].sum()) if len(row) else 0
                d = t.cell((gene, f"determined:{kind}", "", level, group), n_det)  # 0 too: it is a total
                t.equal([(d, 1)], det_parts)
                if kind != "allele":
                    t.equal([(t.index[n_key], 1)], parts)
    _hierarchy(t, cohort, levels)
    _kind_links(t, cohort, gene, sel, kinds, levels)
    return t


def _children(cohort: NodeCohort, levels: list[str]) -> list[tuple[str, str, str, list[str]]]:
    """(parent level, parent group, child level, child groups) for each sum relation between the levels."""
    out = []
    sub = [x for x in levels if x != ALL]
    if "superpopulation" in sub:
        out.append((ALL, "ALL", "superpopulation", cohort.groupings["superpopulation"].labels))
        parent = cohort.parents.get("population", {})
        pops = cohort.groupings.get("population") if "population" in sub else None
        if pops is not None and all(p in parent for p in pops.labels):
            by: dict[str, list[str]] = defaultdict(list)
            for p in pops.labels:
                by[parent[p]].append(p)
            out += [("superpopulation", s, "population", ps) for s, ps in by.items()]
    elif "population" in sub:
        out.append((ALL, "ALL", "population", cohort.groupings["population"].labels))
    return out


def _hierarchy(t: CellTable, cohort: NodeCohort, levels: list[str]) -> None:
    by_key: dict[tuple, dict[tuple[str, str], int]] = defaultdict(dict)  # (gene, kind, value) -> (level, group)
    for i, (gene, kind, value, level, group) in enumerate(t.keys):
        by_key[(gene, kind, value)][(level, group)] = i
    for plevel, pgroup, clevel, cgroups in _children(cohort, levels):
        for cells in by_key.values():
            top = cells.get((plevel, pgroup))
            kids = [cells[(clevel, c)] for c in cgroups if (clevel, c) in cells]
            t.equal([(top, 1)] if top is not None else [], [(k, 1) for k in kids])


def _kind_links(t: CellTable, cohort: NodeCohort, gene: str, sel: np.ndarray, kinds: list[str],
                levels: list[str]) -> None:
    """Diplotype-phenotype blocks and allele = sum of diplotypes carrying it, in every group."""
    if "diplotype" not in kinds or len(kinds) < 2:
        return
    g = cohort.genes[gene]
    d, p, a1, a2 = g.diplotype[sel], g.phenotype[sel], g.allele1[sel], g.allele2[sel]
    if not len(sel):
        return
    # union-find over diplotype codes (0..D-1) and phenotype codes (D..)
    D = len(g.diplotype_labels)
    parent = list(range(D + len(g.phenotype_labels)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    pairs = np.unique(np.stack([d, p], axis=1), axis=0)
    for dc, pc in pairs.tolist():
        ra, rb = find(dc), find(D + pc)
        if ra != rb:
            parent[ra] = rb
    blocks: dict[int, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for dc in set(pairs[:, 0].tolist()):
        blocks[find(dc)][0].append(g.diplotype_labels[dc])
    for pc in set(pairs[:, 1].tolist()):
        blocks[find(D + pc)][1].append(g.phenotype_labels[pc])
    carried: dict[str, dict[str, int]] = {}  # diplotype -> allele -> copies (when the same in every individual)
    trip = np.unique(np.stack([d, a1, a2], axis=1), axis=0)
    seen_d: dict[int, int] = defaultdict(int)
    for dc, _, _ in trip.tolist():
        seen_d[dc] += 1
    for dc, x1, x2 in trip.tolist():
        if seen_d[dc] == 1:
            copies: dict[str, int] = defaultdict(int)
            for x in (x1, x2):
                if x >= 0:
                    copies[g.allele_labels[x]] += 1
            carried[g.diplotype_labels[dc]] = copies
    consistent = {a for a in g.allele_labels
                  if all(dl in carried for dl, c in _carriers(trip, g, a))}
    for level in levels:
        for group in cohort.groupings[level].labels:
            def ix(kind, value, level=level, group=group):
                return t.index.get((gene, kind, value, level, group))
            for dips, phes in (blocks.values() if "phenotype" in kinds else ()):
                left = [(i, 1) for i in (ix("diplotype", x) for x in dips) if i is not None]
                right = [(i, 1) for i in (ix("phenotype", x) for x in phes) if i is not None]
                t.equal(left, right)
            for allele in (consistent if "allele" in kinds else ()):
                a = ix("allele", allele)
                right = [(i, carried[dl][allele]) for dl in carried if allele in carried[dl]
                         for i in [ix("diplotype", dl)] if i is not None]
                t.equal([(a, 1)] if a is not None else [], right)


def _carriers(trip: np.ndarray, g: GeneCodes, allele: str):
    code = g.allele_labels.index(allele)
    for dc, x1, x2 in trip.tolist():
        if code in (x1, x2):
            yield g.diplotype_labels[dc], 1


# --- suppression ---------------------------------------------------------------------------------------

def bounds(t: CellTable, suppressed: dict[int, str], k: int, max_visits: int = 200_000
           ) -> dict[int, tuple[float, float]]:
    """What an attacker can derive about each suppressed cell from the published cells and the equalities:
    (lowest, highest) count, by propagating bounds through the equalities until they no longer move."""
    # the method is public: a complementary cell is known to hold k or more (it was a published cell)
    lo = {i: (1.0 if kind == PRIMARY else float(k)) for i, kind in suppressed.items()}
    hi = {i: (k - 1.0 if kind == PRIMARY else math.inf) for i, kind in suppressed.items()}
    member: dict[int, list[int]] = defaultdict(list)
    touching = []
    for ci, c in enumerate(t.constraints):
        if any(i in suppressed for i, _ in c):
            touching.append(ci)
            for i, _ in c:
                if i in suppressed:
                    member[i].append(ci)
    counts = t.counts
    queue, queued = list(touching), set(touching)
    visits = 0
    while queue and visits < max_visits:
        ci = queue.pop()
        queued.discard(ci)
        visits += 1
        c = t.constraints[ci]
        # the range of sum(a_j x_j) over all terms, from each term's bounds
        terms = []
        for j, b in c:
            if j in suppressed:
                x_lo, x_hi = lo[j], hi[j]
            else:
                x_lo = x_hi = counts[j]
            terms.append((j, b, *((b * x_lo, b * x_hi) if b > 0 else (b * x_hi, b * x_lo))))
        s_lo = sum(x[2] for x in terms)
        s_hi = sum(x[3] for x in terms)
        for i, a, t_lo, t_hi in terms:
            if i not in suppressed:
                continue
            # a * x_i == -(sum of the others): the others' range, without this term's own contribution
            others_hi_inf = any(not math.isfinite(x[3]) for x in terms if x[0] != i)
            others_lo_inf = any(not math.isfinite(x[2]) for x in terms if x[0] != i)
            r_lo = -math.inf if others_hi_inf else -(s_hi - t_hi)
            r_hi = math.inf if others_lo_inf else -(s_lo - t_lo)
            new_lo, new_hi = (r_lo / a, r_hi / a) if a > 0 else (r_hi / a, r_lo / a)
            moved = False
            if math.isfinite(new_lo) and math.ceil(new_lo - 1e-9) > lo[i]:
                lo[i] = math.ceil(new_lo - 1e-9)
                moved = True
            if math.isfinite(new_hi) and math.floor(new_hi + 1e-9) < hi[i]:
                hi[i] = math.floor(new_hi + 1e-9)
                moved = True
            if moved:
                for cj in member[i]:
                    if cj not in queued:
                        queued.add(cj)
                        queue.append(cj)
    return {i: (lo[i], hi[i]) for i in suppressed}


def suppress(t: CellTable, k: int, pre: dict[int, str] | None = None) -> tuple[dict[int, str], list[int]]:
    """(cell -> "<k" or "complementary" for the cells to withhold, cells still derivable when no further cell
    could be hidden: the caller withholds their table). `pre`: cells already withheld (fixed ones included)."""
    sup = dict(pre or {})
    if k <= 1:
        return sup, []
    sup.update({i: PRIMARY for i, c in enumerate(t.counts) if 0 < c < k and i not in t.fixed})
    if not sup:
        return sup, []
    member: dict[int, list[int]] = defaultdict(list)
    for ci, c in enumerate(t.constraints):
        for i, _ in c:
            member[i].append(ci)

    def add_one(ci: int) -> bool:
        options = [i for i, _ in t.constraints[ci] if i not in sup and i not in t.fixed and t.counts[i] > 0]
        if not options:
            return False
        best = min(options, key=lambda i: (t.counts[i], i))  # the least information lost; ties: stable
        sup[best] = COMPLEMENTARY
        return True

    def widen(i: int) -> bool:
        """Hide one more cell in an equality of `i`, or failing that of the suppressed cells sharing one with
        it (what pins a cell can be a few equalities away), nearest first."""
        frontier, seen = [i], {i}
        for _ in range(4):
            for j in frontier:
                for ci in sorted(member[j], key=lambda ci: (len(t.constraints[ci]), ci)):
                    if add_one(ci):
                        return True
            nxt = []
            for j in frontier:
                for ci in member[j]:
                    for x, _ in t.constraints[ci]:
                        if x in sup and x not in seen:
                            seen.add(x)
                            nxt.append(x)
            frontier = nxt
        return False

    derived: list[int] = []
    for _ in range(len(t.counts) + 1):
        # an equality with a single suppressed cell gives it away: hide a second cell there
        changed = False
        for ci, c in enumerate(t.constraints):
            if sum(1 for i, _ in c if i in sup) == 1 and add_one(ci):
                changed = True
        if changed:
            continue
        # the attack itself: every derivable cell gets one more hidden cell in one of its equalities
        # (a complementary cell holds k or more: pinning one down tells no small count, only its own)
        derived = [i for i, (lo, hi) in bounds(t, sup, k).items() if lo >= hi and sup[i] == PRIMARY]
        for i in derived:
            changed |= widen(i)
        if not changed:
            break
    return sup, derived
