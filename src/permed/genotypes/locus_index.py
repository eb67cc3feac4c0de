"""Where the selected genes' definition positions are, for fast filtering of VCF records."""

from __future__ import annotations

import bisect

from permed.kb.model import KnowledgeBase

NEAR = 100  # how far from an indel locus a differently-represented record may start


class LocusIndex:
    """Where the selected genes' definition positions are, for fast record filtering."""

    def __init__(self, kb: KnowledgeBase, genes: list[str]):
        self.exact: dict[tuple[str, int], list[tuple[str, int]]] = {}
        self.indel: dict[str, list[tuple[int, int, str, int]]] = {}
        self.snv: dict[str, list[tuple[int, str, int]]] = {}
        self.extra: dict[tuple[str, int], list[tuple[str, int]]] = {}
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
