"""Diplotype -> phenotype, activity score and lookup keys (PharmCAT 3.1.1 semantics).

Rules by gene kind (facts from the KB's phenotype tables):
* HLA-A/HLA-B: allele presence ("*57:01 positive"), no table;
* activity-score genes (CYP2C9, CYP2D6, DPYD): the lookup key is the activity score; a diplotype
  missing from the table is "Indeterminate" with score "n/a";
* other genes: the lookup key is the phenotype; a diplotype missing from the table is "n/a";
* alleles unknown (uncallable) -> "No Result".
Values given by an outside call are never overwritten.
"""

from __future__ import annotations

import re
from functools import cached_property

from permed.kb.model import GenePhenotypes, KnowledgeBase
from permed.matcher.labels import diplotype_label
from permed.matcher.names import name_key
from permed.phenotype.model import INDETERMINATE, NA, NO_RESULT, UNKNOWN_ALLELE, Diplotype, unspecified

UNASSIGNED_FUNCTION = "Unassigned function"
HLA_ALLELES_OF_INTEREST = {"HLA-A": ("*31:01",), "HLA-B": ("*15:02", "*57:01", "*58:01")}
SINGLE_ALLELE_GENES = frozenset({"G6PD", "MT-RNR1"})
_INTEGER_SCORE = re.compile(r"[>≥]?\d+")
TANDEM_JOINER = " + "
_COPIES = re.compile(r"(\*\d+)[xX](\d+)")


MH_RULE = "malignant-hyperthermia"


def mh_phenotype(functions: list[str | None]) -> str:
    """CPIC RYR1/CACNA1S: one malignant-hyperthermia-associated allele makes the patient susceptible."""
    if any(f and "Malignant Hyperthermia" in f for f in functions):
        return "Malignant Hyperthermia Susceptibility"
    return "Uncertain Susceptibility"


def _format_activity(value: float) -> str:
    return normalize_activity(f"{round(value, 4):g}")


def _function_of_activity(value: float) -> str:
    if value == 0:
        return "No function"
    if value < 1:
        return "Decreased function"
    return "Normal function" if value == 1 else "Increased function"


def normalize_activity(value: str | None) -> str | None:
    """"1" -> "1.0", "≥3" -> "≥3.0"; other values unchanged (PharmCAT's activity normalisation)."""
    if value is None or not value.strip():
        return None
    v = value.strip()
    return v + ".0" if _INTEGER_SCORE.fullmatch(v) else v


def hla_phenotypes(gene: str, alleles: list[str]) -> list[str]:
    return [f"{a} {'positive' if any(a in x for x in alleles) else 'negative'}"
            for a in HLA_ALLELES_OF_INTEREST.get(gene, ())]


class GeneAnnotator:
    """Annotates diplotypes of one gene from the KB's phenotype facts."""

    def __init__(self, kb: KnowledgeBase, gene: str):
        self.gene = gene
        self.table: GenePhenotypes | None = kb.phenotypes.get(gene)
        gdef = kb.genes.get(gene)
        self.reference = gdef.reference_allele.name if gdef else None
        self.n_positions = len(gdef.loci) if gdef else 0
        self.definition_alleles = frozenset(a.name for a in gdef.alleles) if gdef else frozenset()

    @cached_property
    def activity_gene(self) -> bool:
        return self.table is not None and self.table.is_activity_gene

    @cached_property
    def _phenotypes_by_score(self) -> dict[str, list[str]]:
        out: dict[str, set[str]] = {}
        for r in self.table.rows if self.table else ():
            out.setdefault(r.lookup_key, set()).add(r.phenotype)
        return {k: sorted(v) for k, v in out.items()}

    @cached_property
    def _scores_by_phenotype(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for r in self.table.rows if self.table else ():
            if r.activity_score is not None:
                out.setdefault(r.phenotype, set()).add(r.activity_score)
        return out

    def is_known_allele(self, name: str) -> bool:
        if self.gene.startswith("HLA"):
            return True
        t = self.table
        return name in self.definition_alleles or (t is not None and (name in t.functions or name in t.activity))

    def function(self, name: str) -> str | None:
        if self.table is None or name == UNKNOWN_ALLELE:
            return None
        fn = self.table.functions.get(name)
        if fn is None and (derived := self._tandem_activity(name)) is not None:
            return _function_of_activity(derived)
        return fn or UNASSIGNED_FUNCTION

    def activity_value(self, name: str) -> str | None:
        if self.table is None or name == UNKNOWN_ALLELE:
            return None
        value = self.table.activity.get(name)
        if value is None and (derived := self._tandem_activity(name)) is not None:
            return _format_activity(derived)
        return value if value is not None else NA

    def _tandem_activity(self, name: str) -> float | None:
        """CYP2D6 tandem arrangements ("*13 + *1", "*36 + *10x2") missing from the table: the activity
        of a gene copy arrangement is the sum of its parts (CPIC's activity-score convention)."""
        if self.gene != "CYP2D6" or TANDEM_JOINER not in name or self.table is None:
            return None
        total = 0.0
        for part in name.split(TANDEM_JOINER):
            part, copies = part.strip(), 1
            v = self.table.activity.get(part)
            if v is None and (m := _COPIES.fullmatch(part)):
                part, copies = m.group(1), int(m.group(2))  # "*68x2": two copies of *68
                v = self.table.activity.get(part)
            if unspecified(v) or v.startswith(("≥", ">")):
                return None
            total += copies * float(v)
        return total

    def _derived_score(self, alleles: list[str]) -> str | None:
        """Score of an untabled CYP2D6 diplotype that contains a tandem whose parts are all tabled."""
        if self.gene != "CYP2D6" or not any(TANDEM_JOINER in a for a in alleles):
            return None
        values = []
        for a in alleles:
            v = self.activity_value(a)
            if unspecified(v) or v.startswith(("≥", ">")):
                return None
            values.append(float(v))
        score = _format_activity(sum(values))
        return score if score in self._phenotypes_by_score else None

    def label(self, alleles: list[str]) -> str:
        if not alleles:
            return NA
        return diplotype_label(self.gene, alleles[0], alleles[1] if len(alleles) > 1 else None, self.reference)

    def diplotype(self, alleles: list[str], *, phenotype: str | None = None, activity_score: str | None = None,
                  label: str | None = None, inferred_from: list[str] | None = None,
                  combination: bool = False) -> Diplotype:
        """Annotate one diplotype; `phenotype`/`activity_score` come from an outside call."""
        alleles = list(alleles)
        unknown_alleles = not alleles or all(a == UNKNOWN_ALLELE for a in alleles)
        row = None
        if not unknown_alleles and self.table is not None:
            row = self.table.lookup(tuple(sorted(alleles)))
        phenotypes: list[str] = [phenotype] if phenotype else []
        score = normalize_activity(activity_score) if activity_score else None
        lookup: list[str] = []

        if self.gene.startswith("HLA"):
            if not phenotypes and not unknown_alleles:
                phenotypes = hla_phenotypes(self.gene, alleles)
            lookup = list(phenotypes) if phenotypes else [NO_RESULT]
            score = None
        elif self.table is None:
            pass  # no phenotype facts for this gene (e.g. CYP4F2): alleles only
        elif self.activity_gene:
            score_from_outside = score is not None
            if score is None:
                if phenotypes:
                    score = NA
                elif unknown_alleles:
                    score = NO_RESULT
                elif row is None and (derived := self._derived_score(alleles)) is not None:
                    score, score_from_outside = derived, True  # phenotype then follows from the score
                else:
                    score = normalize_activity(row.activity_score) if row and row.activity_score else NA
            if not phenotypes:
                if score_from_outside:
                    phenotypes = self._phenotypes_by_score.get(score, [NA])
                elif unknown_alleles:
                    phenotypes = [NO_RESULT]
                else:
                    phenotypes = [row.phenotype] if row else [INDETERMINATE]
            unknown = unknown_alleles and (not phenotypes or NO_RESULT in phenotypes)
            if score != NA:
                lookup = [score]
            elif unknown:
                lookup = [NO_RESULT]
            else:
                found = set().union(*(self._scores_by_phenotype.get(p, set()) for p in phenotypes))
                lookup = sorted(found) if found else [NA]
        else:
            if not phenotypes:
                if unknown_alleles:
                    phenotypes = [NO_RESULT]
                elif row is None and self.table.rule == MH_RULE:
                    phenotypes = [mh_phenotype([self.function(a) for a in alleles])]
                else:
                    phenotypes = [row.phenotype] if row else [NA]
            unknown = unknown_alleles and NO_RESULT in phenotypes
            lookup = [NO_RESULT] if unknown else list(phenotypes)
            score = None

        if label is None:
            if alleles:
                label = self.label(alleles)
            elif not unspecified(score) and score != NO_RESULT and not phenotypes:
                label = score
            elif phenotypes and not unspecified(score) and score != NO_RESULT:
                label = f"{'/'.join(phenotypes)} ({score})"
            elif phenotypes and NO_RESULT not in phenotypes:
                label = "/".join(phenotypes)
            else:
                label = NA
        return Diplotype(
            gene=self.gene, alleles=alleles, label=label, phenotypes=phenotypes, activity_score=score,
            lookup_keys=lookup,
            functions=[self.function(a) for a in alleles],
            activity_values=[self.activity_value(a) for a in alleles],
            inferred=bool(inferred_from), inferred_from=list(inferred_from or []), combination=combination,
            outside_phenotype=phenotype is not None, outside_activity_score=activity_score is not None,
        )

    def unknown(self) -> Diplotype:
        n = 1 if self.gene in SINGLE_ALLELE_GENES else 2
        return self.diplotype([UNKNOWN_ALLELE] * n, label="/".join([UNKNOWN_ALLELE] * n))


def formatted_function(d: Diplotype, i: int) -> str | None:
    fn = d.functions[i] if i < len(d.functions) else None
    if fn is None:
        return None
    act = d.activity_values[i] if i < len(d.activity_values) else None
    return fn if unspecified(act) else f"{act} ({fn})"


def function_summary(d: Diplotype) -> str:
    """One line describing the alleles' functions, e.g. "Two 1.0 (Normal function) alleles"."""
    if d.gene == "DPYD" and d.combination:
        return "See drug section"
    f1 = formatted_function(d, 0) if d.alleles else None
    f2 = formatted_function(d, 1) if len(d.alleles) > 1 else None
    if f1 is None and f2 is None:
        return "N/A"
    if f2 is None:
        return f1 or "N/A"
    if f1 is None:
        return f2
    if f1 == f2:
        return f"Two {f1} alleles"
    a, b = sorted((f1, f2))
    return f"One {a} allele and one {b} allele"


def sort_diplotypes(diplotypes: list[Diplotype]) -> list[Diplotype]:
    """PharmCAT's diplotype order: allele1 as stored, then allele2, then label."""
    def key(d: Diplotype):
        a1 = d.alleles[0] if d.alleles else None
        a2 = d.alleles[1] if len(d.alleles) > 1 else None
        return (a1 is not None, name_key(a1 or ""), a2 is not None, name_key(a2 or ""), d.label)
    return sorted(diplotypes, key=key)
