"""Combination and partial haplotypes (research mode, and the lowest-function genes).

A strand that carries the defining variants of several named alleles is called as their
combination ("[*6 + *14]"); variants that no named allele on the strand explains are appended
as partials named by genomic HGVS ("[*17 + g.94781859G>A]").
"""

from __future__ import annotations

from permed.matcher.alleles import Haplotype, allele_matches
from permed.matcher.match_data import HaplotypeMatch, MatchData
from permed.matcher.names import COMBINATION_JOINER, match_name_key, name_key


def _carries(hap: Haplotype, data: MatchData, seq: tuple) -> bool:
    """Whether a strand carries every allele this named allele itself defines."""
    return all(allele_matches(hap.alleles[data.index_of[p]], seq[data.index_of[p]] or None) for p in hap.core)


def _viable_combinations(covered: list[Haplotype]) -> list[list[Haplotype]]:
    """Group strand-compatible named alleles greedily, largest first (PharmCAT's rule)."""
    ordered = sorted(covered, key=lambda h: (-len(h.core), h.name))
    combos: list[list[Haplotype]] = []
    for hap in ordered:
        added = False
        overlap_count = 0
        for combo in combos:
            overlaps = False
            for existing in combo:
                if existing.core & hap.core:
                    overlaps = True
                    # same-size overlaps usually come from a missing position: not a real conflict
                    if len(existing.core) != len(hap.core):
                        overlap_count += 1
                        break
            if not overlaps:
                combo.append(hap)
                added = True
        if not added and overlap_count == 0:
            combos.append([hap])
    return combos


def build_combination(data: MatchData, components: list[Haplotype], partials: dict[int, str]) -> Haplotype:
    """A haplotype made of several named alleles and/or partial variants on one strand."""
    comps = sorted(components, key=lambda h: (name_key(h.name), h.id or ""))
    alleles: list[str | None] = [None] * len(data.positions)
    for h in comps:
        for i, a in enumerate(h.alleles):
            if alleles[i] is None:
                alleles[i] = a
    parts = [h.name for h in comps if not h.reference]
    parts += [partials[p] for p in sorted(partials)]
    name = COMBINATION_JOINER.join(parts)
    if len(parts) > 1:
        name = f"[{name}]"
    return Haplotype(
        name=name,
        id=COMBINATION_JOINER.join(h.id or "" for h in comps),
        reference=False,
        alleles=tuple(alleles),
        score=sum(a is not None for a in alleles),
        core=frozenset().union(*(h.core for h in comps)),
        missing=frozenset().union(*(h.missing for h in comps)),
        components=tuple(h.name for h in comps),
        partials=tuple(sorted(partials.items())),
        combination=True,
    )


def combination_matches(data: MatchData, *, find_partials: bool) -> list[HaplotypeMatch]:
    """Strand matches allowing combinations (and partials when asked)."""
    reference = next(h for h in data.haplotypes if h.reference)
    candidates = [h for h in data.haplotypes if not h.reference]
    found: dict[tuple[str, str], HaplotypeMatch] = {}

    for seq in data.permutations:
        var_positions = [loc.position for loc, a in zip(data.positions, seq) if a != loc.ref]
        covered = [h for h in candidates if _carries(h, data, seq)]

        def partial_names(haps: list[Haplotype], seq=seq, var_positions=var_positions) -> dict[int, str]:
            if not find_partials:
                return {}
            explained = frozenset().union(*(h.core for h in haps)) if haps else frozenset()
            return {
                p: data.positions[data.index_of[p]].hgvs_for(seq[data.index_of[p]] or ".")
                for p in var_positions
                if p not in explained
            }

        all_partials = partial_names(covered)
        if len(covered) <= 1:
            hap = covered[0] if covered else reference
            if not all_partials:
                results = [hap]
            else:
                results = [build_combination(data, [hap], all_partials)]
        else:
            results = []
            for combo in _viable_combinations(covered):
                partials = partial_names(combo)
                results.append(build_combination(data, combo, partials))
        for hap in results:
            key = (hap.name, data.sequence_text(seq))
            found.setdefault(key, HaplotypeMatch(hap, frozenset([seq])))
    return sorted(found.values(), key=lambda m: (match_name_key(m.name), data.sequence_text(next(iter(m.sequences)))))


def component_names(m: HaplotypeMatch) -> list[str]:
    """Named alleles (and partial names) making up a strand match."""
    hap = m.haplotype
    if hap.is_combination:
        return [*hap.components, *(p for _, p in hap.partials)]
    return [hap.name]
