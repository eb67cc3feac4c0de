"""Working data for calling one gene in one genotype pattern (PharmCAT's MatchData semantics).

It holds the sample's alleles at the gene's definition positions, the named alleles restricted
to the positions actually observed, and every strand sequence ("permutation") consistent with
the sample's phasing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from permed.kb.model import GeneDefinition, Locus
from permed.matcher.alleles import WOBBLES, Haplotype, SampleAllele, allele_matches
from permed.matcher.names import match_name_key, name_key

Sequence = tuple  # one strand: alleles aligned with MatchData.positions


@dataclass(frozen=True, slots=True)
class HaplotypeMatch:
    """A haplotype (plain, combination or partial) and the strand sequences it matched."""

    haplotype: Haplotype
    sequences: frozenset

    @property
    def name(self) -> str:
        return self.haplotype.name


def _sequence_text(positions: tuple[int, ...], seq: Sequence) -> str:
    return "".join(f"{p}:{a};" for p, a in sorted(zip(positions, seq)))


@dataclass
class MatchData:
    gene: str
    definition: GeneDefinition
    positions: tuple[Locus, ...]
    alleles: tuple[SampleAllele, ...]
    missing: tuple[Locus, ...]
    haplotypes: list[Haplotype] = field(default_factory=list)
    permutations: frozenset = frozenset()
    hapset: HaplotypeSet | None = None

    # ---- sample facts -------------------------------------------------------------------
    @cached_property
    def position_numbers(self) -> tuple[int, ...]:
        return tuple(loc.position for loc in self.positions)

    @cached_property
    def index_of(self) -> dict[int, int]:
        return {p: i for i, p in enumerate(self.position_numbers)}

    @property
    def num_sample_alleles(self) -> int:
        return len(self.alleles)

    @cached_property
    def is_haploid(self) -> bool:
        n = len(self.alleles)
        return n > 0 and (
            sum(a.allele1 is None for a in self.alleles) == n or sum(a.allele2 is None for a in self.alleles) == n
        )

    @cached_property
    def is_phased(self) -> bool:
        return all(a.phased for a in self.alleles)

    @cached_property
    def is_homozygous(self) -> bool:
        return self.is_haploid or all(a.homozygous for a in self.alleles)

    @property
    def effectively_phased(self) -> bool:
        return len(self.permutations) <= 2

    @cached_property
    def uses_phase_sets(self) -> bool:
        return any(a.phased and a.phase_set is not None for a in self.alleles)

    def phase_set(self, position: int) -> int | None:
        a = self.alleles[self.index_of[position]] if position in self.index_of else None
        if a is None or not a.phased or not self.uses_phase_sets:
            return None
        return a.phase_set if a.phase_set is not None else -(2**31)

    @cached_property
    def has_partial_missing_alleles(self) -> bool:
        return any("." in a.vcf_call for a in self.alleles)

    @cached_property
    def undocumented_positions(self) -> tuple[int, ...]:
        return tuple(a.position for a in self.alleles if a.undocumented)

    def sequence_text(self, seq: Sequence) -> str:
        """A strand as PharmCAT writes it ("pos:allele;" by position): its sort key, computed once per strand."""
        text = self._texts.get(seq)
        if text is None:
            text = self._texts[seq] = _sequence_text(self.position_numbers, seq)
        return text

    @cached_property
    def _texts(self) -> dict[Sequence, str]:
        return {}

    # ---- matching ------------------------------------------------------------------------
    def compare_permutations(self) -> list[HaplotypeMatch]:
        """Haplotypes matching at least one strand sequence, in name order."""
        perms = sorted(self.permutations, key=self.sequence_text)
        hs = self.hapset
        hits_by_hap: list[list] = [[] for _ in self.haplotypes]
        m = hs.matrix
        for s in perms:
            # the strand's own width: a longer allele (an undocumented insertion at an SNV) must not be cut
            # to the definitions' width, where "AT" would read as "A"
            seq = np.array(["\x00" if a is None else a for a in s], dtype=str)
            ok = (m == "") | (m == seq)
            for r, c, code in hs.wobble_cells:
                ok[r, c] = allele_matches(code, s[c])
            for r in np.flatnonzero(ok.all(axis=1)):
                hits_by_hap[r].append(s)
        matches = [HaplotypeMatch(h, frozenset(hits)) for h, hits in zip(self.haplotypes, hits_by_hap) if hits]
        matches.sort(key=lambda m: match_name_key(m.name))
        return matches


def generate_permutations(alleles: tuple[SampleAllele, ...]) -> frozenset:
    """Every strand sequence consistent with the sample's phasing.

    Phased (or homozygous) positions follow their strand; a phase set branches once and is then
    followed consistently within the set; unphased heterozygous positions branch freely.
    """
    if not alleles:
        return frozenset()
    s1_blank = all(a.allele1 is None for a in alleles)
    s2_blank = all(a.allele2 is None for a in alleles)
    order = sorted(range(len(alleles)), key=lambda i: alleles[i].position)
    n = len(alleles)
    out: set[tuple] = set()

    def walk(k: int, first: bool, sofar: list, ps: dict) -> None:
        if k == n:
            out.add(tuple(sofar))
            return
        i = order[k]
        a = alleles[i]
        if a.effectively_phased:
            sofar[i] = a.called1 if first else a.called2
            walk(k + 1, first, sofar, ps)
        elif a.phase_set is not None:
            if a.phase_set in ps:
                sofar[i] = a.called1 if ps[a.phase_set] else a.called2
                walk(k + 1, first, sofar, ps)
            else:
                for choice, val in ((True, a.called1), (False, a.called2)):
                    sofar[i] = val
                    walk(k + 1, first, sofar, {**ps, a.phase_set: choice})
        else:
            for val in (a.called1, a.called2):
                sofar[i] = val
                walk(k + 1, first, sofar, ps)

    # a haploid sample, or one whose every position follows its strand, has one sequence per strand
    follows = all(a.effectively_phased for a in alleles)
    if not s1_blank:
        if follows or s2_blank:
            out.add(tuple(a.called1 for a in alleles))
        else:
            walk(0, True, [None] * n, {})
    if not s2_blank:
        if follows or s1_blank:
            out.add(tuple(a.called2 for a in alleles))
        else:
            walk(0, False, [None] * n, {})
    return frozenset(out)


@dataclass(frozen=True)
class HaplotypeSet:
    """Named alleles restricted to one set of observed positions, plus a matrix for vectorised matching."""

    haplotypes: tuple[Haplotype, ...]
    matrix: np.ndarray  # (haplotypes, positions) allele strings; "" = any allele
    wobble_cells: tuple[tuple[int, int, str], ...]  # (hap row, position column, IUPAC code)


_HAPSET_CACHE: dict[tuple, tuple[GeneDefinition, HaplotypeSet]] = {}


def haplotype_set(gdef: GeneDefinition, available_idx: tuple[int, ...], assume_reference: bool,
                  find_combinations: bool, exclude: frozenset[str]) -> HaplotypeSet:
    """Cached `_haplotype_set`: in a cohort most samples share the same observed positions."""
    key = (id(gdef), available_idx, assume_reference, find_combinations, exclude)
    hit = _HAPSET_CACHE.get(key)
    if hit is not None and hit[0] is gdef:
        return hit[1]
    if len(_HAPSET_CACHE) > 4096:
        _HAPSET_CACHE.clear()
    hs = _haplotype_set(gdef, available_idx, assume_reference, find_combinations, exclude)
    _HAPSET_CACHE[key] = (gdef, hs)  # holding gdef keeps its id from being reused
    return hs


@dataclass(frozen=True)
class _DenseDefinitions:
    """A gene's named alleles as arrays (alleles x loci), in matcher order: built once per definition,
    so that restricting them to a sample's observed positions is array slicing."""

    alleles: tuple  # NamedAllele, sorted by name (PharmCAT's order), then id
    table: np.ndarray  # object: allele string, IUPAC code or None (not defined)
    defined: np.ndarray  # bool
    wobble: np.ndarray  # bool: defined by an IUPAC ambiguity code
    reference_fill: np.ndarray  # object per locus: what a blank means when read as reference
    positions: np.ndarray  # int64 per locus
    scores: np.ndarray  # int: defined positions of each allele

    @classmethod
    def of(cls, gdef: GeneDefinition) -> _DenseDefinitions:
        order = sorted(gdef.alleles, key=lambda na: (name_key(na.name), na.id or ""))
        n, L = len(order), len(gdef.loci)
        table = np.full((n, L), None, dtype=object)
        wobble = np.zeros((n, L), dtype=bool)
        for r, na in enumerate(order):
            for i, a in na.defined.items():
                table[r, i] = a
                wobble[r, i] = a in WOBBLES
        defined = table != None  # noqa: E711 (element-wise comparison)
        ref = gdef.reference_allele
        fill = np.empty(L, dtype=object)
        fill[:] = [loc.ref if ref.defined[i] in WOBBLES else ref.defined[i] for i, loc in enumerate(gdef.loci)]
        return cls(tuple(order), table, defined, wobble, fill,
                   np.array([loc.position for loc in gdef.loci], dtype=np.int64), defined.sum(axis=1))


_DENSE_CACHE: dict[int, tuple[GeneDefinition, _DenseDefinitions]] = {}


def _dense(gdef: GeneDefinition) -> _DenseDefinitions:
    hit = _DENSE_CACHE.get(id(gdef))
    if hit is None or hit[0] is not gdef:
        if len(_DENSE_CACHE) > 256:
            _DENSE_CACHE.clear()
        hit = _DENSE_CACHE[id(gdef)] = (gdef, _DenseDefinitions.of(gdef))  # holding gdef keeps its id unique
    return hit[1]


def _haplotype_set(
    gdef: GeneDefinition,
    available_idx: tuple[int, ...],
    assume_reference: bool,
    find_combinations: bool,
    exclude: frozenset[str],
) -> HaplotypeSet:
    """PharmCAT's marshalling: keep each named allele's definition at the observed positions only,
    re-score when positions are missing, drop alleles left with nothing; optionally read blanks as
    the reference allele. Vectorised over alleles x positions."""
    d = _dense(gdef)
    av = np.array(available_idx, dtype=np.intp)
    absent = np.ones(len(gdef.loci), dtype=bool)
    absent[av] = False
    defined = d.defined[:, av]
    own = d.table[:, av]
    scores = defined.sum(axis=1) if absent.any() else d.scores
    fill = d.reference_fill[av]
    positions = d.positions[av]
    haps: list[Haplotype] = []
    rows = []
    kept = []
    for r, na in enumerate(d.alleles):
        if na.name in exclude or scores[r] == 0:
            continue
        if find_combinations and gdef.gene == "UGT1A1" and "+" in na.name:
            continue  # UGT1A1 "*80+*28"-style alleles are combinations the matcher rebuilds itself
        filled = np.where(defined[r], own[r], fill) if assume_reference and not na.reference else own[r]
        rows.append(filled)
        kept.append(r)
        haps.append(Haplotype(
            name=na.name, id=na.id, reference=na.reference, alleles=tuple(filled.tolist()), score=int(scores[r]),
            core=frozenset(positions[defined[r]].tolist()),
            missing=frozenset(d.positions[absent & d.defined[r]].tolist()),
            wobbles=frozenset(positions[d.wobble[r, av]].tolist()), components=(na.name,),
        ))
    values = np.array(rows, dtype=object).reshape(len(haps), len(av))
    wobbles = d.wobble[kept][:, av]  # a reference fill is never an ambiguity code
    plain = (values != None) & ~wobbles  # noqa: E711 (element-wise comparison)
    texts = values[plain].astype(str)
    width = max(int(np.char.str_len(texts).max()) if texts.size else 1, 1)
    matrix = np.full((len(haps), len(av)), "", dtype=f"<U{width}")
    matrix[plain] = texts
    wobble_cells = tuple((int(r), int(c), values[r, c]) for r, c in np.argwhere(wobbles))
    return HaplotypeSet(tuple(haps), matrix, wobble_cells)


def build_match_data(
    gdef: GeneDefinition,
    sample: dict[int, SampleAllele],
    *,
    assume_reference: bool,
    find_combinations: bool,
    exclude: frozenset[str] = frozenset(),
    ignored_alleles: frozenset[str] = frozenset(),
) -> MatchData:
    """The sample's alleles at the gene's positions and the named alleles restricted to them."""
    available_idx = tuple(i for i, loc in enumerate(gdef.loci) if loc.position in sample)
    avail = set(available_idx)
    missing = tuple(loc for i, loc in enumerate(gdef.loci) if i not in avail)
    positions = tuple(gdef.loci[i] for i in available_idx)
    alleles = tuple(sample[loc.position] for loc in positions)
    data = MatchData(gdef.gene, gdef, positions, alleles, missing)
    if not alleles:
        return data
    hs = haplotype_set(gdef, available_idx, assume_reference, find_combinations, exclude | ignored_alleles)
    data.haplotypes = list(hs.haplotypes)
    data.hapset = hs
    data.permutations = generate_permutations(alleles)
    return data
