"""Genotypes at definition positions, as arrays over samples (stage 1 output).

A single patient is a cohort of one: every array has a leading samples axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from permed.kb.model import GeneDefinition

# allele codes in GeneGenotypes.gt
MISSING_ALLELE = -1  # '.'
NO_ALLELE = -2  # absent second allele of a haploid call

# GeneGenotypes.status
ABSENT = 0  # no usable record: a missing position
CALLED = 1
FILLED = 2  # absent, filled as reference because --missing-to-ref was given
# records exist but cannot be trusted (entries that disagree, an implausible gVCF block): a missing
# position that --missing-to-ref never fills
UNUSABLE = 3
MISSING_STATUSES = (ABSENT, UNUSABLE)


@dataclass
class GeneGenotypes:
    """One gene's definition positions for every sample.

    `alleles[l]` is the allele table of locus l: index 0 is the definition REF, then the
    definition ALTs, then any other allele seen in the data (undocumented).
    """

    gene: str
    definition: GeneDefinition
    alleles: list[list[str]]
    gt: np.ndarray  # int16 (samples, loci, 2): allele table index, MISSING_ALLELE or NO_ALLELE
    status: np.ndarray  # int8 (samples, loci)
    phased: np.ndarray  # bool (samples, loci)
    phase_set: np.ndarray  # int32 (samples, loci); 0 = none
    # per-locus source of the call, e.g. "exact", "normalised from chr10:94942204 CTA>C", "gVCF block"
    origin: dict[int, str] = field(default_factory=dict)
    # extra positions reported for context (not used for matching), e.g. CYP2C9 rs12777823
    extra: list[dict] = field(default_factory=list)
    # --missing-to-ref filled this gene although the file has no record within 10 kb of it
    remote_fill: bool = False
    # the genome build the file was read on, and how many definition positions have no place on it (GRCh37
    # input: positions the knowledge base cannot map, always missing)
    build: str = "GRCh38"
    unmapped: int = 0

    @property
    def n_samples(self) -> int:
        return self.gt.shape[0]


@dataclass
class GenotypeSet:
    """Everything read from one input file."""

    path: str
    sha256: str
    samples: tuple[str, ...]
    genes: dict[str, GeneGenotypes]
    # warnings about a position for every sample: "chr10:94942205" -> messages
    position_warnings: dict[str, list[str]] = field(default_factory=dict)
    # warnings about a position for one sample: (sample index, "chr:pos") -> messages
    sample_warnings: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    # notes about the whole file (unsorted records, htslib warnings, options applied)
    notices: list[str] = field(default_factory=list)
    missing_to_ref: bool = False

    def warnings_for(self, sample_index: int) -> dict[str, list[str]]:
        out = {k: list(v) for k, v in self.position_warnings.items()}
        for (si, key), msgs in self.sample_warnings.items():
            if si == sample_index:
                out.setdefault(key, []).extend(msgs)
        return out
