"""DPYD HapB3: called from its intronic tag variant (c.1129-5923C>G) and exonic variant (c.1236G>A).

CPIC defines HapB3 by both variants; the intronic one is causal, so it decides when the two
disagree, and a call made from the exonic variant alone is flagged.  Logic follows PharmCAT 3.x.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from permed.matcher.alleles import Haplotype, SampleAllele
from permed.matcher.combinations import build_combination
from permed.matcher.diplotypes import DiplotypeMatch, make_diplotype, sort_diplotypes
from permed.matcher.match_data import HaplotypeMatch, MatchData

HAPB3_ALLELE = "c.1129-5923C>G, c.1236G>A (HapB3)"
HAPB3_INTRONIC_ALLELE = "c.1129-5923C>G"
HAPB3_NAMES = frozenset({HAPB3_ALLELE, HAPB3_INTRONIC_ALLELE})
EXONIC_POSITION = 97573863  # rs56038477, c.1236G>A
INTRONIC_POSITION = 97579893  # rs75017182, c.1129-5923C>G
MSG_EXONIC_ONLY = "pcat-dpyd-hapB3-exonic-only"
MSG_MISMATCH = "pcat-dpyd-hapB3-intronic-mismatch-exonic"
REFERENCE = "Reference"

MESSAGES = {
    MSG_EXONIC_ONLY: "HapB3 was called from the exonic variant c.1236G>A (rs56038477) alone; the intronic "
    "variant c.1129-5923C>G (rs75017182) that defines HapB3 was not available.",
    MSG_MISMATCH: "The HapB3 exonic variant c.1236G>A (rs56038477) and intronic variant c.1129-5923C>G "
    "(rs75017182) disagree; the intronic variant was used.",
}


def _has_non_ref(a: SampleAllele | None) -> bool:
    return a is not None and bool(a.gt.replace("|", "").replace("/", "").replace("0", ""))


@dataclass
class HapB3Caller:
    sample: dict[int, SampleAllele]
    origin: MatchData
    warnings: dict[str, str] = field(default_factory=dict)
    intron_call: list[str] | None = None
    exon_call: list[str] | None = None
    num_called: int = 0

    @property
    def has_hapb3_variants(self) -> bool:
        return any(_has_non_ref(self.sample.get(p)) for p in (EXONIC_POSITION, INTRONIC_POSITION))

    @property
    def has_other_variants(self) -> bool:
        return any(_has_non_ref(a) for p, a in self.sample.items() if p not in (EXONIC_POSITION, INTRONIC_POSITION))

    @property
    def present(self) -> bool:
        return self.num_called > 0

    # ---- unphased --------------------------------------------------------------------------
    def _strand_calls(self, a: SampleAllele, expected: str) -> list[str]:
        out: list[str] = []
        count = 0
        if a.allele1 is None:
            if a.phased:
                out.append(".")
        else:
            out.append("1" if a.allele1 == expected else "0")
            count += 1
        if a.allele2 is not None:
            out.append("1" if a.allele2 == expected else "0")
            count += 1
        if count < 2:
            self.warnings["warn.alleleCount"] = f"Only found {count} allele for {a.locus.rsid}"
        return out

    def _phased_strand(self, intronic: list[str], exonic: list[str], idx: int) -> None:
        ic = intronic[idx] if len(intronic) > idx else "."
        ec = exonic[idx] if len(exonic) > idx else "."
        self.intron_call = self.intron_call if self.intron_call is not None else []
        self.exon_call = self.exon_call if self.exon_call is not None else []
        if ic == "." and ec == ".":
            self.intron_call.append(".")
            self.exon_call.append(".")
        if ic == "0":
            self.intron_call.append("0")
            self.exon_call.append("0")
            if ec != "0":
                self.warnings[MSG_MISMATCH] = MESSAGES[MSG_MISMATCH]
        elif ic == "1":
            if ec == "0":
                self.intron_call.append("1")
                self.exon_call.append("0")
            elif ec == ".":
                self.intron_call.append("1")
                self.exon_call.append(".")
            else:
                self.intron_call.append("0")
                self.exon_call.append("1")
        else:
            self.intron_call.append(".")
            self.exon_call.append(".")

    def call_unphased(self) -> None:
        """Count HapB3 and intronic-only HapB3 alleles when strands cannot be assigned."""
        data = self.origin
        phased = data.effectively_phased
        if not phased and data.uses_phase_sets:
            eps, ips = data.phase_set(EXONIC_POSITION), data.phase_set(INTRONIC_POSITION)
            if eps is not None and eps == ips:
                phased = True
        hapb3 = next(na for na in data.definition.alleles if na.name == HAPB3_ALLELE)
        pidx = data.definition.position_index
        exon_expected = hapb3.defined[pidx[EXONIC_POSITION]]
        intron_expected = hapb3.defined[pidx[INTRONIC_POSITION]]
        exon = self.sample.get(EXONIC_POSITION)
        intron = self.sample.get(INTRONIC_POSITION)
        if exon is not None or intron is not None:
            if intron is not None:
                ih = self._strand_calls(intron, intron_expected)
                n_i = sum(c != "." for c in ih)
                if exon is None:
                    self.intron_call = ih
                else:
                    eh = self._strand_calls(exon, exon_expected)
                    n_e = sum(c != "." for c in eh)
                    if n_i == 0:
                        self.exon_call = eh
                        if n_e != 0:
                            self.warnings[MSG_MISMATCH] = MESSAGES[MSG_MISMATCH]
                    elif n_i == 1:
                        if n_e == 0:
                            self.intron_call = ih
                        elif phased:
                            self._phased_strand(ih, eh, 0)
                            self._phased_strand(ih, eh, 1)
                    elif n_i == 2:
                        if n_e == 0:
                            self.intron_call = ih
                        elif phased:
                            self._phased_strand(ih, eh, 0)
                            self._phased_strand(ih, eh, 1)
                        elif n_e == 2:
                            self.intron_call, self.exon_call = [], []
                            ni = ih.count("1")
                            ne = eh.count("1")
                            if ni == ne:
                                self.exon_call.extend(["1"] * ni)
                            elif ni > ne:
                                self.intron_call.append("1")
                                if ne == 1:
                                    self.exon_call.append("1")
                                elif ni == 2:
                                    self.intron_call.append("1")
                            else:
                                if ni == 1:
                                    self.exon_call.append("1")
                                self.warnings[MSG_MISMATCH] = MESSAGES[MSG_MISMATCH]
            else:
                self.exon_call = self._strand_calls(exon, exon_expected)
                if sum(c != "." for c in self.exon_call) == 2:
                    self.warnings[MSG_EXONIC_ONLY] = MESSAGES[MSG_EXONIC_ONLY]
        if self.intron_call is not None:
            self.num_called += self.intron_call.count("1")
        if self.exon_call is not None:
            self.num_called += self.exon_call.count("1")

    def unphased_matches(self) -> list[HaplotypeMatch]:
        out = []
        for calls, name in ((self.exon_call, HAPB3_ALLELE), (self.intron_call, HAPB3_INTRONIC_ALLELE)):
            if calls:
                hap = _find(self.origin, name)
                out.extend(HaplotypeMatch(hap, frozenset()) for c in calls if c == "1")
        return out

    # ---- phased ----------------------------------------------------------------------------
    def _phased_hap(self, seq: tuple, data: MatchData, base: HaplotypeMatch | None) -> HaplotypeMatch:
        allele = seq[data.index_of[INTRONIC_POSITION]] if INTRONIC_POSITION in data.index_of else None
        has_intron_locus = allele is not None and allele != "."
        has_intron = has_intron_locus and allele != data.positions[data.index_of[INTRONIC_POSITION]].ref
        allele = seq[data.index_of[EXONIC_POSITION]] if EXONIC_POSITION in data.index_of else None
        has_exon = (
            allele is not None and allele != "." and allele != data.positions[data.index_of[EXONIC_POSITION]].ref
        )
        if has_intron:
            return self._build(data, _find(data, HAPB3_ALLELE if has_exon else HAPB3_INTRONIC_ALLELE), base)
        if has_intron_locus:
            if has_exon:
                self.warnings[MSG_MISMATCH] = MESSAGES[MSG_MISMATCH]
        elif has_exon:
            self.warnings[MSG_EXONIC_ONLY] = MESSAGES[MSG_EXONIC_ONLY]
            return self._build(data, _find(data, HAPB3_ALLELE), base)
        return self._build(data, _find(data, REFERENCE), base)

    @staticmethod
    def _build(data: MatchData, hapb3: Haplotype, base: HaplotypeMatch | None) -> HaplotypeMatch:
        if base is None:
            return HaplotypeMatch(hapb3, frozenset())
        if hapb3.name == REFERENCE:
            return base
        seq = min(base.sequences, key=data.sequence_text)
        if base.haplotype.is_combination:
            comps = [hapb3] + [_find(data, c) for c in base.haplotype.components]
            return HaplotypeMatch(build_combination(data, comps, {}), frozenset([seq]))
        if base.name == REFERENCE:
            return HaplotypeMatch(hapb3, frozenset())
        comps = [hapb3, _find(data, base.name)]
        return HaplotypeMatch(build_combination(data, comps, {}), frozenset([seq]))

    def merge_phased(self, data: MatchData, dips: list[DiplotypeMatch]) -> list[DiplotypeMatch]:
        """Put the HapB3 call back onto the strands of phased diplotypes."""
        if not self.has_hapb3_variants:
            return dips
        out = []
        for d in dips:
            h1 = self._phased_hap(min(d.hap1.sequences, key=data.sequence_text), data, d.hap1)
            h2 = self._phased_hap(min(d.hap2.sequences, key=data.sequence_text), data, d.hap2)
            out.append(make_diplotype(data, h1, h2))
        return sort_diplotypes(data, out)

    def add_to_reference(self, data: MatchData) -> list[DiplotypeMatch]:
        """Strands that are reference everywhere except (possibly) HapB3."""
        perms = sorted(data.permutations, key=data.sequence_text)
        haps = [self._phased_hap(seq, data, None) for seq in perms]
        if len(haps) == 2:
            return [make_diplotype(data, haps[0], haps[1])]
        return [make_diplotype(data, haps[0], haps[0])]

    def fix_partials(self, data: MatchData, dips: list[DiplotypeMatch]) -> list[DiplotypeMatch]:
        """Combination calling without the HapB3 alleles reports HapB3 variants as partials: drop them."""
        out = []
        for d in dips:
            h1, h2 = _strip_hapb3_partials(data, d.hap1), _strip_hapb3_partials(data, d.hap2)
            out.append(make_diplotype(data, h1, h2) if (h1 is not d.hap1 or h2 is not d.hap2) else d)
        return sort_diplotypes(data, out)


def _strip_hapb3_partials(data: MatchData, m: HaplotypeMatch) -> HaplotypeMatch:
    hap = m.haplotype
    hapb3_partials = {f"g.{INTRONIC_POSITION}G>C", f"g.{EXONIC_POSITION}C>T"}
    if not (hap.is_combination and hap.partials and any(h in hap.name for h in hapb3_partials)):
        return m
    partials = {p: n for p, n in hap.partials if p not in (EXONIC_POSITION, INTRONIC_POSITION)}
    comps = [_find(data, c) for c in hap.components]
    if not partials and len(comps) == 1 and comps[0].name == REFERENCE:
        return HaplotypeMatch(comps[0], m.sequences)
    return HaplotypeMatch(build_combination(data, comps, partials), m.sequences)


def _find(data: MatchData, name: str) -> Haplotype:
    for h in data.haplotypes:
        if h.name == name:
            return h
    raise LookupError(f"DPYD definition lacks allele {name!r}")
