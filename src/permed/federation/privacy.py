"""Differential privacy on counts with the OpenDP library (optional: `[privacy] mechanism` in node.toml).

A query's whole answer is one vector of integer counts. Adding or removing one individual changes, per
level asked, its group's size by 1 and per gene its diplotype and phenotype cells by 1 each and its allele
cells by 2 in all: the L1 sensitivity is the sum of that over what is asked (L2 for the Gaussian). OpenDP
calibrates the noise to the configured epsilon and states the privacy loss it guarantees:

* laplace: the discrete Laplace (geometric) mechanism, pure epsilon-DP;
* gaussian: the discrete Gaussian, rho-zero-concentrated DP, stated as (epsilon, delta) for the configured
  delta (the scale is found by OpenDP's binary search so that the stated epsilon is the configured one).

Each answer's epsilon is charged to the asking token's budget (ledger in the node's store) before any noise
is drawn; a query that would pass the budget is refused. Spending composes additively (basic composition).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from permed.federation.config import Privacy


@dataclass(frozen=True)
class Noise:
    mechanism: str
    epsilon: float  # the privacy loss of this answer, as OpenDP states it
    delta: float
    scale: float  # of the noise added to each count
    sensitivity: float

    def describe(self) -> dict:
        out = {"mechanism": self.mechanism, "epsilon": self.epsilon, "scale": self.scale,
               "sensitivity": self.sensitivity}
        if self.mechanism == "gaussian":
            out["delta"] = self.delta
        return out


def sensitivity(levels: int, genes: int, kinds: tuple[str, ...], l2: bool) -> float:
    """Largest change of the released vector when one individual is added or removed."""
    per_gene = [1.0 if k != "allele" else 2.0 for k in kinds]  # alleles: two copies (or one, hemizygous)
    if l2:
        return math.sqrt(levels * (1 + genes * sum(x * x for x in per_gene)))
    return levels * (1 + genes * sum(per_gene))


@cache
def _prelude():
    import opendp.prelude as dp

    dp.enable_features("contrib")  # the discrete mechanisms are in OpenDP's contrib set
    return dp


@lru_cache(maxsize=256)
def _measurement(mechanism: str, scale: float):
    dp = _prelude()
    space = dp.vector_domain(dp.atom_domain(T=int)), (dp.l2_distance(T=int) if mechanism == "gaussian"
                                                      else dp.l1_distance(T=int))
    if mechanism == "gaussian":
        return dp.m.make_gaussian(*space, scale=scale)
    return dp.m.make_laplace(*space, scale=scale)


def _epsilon(mechanism: str, scale: float, sens: float, delta: float) -> float:
    dp = _prelude()
    m = _measurement(mechanism, scale)
    if mechanism == "laplace":
        return float(m.map(int(math.ceil(sens))))
    approx = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(m), delta)
    return float(approx.map(int(math.ceil(sens)))[0])


@lru_cache(maxsize=1024)
def plan(privacy: Privacy, levels: int, genes: int, kinds: tuple[str, ...]) -> Noise:
    """The noise for one answer: a scale whose stated epsilon is at most the configured one."""
    gaussian = privacy.mechanism == "gaussian"
    sens = sensitivity(levels, genes, kinds, gaussian)
    if not gaussian:
        scale = math.ceil(sens) / privacy.epsilon
        return Noise("laplace", _epsilon("laplace", scale, sens, 0.0), 0.0, scale, sens)
    lo, hi = 1e-3, 1e6  # epsilon falls as the scale grows: bisect for the smallest scale within epsilon
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if _epsilon("gaussian", mid, sens, privacy.delta) > privacy.epsilon:
            lo = mid
        else:
            hi = mid
    return Noise("gaussian", _epsilon("gaussian", hi, sens, privacy.delta), privacy.delta, hi, sens)


def noisy(noise: Noise, counts: np.ndarray) -> np.ndarray:
    """counts + integer noise drawn by OpenDP (a cryptographically seeded sampler; never reproducible)."""
    if not len(counts):
        return counts.astype(np.int64)
    out = _measurement(noise.mechanism, noise.scale)([int(x) for x in counts])
    return np.asarray(out, dtype=np.int64)
