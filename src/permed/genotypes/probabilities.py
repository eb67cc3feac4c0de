"""Hard calls from genotype probabilities and dosages (imputed and array data), and imputation quality.

A call is made only when the data are sure of it: the most likely genotype's probability reaches `min_gp`, or a
dosage lies within `1 - min_gp` of a whole number of ALT alleles. Anything less is a missing position for that
sample, with the reason kept (`LOW_GP`, `LOW_DS`, `DISAGREE`) so that the report can say why.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from permed.genotypes.model import MISSING_ALLELE, NO_ALLELE

DEFAULT_MIN_GP = 0.9
DEFAULT_MIN_INFO = 0.8
QUALITY_KEYS = ("R2", "DR2", "INFO")  # Minimac, Beagle, IMPUTE/UK Biobank: imputation quality in INFO

# why a sample's call at a record was not made (per sample, 0 = nothing to say)
OK, LOW_GP, LOW_DS, DISAGREE = 0, 1, 2, 3


def reason_text(code: int, min_gp: float, detail: str = "") -> str:
    if code == LOW_GP:
        return (f"Genotype probability {detail}below --min-gp {min_gp:g}: the position is treated as missing")
    if code == LOW_DS:
        return (f"Dosage {detail}is not within {ds_tolerance(min_gp):g} of 0, 1 or 2 (--min-gp {min_gp:g}): "
                "the position is treated as missing")
    return f"GT disagrees with the genotype probabilities/dosage {detail}: the position is treated as missing"


def ds_tolerance(min_gp: float) -> float:
    """How far a dosage may lie from a whole allele count: 1 - min_gp (0.1 at the default 0.9, PLINK 2's default
    hard-call threshold), kept below 0.5 so that no dosage is near two counts."""
    return min(1.0 - min_gp, 0.49)


@cache
def diploid_order(n_alleles: int) -> np.ndarray:
    """Allele pairs in the order VCF GP and BGEN list diploid genotypes: (0,0) (0,1) (1,1) (0,2) (1,2) (2,2) ..."""
    return np.array([(j, k) for k in range(n_alleles) for j in range(k + 1)], dtype=np.int16)


def n_genotypes(n_alleles: int, ploidy: int) -> int:
    return n_alleles if ploidy == 1 else n_alleles * (n_alleles + 1) // 2


def call_from_gp(gp: np.ndarray, n_alleles: int, min_gp: float) -> tuple[np.ndarray, np.ndarray]:
    """Unphased calls from genotype probabilities (samples x genotypes; NaN = missing, short rows NaN-padded).
    A row with `n_alleles` values (the rest NaN) is a haploid call. Returns (alleles int16 (n, 2), reasons)."""
    n = gp.shape[0]
    alleles = np.full((n, 2), MISSING_ALLELE, dtype=np.int16)
    reasons = np.zeros(n, dtype=np.int8)
    if n == 0:
        return alleles, reasons
    gp = np.asarray(gp, dtype=np.float64)
    values = ~np.isnan(gp)
    present = values.any(axis=1)
    best = np.argmax(np.where(values, gp, -1.0), axis=1)
    pmax = np.where(present, gp[np.arange(n), best], 0.0)
    sure = present & (pmax >= min_gp - 1e-9)  # 8-bit BGEN and 3-decimal VCF values round the threshold
    reasons[present & ~sure] = LOW_GP
    haploid = values.sum(axis=1) == n_alleles
    if n_alleles == 1:
        haploid[:] = False
    order = diploid_order(n_alleles)
    dip = sure & ~haploid
    alleles[dip] = order[np.minimum(best[dip], len(order) - 1)]
    hap = sure & haploid
    alleles[hap, 0] = best[hap]
    alleles[hap, 1] = NO_ALLELE
    return alleles, reasons


def call_from_haplotypes(hp: np.ndarray, n_alleles: int, ploidy: np.ndarray, min_gp: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Phased calls from per-haplotype allele probabilities (BGEN phased layout: samples x ploidy*n_alleles).
    Each haplotype is called on its own; a sample with an unsure haplotype is missing (not a half call)."""
    n = hp.shape[0]
    alleles = np.full((n, 2), MISSING_ALLELE, dtype=np.int16)
    reasons = np.zeros(n, dtype=np.int8)
    haploid = np.asarray(ploidy) == 1
    unsure = np.zeros(n, dtype=bool)
    for h in range(2):
        if hp.shape[1] < (h + 1) * n_alleles:
            break
        block = np.asarray(hp[:, h * n_alleles:(h + 1) * n_alleles], dtype=np.float64)
        has = ~np.isnan(block).any(axis=1) & (~haploid if h else True)
        best = np.argmax(np.where(np.isnan(block), -1.0, block), axis=1)
        sure = has & (block[np.arange(n), best] >= min_gp - 1e-9)
        alleles[sure, h] = best[sure]
        unsure |= has & ~sure
    alleles[haploid, 1] = NO_ALLELE
    alleles[unsure] = MISSING_ALLELE
    reasons[unsure] = LOW_GP
    return alleles, reasons


def call_from_ds(ds: np.ndarray, min_gp: float) -> tuple[np.ndarray, np.ndarray]:
    """Unphased diploid calls from ALT dosages (samples x ALTs; NaN = missing): each ALT's dosage must lie within
    ds_tolerance of a whole count, and the counts must add up to at most two alleles."""
    ds = np.asarray(ds, dtype=np.float64).reshape(ds.shape[0], -1)
    n, n_alts = ds.shape
    alleles = np.full((n, 2), MISSING_ALLELE, dtype=np.int16)
    reasons = np.zeros(n, dtype=np.int8)
    present = ~np.isnan(ds).any(axis=1)
    counts = np.rint(np.nan_to_num(ds)).astype(np.int64)
    near = (np.abs(np.nan_to_num(ds) - counts) <= ds_tolerance(min_gp) + 1e-9).all(axis=1)
    valid = present & near & (counts >= 0).all(axis=1) & (counts.sum(axis=1) <= 2)
    reasons[present & ~valid] = LOW_DS
    for si in np.flatnonzero(valid):
        called = [a + 1 for a in range(n_alts) for _ in range(int(counts[si, a]))]
        called = ([0] * (2 - len(called)) + called)[:2]
        alleles[si] = called
    return alleles, reasons


def agree_with_gt(gt: np.ndarray, called: np.ndarray) -> np.ndarray:
    """Per sample: does a GT call name the same alleles as the call from probabilities (order aside)?"""
    a = np.sort(np.where(gt == NO_ALLELE, -9, gt), axis=1)
    b = np.sort(np.where(called == NO_ALLELE, -9, called), axis=1)
    return (a == b).all(axis=1)


def check_calls(gts, called: np.ndarray, reasons: np.ndarray, has: np.ndarray):
    """Hard calls (GT, or pgen's hardcalls) against calls from probabilities/dosages where a sample has them:
    kept where they agree, made from the probabilities where GT is missing, missing where the probabilities are
    unsure or disagree. Returns ((alleles, phased), reasons)."""
    n = len(called)
    if gts is None:
        return (called, np.zeros(n, dtype=bool)), reasons
    g, phased = gts
    g = g.copy()
    full = (g != MISSING_ALLELE).all(axis=1)
    sure = has & (reasons == 0)
    disagree = sure & full & ~agree_with_gt(g, called)
    take = sure & ~full
    g[take] = called[take]
    drop = (has & (reasons > 0)) | disagree
    g[drop] = MISSING_ALLELE
    reasons = reasons.copy()
    reasons[disagree] = DISAGREE
    return (g, np.where(take | drop, False, phased)), reasons


def impute_info(gp: np.ndarray) -> float | None:
    """IMPUTE's information measure of a biallelic diploid variant from the samples' genotype probabilities
    (Marchini & Howie 2010: 1 - sum(f_i - e_i^2) / (2N theta (1 - theta)), e_i the expected ALT dosage, f_i its
    expected square): 1 for certain genotypes, falling as the probabilities blur. None without data."""
    gp = np.asarray(gp, dtype=np.float64)
    if gp.ndim != 2 or gp.shape[1] != 3:
        return None
    rows = gp[~np.isnan(gp).any(axis=1)]
    if not len(rows):
        return None
    e = rows[:, 1] + 2 * rows[:, 2]
    f = rows[:, 1] + 4 * rows[:, 2]
    theta = e.mean() / 2
    if theta <= 0 or theta >= 1:
        return 1.0  # monomorphic: nothing uncertain to measure
    return float(1 - (f - e**2).sum() / (2 * len(rows) * theta * (1 - theta)))
