"""Where the selected genes' definition positions are, for fast filtering of VCF records.

Positions are those of the build the file is read in: GRCh38 (the definitions' own) or GRCh37, where each
locus sits at the GRCh37 position the knowledge base maps it to (loci without one are left out, so their
records are never read). Loci keep their index into the GRCh38 definition, so what is read lands on it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from permed.kb.model import GeneDefinition, KnowledgeBase

GRCH38, GRCH37 = "GRCh38", "GRCh37"
BUILDS = (GRCH38, GRCH37)

NEAR = 100  # how far from an indel locus a differently-represented record may start
WINDOW_GAP = 500  # merge windows closer than this: one index query beats two
GENE_MARGIN = 10_000  # a record this close to a gene's positions means the file covers the gene


@dataclass(frozen=True, slots=True)
class Site:
    """A definition locus as a file of one build shows it: its position and reference allele on that build,
    the definition's other alleles, and its GRCh38 position (how messages and reports name it)."""

    position: int
    ref: str
    alts: tuple[str, ...]
    position38: int
    # GRCh37 position inferred by colinearity (Locus.grch37_source "interpolated"), with GRCh38's base assumed
    # there: read like any other, but no evidence of the file's build
    interpolated: bool = False

    @property
    def is_snv(self) -> bool:
        return len(self.ref) == 1 and all(len(a) == 1 for a in self.alts)


def sites(gdef: GeneDefinition, build: str) -> tuple[Site | None, ...]:
    """Each locus of a gene on `build` (None: the knowledge base has no position for it there)."""
    if build == GRCH38:
        return tuple(Site(loc.position, loc.ref, loc.alts, loc.position) for loc in gdef.loci)
    out = []
    for loc in gdef.loci:
        if loc.position37 is None:
            out.append(None)
            continue
        ref = loc.ref_on_grch37
        # the same allele strings: GRCh37's reference base is one of the definition's alleles
        alts = tuple(a for a in (loc.ref, *loc.alts) if a != ref)
        out.append(Site(loc.position37, ref, alts, loc.position, loc.grch37_interpolated))
    return tuple(out)


def has_grch37(kb: KnowledgeBase) -> bool:
    """Does the knowledge base map definition positions to GRCh37 (built with PyPGx's variant table)?"""
    return any(loc.position37 is not None for g in kb.genes.values() for loc in g.loci)


def locus_index(kb: KnowledgeBase, genes: list[str], build: str = GRCH38) -> LocusIndex:
    """The index for these genes, built once per KB, gene list and build (each file and unit reuses it)."""
    key = (id(kb), tuple(genes), build)
    idx = _CACHE.get(key)
    if idx is None or idx.kb is not kb:
        idx = _CACHE[key] = LocusIndex(kb, genes, build)
    return idx


_CACHE: dict[tuple, LocusIndex] = {}


class LocusIndex:
    """Where the selected genes' definition positions are on one build, for fast record filtering."""

    def __init__(self, kb: KnowledgeBase, genes: list[str], build: str = GRCH38):
        self.kb = kb
        self.build = build
        self.exact: dict[tuple[str, int], list[tuple[str, int]]] = {}
        self.indel: dict[str, list[tuple[int, int, str, int]]] = {}
        self.snv: dict[str, list[tuple[int, str, int]]] = {}
        self.extra: dict[tuple[str, int], list[tuple[str, int]]] = {}
        self.sites: dict[str, tuple[Site | None, ...]] = {g: sites(kb.genes[g], build) for g in genes}
        # per gene, the loci without a position on this build (always none on GRCh38)
        self.unmapped: dict[str, list[int]] = {g: [li for li, s in enumerate(v) if s is None]
                                               for g, v in self.sites.items()}
        # definition SNVs where the *other* build puts them -> (its base there, the definition's other alleles):
        # a file of the other build carries known variants at these positions (build detection)
        self.other_sites: dict[tuple[str, int], tuple[str, frozenset[str]]] = {}
        other = GRCH37 if build == GRCH38 else GRCH38
        for gene in genes:
            gdef = kb.genes[gene]
            for s in sites(gdef, other):
                if s is not None and s.is_snv and not s.interpolated:
                    self.other_sites[(gdef.chromosome, s.position)] = (s.ref, frozenset(s.alts))
        if build == GRCH38 and not self.other_sites:
            # a knowledge base from before per-locus GRCh37 positions: its GRCh37 sites of definition SNVs
            chroms = {kb.genes[g].chromosome for g in genes}
            for s in kb.grch37_sites:
                if s.chromosome in chroms:
                    ref, alts = self.other_sites.get((s.chromosome, s.position37), (s.ref37, frozenset()))
                    self.other_sites[(s.chromosome, s.position37)] = (ref, alts | {s.alt})
        for gene in genes:
            gdef = kb.genes[gene]
            for li, loc in enumerate(self.sites[gene]):
                if loc is None:
                    continue
                self.exact.setdefault((gdef.chromosome, loc.position), []).append((gene, li))
                if loc.is_snv:
                    self.snv.setdefault(gdef.chromosome, []).append((loc.position, gene, li))
                else:
                    self.indel.setdefault(gdef.chromosome, []).append(
                        (loc.position - NEAR, loc.position + len(loc.ref) + NEAR, gene, li)
                    )
            for xi, x in enumerate(gdef.exemptions.extra_loci):
                xpos = x.position if build == GRCH38 else x.position37
                if xpos is not None:
                    self.extra.setdefault((gdef.chromosome, xpos), []).append((gene, xi))
        for v in self.indel.values():
            v.sort()
        for v in self.snv.values():
            v.sort()
        self.indel_starts = {c: [x[0] for x in v] for c, v in self.indel.items()}
        self.snv_pos = {c: [x[0] for x in v] for c, v in self.snv.items()}
        self.max_span = {c: max((x[1] - x[0] for x in v), default=0) for c, v in self.indel.items()}
        self.chroms = {c for c, _ in self.exact}
        self.sorted_loci: dict[str, list[tuple[int, str, int]]] = {}
        for (c, p), lst in self.exact.items():
            self.sorted_loci.setdefault(c, []).extend((p, g, li) for g, li in lst)
        for v in self.sorted_loci.values():
            v.sort()
        self.sorted_pos = {c: [x[0] for x in v] for c, v in self.sorted_loci.items()}
        spans: dict[str, list[tuple[int, int]]] = {}
        context = {g: [p for p, _, _ in v] for g, v in self.extra_by_gene().items()}
        for gene in genes:
            gdef = kb.genes[gene]
            # an SNV is seen by records overlapping it; an indel also by shifted representations nearby
            for loc in self.sites[gene]:
                if loc is None:
                    continue
                margin = 0 if loc.is_snv else NEAR
                spans.setdefault(gdef.chromosome, []).append(
                    (max(1, loc.position - margin), loc.position + len(loc.ref) - 1 + margin))
            for p in context.get(gene, ()):
                spans.setdefault(gdef.chromosome, []).append((p, p))
        # chromosome -> (gene, start, end): the gene's definition positions widened by GENE_MARGIN
        self.gene_spans: dict[str, list[tuple[str, int, int]]] = {}
        # chromosome -> positions reported for context only (they may lie far from their gene's own)
        self.context_positions: dict[str, list[int]] = {}
        for gene in genes:
            gdef = kb.genes[gene]
            mapped = [loc for loc in self.sites[gene] if loc is not None]
            if mapped:
                self.gene_spans.setdefault(gdef.chromosome, []).append(
                    (gene, min(loc.position for loc in mapped) - GENE_MARGIN,
                     max(loc.position + len(loc.ref) for loc in mapped) + GENE_MARGIN))
            self.context_positions.setdefault(gdef.chromosome, []).extend(context.get(gene, ()))
        # every KB gene's definition span (not only the selected genes'): a reference block is judged by
        # what it covers in the genome, whichever genes this run calls
        self.all_gene_spans: dict[str, list[tuple[str, int, int]]] = {}
        for gene, gdef in kb.genes.items():
            mapped = [loc.position for loc in sites(gdef, build) if loc is not None]
            if mapped:
                self.all_gene_spans.setdefault(gdef.chromosome, []).append((gene, min(mapped), max(mapped)))
        self.windows: dict[str, list[tuple[int, int]]] = {}
        for c, v in spans.items():
            merged: list[list[int]] = []
            for lo, hi in sorted(v):
                if merged and lo <= merged[-1][1] + WINDOW_GAP:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            self.windows[c] = [(lo, hi) for lo, hi in merged]

    def extra_by_gene(self) -> dict[str, list[tuple[int, str, int]]]:
        """Per gene, its context positions on this build: (position, gene, index into extra_loci)."""
        out: dict[str, list[tuple[int, str, int]]] = {}
        for (_, pos), lst in self.extra.items():
            for g, xi in lst:
                out.setdefault(g, []).append((pos, g, xi))
        return out

    def site(self, gene: str, li: int) -> Site:
        """A locus of a gene as this build shows it (only loci the index holds are asked for)."""
        return self.sites[gene][li]  # type: ignore[return-value]

    def covered(self, chrom: str, start: int, end: int) -> list[tuple[str, int]]:
        """Loci whose position lies in [start, end] (gVCF reference blocks)."""
        sp = self.sorted_pos.get(chrom)
        if not sp:
            return []
        lo, hi = bisect.bisect_left(sp, start), bisect.bisect_right(sp, end)
        return [(g, li) for _, g, li in self.sorted_loci[chrom][lo:hi]]

    def near(self, chrom: str, pos: int, end: int) -> list[tuple[str, int]]:
        """Loci a record spanning [pos, end] may describe without being at the locus position."""
        out = []
        starts = self.indel_starts.get(chrom)
        if starts:
            lo = bisect.bisect_left(starts, pos - self.max_span[chrom])
            hi = bisect.bisect_right(starts, end)
            out += [(g, li) for s, e, g, li in self.indel[chrom][lo:hi] if s <= end and e >= pos]
        sp = self.snv_pos.get(chrom)
        if sp and end > pos:
            lo, hi = bisect.bisect_left(sp, pos), bisect.bisect_right(sp, end)
            out += [(g, li) for _, g, li in self.snv[chrom][lo:hi]]
        return out

    def genes_overlapping(self, chrom: str, start: int, end: int) -> set[str]:
        """KB genes with definition positions within [start, end]."""
        return {g for g, lo, hi in self.all_gene_spans.get(chrom, ()) if lo <= end and start <= hi}
