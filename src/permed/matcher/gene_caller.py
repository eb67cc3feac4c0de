"""Call one gene from one sample's alleles: PharmCAT's named-allele-matcher decision flow.

* standard genes: exact diplotypes with definitions reference-filled; combinations/partials only
  in research mode, and only when no exact call exists;
* lowest-function genes (DPYD, RYR1): exact diplotypes when (effectively) phased, else combination
  diplotypes when phase is known, else the list of alleles found (the phenotype then uses the two
  lowest-function ones); DPYD HapB3 handled from its intronic and exonic variants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from permed.kb.model import GeneDefinition
from permed.kb.policy import LOWEST_FUNCTION_GENES
from permed.matcher.alleles import SampleAllele
from permed.matcher.combinations import combination_matches, component_names
from permed.matcher.diplotypes import DiplotypeMatch, pair_haplotypes, top_scoring
from permed.matcher.hapb3 import HAPB3_NAMES, REFERENCE, HapB3Caller
from permed.matcher.match_data import HaplotypeMatch, MatchData, build_match_data

Status = Literal["called", "no_data", "uncallable"]


@dataclass(frozen=True)
class MatchOptions:
    find_combinations: bool = False
    top_candidate_only: bool = True
    use_exemptions: bool = True


@dataclass
class GeneResult:
    gene: str
    status: Status
    data: MatchData
    diplotypes: list[DiplotypeMatch] = field(default_factory=list)
    haplotypes: list[HaplotypeMatch] = field(default_factory=list)
    warnings: dict[str, str] = field(default_factory=dict)


class GeneCaller:
    def __init__(self, gdef: GeneDefinition, options: MatchOptions):
        self.gdef = gdef
        self.options = options
        ex = gdef.exemptions if options.use_exemptions else None
        self.required = frozenset(ex.required_positions) if ex else frozenset()
        self.priorities = ex.unphased_priorities if ex else ()
        self.ignored = frozenset(ex.ignored_alleles) if ex else frozenset()
        self.amp1 = frozenset(ex.amp1_positions) if ex else frozenset()

    # ---- helpers ---------------------------------------------------------------------------
    def _data(self, sample, assume_reference: bool, combos: bool, exclude=frozenset()) -> MatchData:
        return build_match_data(
            self.gdef, sample, assume_reference=assume_reference, find_combinations=combos,
            exclude=exclude, ignored_alleles=self.ignored,
        )

    def _result(self, data: MatchData, dips=(), haps=(), warnings=None) -> GeneResult:
        status: Status = "called" if (dips or haps) else "uncallable"
        if not data.alleles:
            status = "no_data"
        warnings = dict(warnings or {})
        amp1 = [f"{self.gdef.chromosome}:{loc.position}" for loc in data.missing if loc.position in self.amp1]
        if amp1 and data.alleles:
            s = "s" if len(amp1) > 1 else ""
            warnings["missing-amp1-position"] = (
                f"Missing variant{s} that AMP recommends testing (Tier 1): {', '.join(amp1)}. "
                "See https://www.clinpgx.org/ampAllelesToTest for details."
            )
        return GeneResult(self.gdef.gene, status, data, list(dips), list(haps), warnings)

    def _missing_required(self, data: MatchData) -> GeneResult | None:
        missing = [f"{self.gdef.chromosome}:{loc.position}" for loc in data.missing if loc.position in self.required]
        if not missing:
            return None
        s = "s" if len(missing) > 1 else ""
        msg = f"Cannot call {self.gdef.gene} - missing required variant{s} ({', '.join(missing)})"
        return self._result(data, warnings={"missing-required-position": msg})

    def _diplotypes(self, data: MatchData, top_only: bool) -> list[DiplotypeMatch]:
        dips = pair_haplotypes(data, data.compare_permutations(), combinations=False)
        priority_mode = not data.effectively_phased and bool(self.priorities)
        if top_only and not priority_mode:
            dips = top_scoring(dips)
        return dips

    def _apply_priorities(self, res: GeneResult) -> GeneResult:
        if len(res.diplotypes) > 1 and not res.data.effectively_phased and self.priorities:
            names = {d.name for d in res.diplotypes}
            for p in self.priorities:
                if names.issuperset(p.diplotypes):
                    pick = next(d for d in res.diplotypes if d.name == p.pick)
                    res.diplotypes = [pick]
                    res.warnings["unphased-priority"] = (
                        f"Unphased {res.gene} variants allow several calls ({', '.join(p.diplotypes)}); "
                        f"{p.pick} is reported as the most frequent (PharmCAT unphased priority)."
                    )
                    break
        return res

    # ---- entry point -----------------------------------------------------------------------
    def call(self, sample: dict[int, SampleAllele]) -> GeneResult:
        if self.gdef.gene in LOWEST_FUNCTION_GENES:
            return self._call_lowest_function(sample)
        return self._apply_priorities(self._call_standard(sample))

    def _call_standard(self, sample) -> GeneResult:
        data = self._data(sample, True, False)
        if not data.alleles:
            return self._result(data)
        if (res := self._missing_required(data)) is not None:
            return res
        if data.has_partial_missing_alleles:
            return self._call_combination(sample) if self.options.find_combinations else self._result(data)
        # research mode keeps every exact diplotype (PharmCAT only trims to top scores otherwise)
        dips = self._diplotypes(data, self.options.top_candidate_only and not self.options.find_combinations)
        if not dips and self.options.find_combinations:
            return self._call_combination(sample)
        return self._result(data, dips)

    def _call_combination(self, sample) -> GeneResult:
        data = self._data(sample, False, True)
        if not data.alleles:
            return self._result(data)
        dips = pair_haplotypes(data, combination_matches(data, find_partials=True), combinations=True)
        return self._result(data, dips)

    def _combo_dips(self, data: MatchData, partials: bool) -> list[DiplotypeMatch]:
        return pair_haplotypes(data, combination_matches(data, find_partials=partials), combinations=True)

    def _call_lowest_function(self, sample) -> GeneResult:
        gene = self.gdef.gene
        orig = self._data(sample, True, False)
        if not orig.alleles:
            return self._result(orig)
        if (res := self._missing_required(orig)) is not None:
            return res
        hapb3 = HapB3Caller(sample, orig) if gene == "DPYD" else None
        with_hapb3 = hapb3 is not None and hapb3.has_hapb3_variants
        no_hapb3 = HAPB3_NAMES if hapb3 is not None else frozenset()
        working = self._data(sample, True, False, HAPB3_NAMES) if with_hapb3 else orig

        def merged(dips, fix=False):
            merger = self._data(sample, False, False)
            if fix:
                dips = hapb3.fix_partials(merger, dips)
            return self._result(merger, hapb3.merge_phased(merger, dips), warnings=hapb3.warnings)

        def reference_plus_hapb3():
            merger = self._data(sample, False, False)
            return self._result(merger, hapb3.add_to_reference(merger), warnings=hapb3.warnings)

        if orig.effectively_phased:
            dips = pair_haplotypes(working, working.compare_permutations(), combinations=False)
            if with_hapb3:
                if dips:
                    return merged(dips)
                if not hapb3.has_other_variants:
                    return reference_plus_hapb3()
            if dips:
                return self._result(working, dips)

        if orig.effectively_phased or orig.uses_phase_sets:
            combo = self._data(sample, False, True, HAPB3_NAMES if with_hapb3 else frozenset())
            dips = self._combo_dips(combo, partials=True)
            if with_hapb3:
                if dips:
                    return merged(dips, fix=True)
                if not hapb3.has_other_variants:
                    return reference_plus_hapb3()
            if dips:
                return self._result(combo, dips)

        combo = self._data(sample, False, True, no_hapb3)
        combo_dips = self._combo_dips(combo, partials=False)
        if combo_dips and (orig.effectively_phased or combo.uses_phase_sets):
            if with_hapb3:
                merger = self._data(sample, False, True)
                return self._result(merger, hapb3.merge_phased(merger, combo_dips), warnings=hapb3.warnings)
            return self._result(combo, combo_dips)

        haps = self._lowest_function_haplotypes(combo, combo_dips, hapb3)
        return self._result(orig, haps=haps, warnings=hapb3.warnings if hapb3 else None)

    @staticmethod
    def _lowest_function_haplotypes(combo: MatchData, dips: list[DiplotypeMatch],
                                    hapb3: HapB3Caller | None) -> list[HaplotypeMatch]:
        """Unphased lowest-function genes: every allele found, twice when it must be on both strands."""
        if hapb3 is not None:
            hapb3.call_unphased()
        homozygous: set[str] = set()
        for d in dips:
            counts: dict[str, int] = {}
            for m in (d.hap1, d.hap2):
                if m is None:
                    continue
                for n in component_names(m):
                    if not m.haplotype.is_partial or n != REFERENCE:
                        counts[n] = counts.get(n, 0) + 1
            homozygous.update(n for n, c in counts.items() if c > 1)
        if hapb3 is not None and hapb3.present:
            homozygous.discard(REFERENCE)
        matches = combo.compare_permutations()
        n = len(matches) + (hapb3.num_called if hapb3 is not None else 0)
        if n > 2:
            matches = [m for m in matches if m.name != REFERENCE]
        out: list[HaplotypeMatch] = []
        for m in matches:
            out.append(m)
            if m.name in homozygous:
                out.append(m)
                homozygous.discard(m.name)
        if hapb3 is not None:
            out.extend(hapb3.unphased_matches())
        return out
