"""Diplotype labels as PharmCAT prints them (its "source diplotypes")."""

from __future__ import annotations

from permed.matcher.names import name_key

# Genes reported CPIC-style: "Reference/X" is printed "X (heterozygous)" (PharmCAT's Diplotype label rule).
CPIC_STYLE_GENES = frozenset({"CACNA1S", "CFTR", "RYR1", "DPYD"})
HETEROZYGOUS = " (heterozygous)"
UNKNOWN = "Unknown/Unknown"
REFERENCE = "Reference"


def diplotype_label(gene: str, hap1: str, hap2: str | None, reference: str | None) -> str:
    """`reference` is the gene's reference allele name; CPIC-style genes print it as "Reference"."""
    if gene in CPIC_STYLE_GENES:
        r1 = hap1 == reference
        r2 = hap2 is not None and hap2 == reference
        if r1 and (r2 or hap2 is None):
            return f"{REFERENCE}/{REFERENCE}" if hap2 is not None else REFERENCE
        if r1 or r2:
            return (hap2 if r1 else hap1) + HETEROZYGOUS
    if hap2 is None:
        return hap1
    a, b = sorted((hap1, hap2), key=name_key)
    return f"{a}/{b}"


def haplotype_list_labels(names: list[str]) -> list[str]:
    """Unphased lowest-function genes: each allele found, once, as PharmCAT labels it. An allele found on
    both chromosomes is marked "(homozygous)" by the HTML/PDF report only (from the haplotype matches):
    labels in the data stay PharmCAT's."""
    return sorted(set(names), key=name_key)
