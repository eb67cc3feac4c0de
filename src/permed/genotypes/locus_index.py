"""Where the selected genes' definition positions are, for fast filtering of VCF records."""

from __future__ import annotations

import bisect

from permed.kb.model import KnowledgeBase

NEAR = 100  # how far from an indel locus a differently-represented record may start
WINDOW_GAP = 500  # merge windows closer than this: one index query beats two
GENE_MARGIN = 10_000  # a record this close to a gene's positions means the file covers the gene


def locus_index(kb: KnowledgeBase, genes: list[str]) -> LocusIndex:
    """The index for these genes, built once per KB and gene list (each file and unit reuses it)."""
    key = (id(kb), tuple(genes))
    idx = _CACHE.get(key)
    if idx is None or idx.kb is not kb:
        idx = _CACHE[key] = LocusIndex(kb, genes)
    return idx


_CACHE: dict[tuple, LocusIndex] = {}


class LocusIndex:
    """Where the selected genes' definition positions are, for fast record filtering."""

    def __init__(self, kb: KnowledgeBase, genes: list[str]):
        self.kb = kb
        self.exact: dict[tuple[str, int], list[tuple[str, int]]] = {}
        self.indel: dict[str, list[tuple[int, int, str, int]]] = {}
        self.snv: dict[str, list[tuple[int, str, int]]] = {}
        self.extra: dict[tuple[str, int], list[tuple[str, int]]] = {}
        # GRCh37 positions of the selected genes' SNVs -> (GRCh37 base, variant allele): build detection
        chroms = {kb.genes[g].chromosome for g in genes}
        self.grch37: dict[tuple[str, int], tuple[str, str]] = {
            (s.chromosome, s.position37): (s.ref37, s.alt) for s in kb.grch37_sites if s.chromosome in chroms}
        for gene in genes:
            gdef = kb.genes[gene]
            for li, loc in enumerate(gdef.loci):
                self.exact.setdefault((gdef.chromosome, loc.position), []).append((gene, li))
                if loc.is_snv:
                    self.snv.setdefault(gdef.chromosome, []).append((loc.position, gene, li))
                else:
                    self.indel.setdefault(gdef.chromosome, []).append(
                        (loc.position - NEAR, loc.position + len(loc.ref) + NEAR, gene, li)
                    )
            for xi, x in enumerate(gdef.exemptions.extra_loci):
                self.extra.setdefault((gdef.chromosome, x.position), []).append((gene, xi))
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
        for gene in genes:
            gdef = kb.genes[gene]
            # an SNV is seen by records overlapping it; an indel also by shifted representations nearby
            for loc in gdef.loci:
                margin = 0 if loc.is_snv else NEAR
                spans.setdefault(gdef.chromosome, []).append(
                    (max(1, loc.position - margin), loc.position + len(loc.ref) - 1 + margin))
            for x in gdef.exemptions.extra_loci:
                spans.setdefault(gdef.chromosome, []).append((x.position, x.position))
        # chromosome -> (gene, start, end): the gene's definition positions widened by GENE_MARGIN
        self.gene_spans: dict[str, list[tuple[str, int, int]]] = {}
        # chromosome -> positions reported for context only (they may lie far from their gene's own)
        self.context_positions: dict[str, list[int]] = {}
        for gene in genes:
            gdef = kb.genes[gene]
            self.gene_spans.setdefault(gdef.chromosome, []).append(
                (gene, min(loc.position for loc in gdef.loci) - GENE_MARGIN,
                 max(loc.position + len(loc.ref) for loc in gdef.loci) + GENE_MARGIN))
            self.context_positions.setdefault(gdef.chromosome, []).extend(
                x.position for x in gdef.exemptions.extra_loci)
        # every KB gene's definition span (not only the selected genes'): a reference block is judged by
        # what it covers in the genome, whichever genes this run calls
        self.all_gene_spans: dict[str, list[tuple[str, int, int]]] = {}
        for gene, gdef in kb.genes.items():
            self.all_gene_spans.setdefault(gdef.chromosome, []).append(
                (gene, min(loc.position for loc in gdef.loci), max(loc.position for loc in gdef.loci)))
        self.windows: dict[str, list[tuple[int, int]]] = {}
        for c, v in spans.items():
            merged: list[list[int]] = []
            for lo, hi in sorted(v):
                if merged and lo <= merged[-1][1] + WINDOW_GAP:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            self.windows[c] = [(lo, hi) for lo, hi in merged]

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
