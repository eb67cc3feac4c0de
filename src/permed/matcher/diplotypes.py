"""Pair strand matches into diplotypes and score them (PharmCAT's DiplotypeMatcher semantics)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cmp_to_key

from permed.matcher.match_data import HaplotypeMatch, MatchData
from permed.matcher.names import match_name_cmp, name_key


@dataclass(frozen=True, slots=True)
class DiplotypeMatch:
    hap1: HaplotypeMatch
    hap2: HaplotypeMatch | None  # None for a haploid call
    score: int
    sequence_pairs: tuple[tuple, ...] = ()

    @property
    def name(self) -> str:
        if self.hap2 is None:
            return self.hap1.name
        return f"{self.hap1.name}/{self.hap2.name}"


def _match_cmp(data: MatchData, a: HaplotypeMatch, b: HaplotypeMatch) -> int:
    c = match_name_cmp(a.name, b.name)
    if c:
        return c
    sa = sorted(data.sequence_text(s) for s in a.sequences)
    sb = sorted(data.sequence_text(s) for s in b.sequences)
    if len(sa) != len(sb):
        return -1 if len(sa) < len(sb) else 1
    return (sa > sb) - (sa < sb)


def make_diplotype(data: MatchData, m1: HaplotypeMatch, m2: HaplotypeMatch | None, score: int | None = None,
                   pairs: tuple = ()) -> DiplotypeMatch:
    """Diplotype with its two haplotypes in output order; default score = sum of haplotype scores."""
    if m2 is not None and _match_cmp(data, m2, m1) < 0:
        m1, m2 = m2, m1
    if score is None:
        score = m1.haplotype.score + (m2.haplotype.score if m2 is not None else 0)
    return DiplotypeMatch(m1, m2, score, pairs)


def sort_diplotypes(data: MatchData, dips: list[DiplotypeMatch]) -> list[DiplotypeMatch]:
    """Highest score first, then by haplotype 1, then haplotype 2; identical entries collapse."""

    def cmp(x: DiplotypeMatch, y: DiplotypeMatch) -> int:
        if x.score != y.score:
            return -1 if x.score > y.score else 1
        c = _match_cmp(data, x.hap1, y.hap1)
        if c:
            return c
        if x.hap2 is None or y.hap2 is None:
            return (x.hap2 is not None) - (y.hap2 is not None)
        return _match_cmp(data, x.hap2, y.hap2)

    out: list[DiplotypeMatch] = []
    seen: set = set()
    for d in sorted(dips, key=cmp_to_key(cmp)):
        # identical = same score, names and strand sequences (PharmCAT keeps same-named pairs on other strands)
        ident = (d.score, d.hap1.name, d.hap1.sequences, d.hap2.name if d.hap2 else None,
                 d.hap2.sequences if d.hap2 else None)
        if ident not in seen:
            seen.add(ident)
            out.append(d)
    return out


def _complementary(data: MatchData, s1: tuple, s2: tuple) -> bool:
    for a, x, y in zip(data.alleles, s1, s2):
        if a.homozygous != (x == y):
            return False
    return True


def _homozygous_pairs(data: MatchData, matches: list[HaplotypeMatch]) -> list[tuple]:
    seq = next(iter(data.permutations))
    if len(matches) == 1:
        m = matches[0]
        if data.is_haploid:
            return [(m, None, ((seq,),))]
        return [(m, m, ((seq, seq),))]
    return [(matches[i], matches[j], ((seq, seq),)) for i in range(len(matches)) for j in range(i, len(matches))]


def _heterozygous_pairs(data: MatchData, matches: list[HaplotypeMatch], combinations: bool) -> list[tuple]:
    by_name: dict[str, list[HaplotypeMatch]] = {}
    for m in matches:
        by_name.setdefault(m.name, []).append(m)
    names = sorted(by_name, key=name_key)
    out = []
    for i, n1 in enumerate(names):
        for n2 in names[i:]:
            ms1, ms2 = by_name[n1], by_name[n2]
            if n1 == n2:
                if len(ms1) == 1:
                    if len(ms1[0].sequences) == 1:
                        continue  # one strand only: cannot be homozygous
                elif combinations and len(ms1) == 2 and ms1[0].haplotype.is_combination:
                    ordered = sorted(ms1, key=cmp_to_key(lambda a, b: _match_cmp(data, a, b)))
                    ms1, ms2 = [ordered[1]], [ordered[0]]
            for m1 in ms1:
                for m2 in ms2:
                    pairs = tuple(
                        (s1, s2)
                        for s1 in sorted(m1.sequences, key=data.sequence_text)
                        for s2 in sorted(m2.sequences, key=data.sequence_text)
                        if _complementary(data, s1, s2)
                    )
                    if pairs:
                        out.append((m1, m2, pairs))
    return out


def _strand_score(data: MatchData, m: HaplotypeMatch, seqs: tuple) -> int:
    hap = m.haplotype
    if not hap.wobbles:
        return hap.score
    used = m.sequences if len(m.sequences) == 1 else m.sequences.intersection(seqs)
    score = hap.score
    for pos in hap.wobbles:
        i = data.index_of[pos]
        ref = data.positions[i].ref
        if all(s[i] == ref for s in used):
            score -= 1  # a wobble position only counts when the sample actually carries the variant
    return score


def _pair_score(data: MatchData, m1: HaplotypeMatch, m2: HaplotypeMatch | None, pair: tuple) -> int:
    if m2 is None:
        return _strand_score(data, m1, pair)
    if m1.name == m2.name:
        return _strand_score(data, m1, (pair[0],)) + _strand_score(data, m2, (pair[1],))
    return _strand_score(data, m1, pair) + _strand_score(data, m2, pair)


def pair_haplotypes(data: MatchData, matches: list[HaplotypeMatch], *, combinations: bool) -> list[DiplotypeMatch]:
    """All diplotypes explaining the sample: pairs of strand matches on complementary strands."""
    if not matches:
        return []
    if len(data.permutations) == 1:
        raw = _homozygous_pairs(data, matches)
    else:
        raw = _heterozygous_pairs(data, matches, combinations)
    dips = []
    for m1, m2, pairs in raw:
        if combinations:
            dips.append(make_diplotype(data, m1, m2, pairs=pairs))
        else:
            best = max(_pair_score(data, m1, m2, p) for p in pairs)
            dips.append(make_diplotype(data, m1, m2, score=max(best, 0), pairs=pairs))
    return sort_diplotypes(data, dips)


def top_scoring(dips: list[DiplotypeMatch]) -> list[DiplotypeMatch]:
    if len(dips) <= 1:
        return dips
    top = dips[0].score
    return [d for d in dips if d.score == top]
