"""Per-position sample alleles and per-gene haplotype definitions as the matcher sees them."""

from __future__ import annotations

from dataclasses import dataclass

from permed.kb.model import IUPAC, Locus

WOBBLES = frozenset(k for k, v in IUPAC.items() if len(v) > 1)


@dataclass(frozen=True, slots=True)
class SampleAllele:
    """One sample's genotype at one definition position.

    `allele1`/`allele2` are the VCF alleles (None for '.', or for the absent second allele of a
    haploid call); `called1`/`called2` are what matching uses: '.' for a missing allele, None for
    no second allele, and undocumented ALT alleles replaced by REF where the gene allows it.
    """

    locus: Locus
    allele1: str | None
    allele2: str | None
    called1: str | None
    called2: str | None
    phased: bool
    effectively_phased: bool
    phase_set: int | None
    gt: str
    undocumented: bool = False

    @property
    def position(self) -> int:
        return self.locus.position

    @property
    def homozygous(self) -> bool:
        if self.called1 is None:
            return False
        return self.called1 == self.called2

    @property
    def vcf_call(self) -> str:
        sep = "|" if self.phased else "/"
        a1 = self.allele1 if self.allele1 is not None else "."
        if self.allele2 is not None:
            return f"{a1}{sep}{self.allele2}"
        if self.called2 == ".":
            return f"{a1}{sep}."
        return a1


@dataclass(frozen=True, slots=True)
class Haplotype:
    """A named allele restricted to the positions available for one sample.

    `alleles` is aligned with the sample's available positions; None = not defined (a wildcard
    unless reference-filled).  `score` is PharmCAT's match score: the number of defined positions.
    """

    name: str
    id: str | None
    reference: bool
    alleles: tuple[str | None, ...]
    score: int
    core: frozenset[int]  # positions this allele itself defines (before reference filling)
    missing: frozenset[int] = frozenset()  # defining positions absent from the sample
    wobbles: frozenset[int] = frozenset()  # positions defined by an IUPAC ambiguity code
    components: tuple[str, ...] = ()  # named alleles of a combination
    partials: tuple[tuple[int, str], ...] = ()  # (position, HGVS) of off-definition variants
    combination: bool = False  # built by the combination matcher (even from a single allele)

    @property
    def is_partial(self) -> bool:
        return bool(self.partials)

    @property
    def is_combination(self) -> bool:
        return self.combination


def allele_matches(expected: str | None, observed: str | None) -> bool:
    """Whether a definition allele (None = any) accepts an observed strand allele."""
    if expected is None:
        return True
    if observed is None:
        return False
    if expected in WOBBLES:
        return observed in IUPAC[expected]
    return expected == observed
