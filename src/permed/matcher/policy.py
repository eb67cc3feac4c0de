"""Per-gene calling policies that PharmCAT applies (method facts, not data)."""

from __future__ import annotations

# Genes whose phenotype comes from the lowest-function alleles found (DPYD: CPIC fluoropyrimidine
# guideline; RYR1: malignant hyperthermia susceptibility).
LOWEST_FUNCTION_GENES = frozenset({"DPYD", "RYR1"})

# Genes whose undocumented ALT alleles are read as reference so that the documented, actionable
# variants still yield a call (PharmCAT: toxicity genes).
UNDOCUMENTED_AS_REFERENCE = frozenset({"CACNA1S", "DPYD", "G6PD", "NUDT15", "RYR1", "TPMT"})


def undocumented_as_reference(gene: str, find_combinations: bool) -> bool:
    if gene not in UNDOCUMENTED_AS_REFERENCE:
        return False
    # research mode keeps the exact change visible, except for lowest-function genes
    return gene in LOWEST_FUNCTION_GENES or not find_combinations
