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


# Positions whose genotype the interpretation stage reads even when per-position evidence is not
# kept (cohort runs): conditions of gene notes (permed/phenotype/data/notes.json) and the SLCO1B1
# rs4149056 fallback. A test keeps this list in step with the notes catalogue.
KEY_RSIDS = frozenset({
    "rs2279343", "rs3758581", "rs58973490", "rs17882687", "rs12248560", "rs28399504", "rs28365083",
    "rs56411402", "rs55965422", "rs28383479", "rs776746", "rs12777823", "rs4149056",
})
