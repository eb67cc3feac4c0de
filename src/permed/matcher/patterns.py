"""Call a gene for every sample at once.

Samples are grouped by their genotype pattern at the gene's definition positions (alleles,
phase, phase-set structure) with one vectorised `np.unique`; the PharmCAT decision flow runs once
per distinct pattern and the result is shared by every sample with that pattern.  Patterns are
cached by allele content, so further files and chunks reuse earlier work.  A single patient is
simply a cohort of one.
"""

from __future__ import annotations

import numpy as np

from permed.genotypes.model import CALLED, FILLED, MISSING_ALLELE, MISSING_STATUSES, NO_ALLELE, GeneGenotypes
from permed.kb.policy import KEY_RSIDS, undocumented_as_reference
from permed.matcher.alleles import SampleAllele
from permed.matcher.gene_caller import GeneCaller, GeneResult, MatchOptions
from permed.matcher.labels import UNKNOWN, diplotype_label, haplotype_list_labels
from permed.matcher.model import DiplotypeCall, GeneCall, HaplotypeCall, Message, PositionEvidence

REFERENCE_NAME = "Reference"
REMOTE_FILL = Message(
    name="reference-filled-without-data",
    text="--missing-to-ref filled this gene's positions as reference although the input has no record within "
    "10 kb of them; check that the file covers this gene before trusting this call.",
)


def _canonical_phase_sets(ps: np.ndarray) -> np.ndarray:
    """Relabel PS values per sample by the first position of each set (+1; 0 = none): only the
    grouping of positions into sets matters, and this label is canonical for it. Vectorised."""
    n, L = ps.shape
    if L == 0:
        return np.zeros_like(ps)
    order = np.argsort(ps, axis=1, kind="stable")
    sv = np.take_along_axis(ps, order, axis=1)
    start = np.ones((n, L), dtype=bool)
    start[:, 1:] = sv[:, 1:] != sv[:, :-1]
    # sorted position of each element's set start (stable sort: its smallest column)
    start_pos = np.maximum.accumulate(np.where(start, np.arange(L), 0), axis=1)
    first_col = np.take_along_axis(order, start_pos, axis=1)
    out = np.empty_like(ps)
    np.put_along_axis(out, order, first_col + 1, axis=1)
    return np.where(ps != 0, out, 0)


PATTERN_CACHE_LIMIT = 50_000  # cached calls per unit (each key holds a sample's alleles at every position)
_HASH_BLOCK = 64  # columns hashed at a time: memory stays O(samples x block), not O(samples x positions)


def _unique_rows(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(first index, inverse) of samples whose rows are identical across all `parts` (each samples x k).

    A 64-bit polynomial hash per row, accumulated over column blocks (memory O(samples x block)),
    grouped with a 1-D unique, then checked exactly; a collision falls back to exact grouping."""
    n = parts[0].shape[0]
    rng = np.random.default_rng(20261125)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrapping arithmetic is intended
        for part in parts:
            k = part.shape[1]
            w = rng.integers(1, 2**63 - 1, size=k, dtype=np.uint64)
            for a in range(0, k, _HASH_BLOCK):
                h += (part[:, a:a + _HASH_BLOCK].astype(np.uint64) * w[a:a + _HASH_BLOCK]).sum(axis=1)
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    rep = first[inverse]
    if not all((part == part[rep]).all() for part in parts):
        feats = np.concatenate([p.astype(np.int64) for p in parts], axis=1)
        _, first, inverse = np.unique(feats, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
    return first, inverse


def pattern_groups(gg: GeneGenotypes) -> tuple[np.ndarray, np.ndarray]:
    """(representative sample index per pattern, pattern index per sample)."""
    n, L = gg.status.shape
    if n == 0:
        return np.zeros(0, int), np.zeros(0, int)
    if not gg.status.any() and not gg.extra:
        return np.zeros(1, int), np.zeros(n, int)  # no data for anyone: a single pattern
    parts = [gg.status, gg.gt[:, :, 0] + 2, gg.gt[:, :, 1] + 2, gg.phased]
    if gg.phase_set.any():
        parts.append(_canonical_phase_sets(gg.phase_set))
    if gg.extra:
        # report-only positions (e.g. CYP2C9 rs12777823) are part of what a sample's call shows
        parts.append(np.stack([x["codes"] for x in gg.extra], axis=1))
    return _unique_rows(parts)


class PatternCaller:
    """Calls genes over GenotypeSets, caching results by genotype pattern."""

    def __init__(self, options: MatchOptions, evidence: bool = True):
        self.options = options
        self.evidence = evidence  # per-position evidence is for reports; cohort tables do without
        self._callers: dict[str, GeneCaller] = {}
        self._cache: dict[tuple, GeneCall] = {}
        self._shared: dict[tuple, list[int]] = {}

    def caller(self, gg: GeneGenotypes) -> GeneCaller:
        c = self._callers.get(gg.gene)
        if c is None or c.gdef is not gg.definition:
            c = self._callers[gg.gene] = GeneCaller(gg.definition, self.options)
        return c

    def call(self, gg: GeneGenotypes) -> tuple[list[GeneCall], np.ndarray]:
        """Distinct gene calls and, per sample, the index of its call."""
        first, inverse = pattern_groups(gg)
        calls = [self._call_pattern(gg, int(si)) for si in first]
        return calls, inverse

    def _call_pattern(self, gg: GeneGenotypes, si: int) -> GeneCall:
        key, sample = sample_alleles(gg, si, self.options.find_combinations)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        result = self.caller(gg).call(sample)
        call = to_gene_call(gg, si, result, self.evidence, self._shared)
        if len(self._cache) >= PATTERN_CACHE_LIMIT:
            self._cache.clear()  # rare patterns rarely recur: bound memory, keep the speed of common ones
        self._cache[key] = call
        return call


def sample_alleles(gg: GeneGenotypes, si: int, find_combinations: bool) -> tuple[tuple, dict[int, SampleAllele]]:
    """One sample's alleles at the gene's positions, in matcher form, plus a content key for caching."""
    gdef = gg.definition
    as_ref = undocumented_as_reference(gg.gene, find_combinations)
    out: dict[int, SampleAllele] = {}
    key: list = [gg.gene, id(gdef)]
    # the sample's row as Python values once (indexing numpy element by element costs more than the rest)
    statuses, gts = gg.status[si].tolist(), gg.gt[si].tolist()
    phases, phase_sets = gg.phased[si].tolist(), gg.phase_set[si].tolist()
    for li, loc in enumerate(gdef.loci):
        st = statuses[li]
        if st in MISSING_STATUSES:
            continue
        table = gg.alleles[li]
        n_known = 1 + len(loc.alts)
        c1, c2 = gts[li]
        phased = phases[li]
        ps = phase_sets[li] if phased and phase_sets[li] else None
        a1 = table[c1] if c1 >= 0 else None
        a2 = table[c2] if c2 >= 0 else None
        undocumented = c1 >= n_known or c2 >= n_known

        def computed(c: int, a: str | None, ref: str = loc.ref, n_known: int = n_known) -> str | None:
            if c == MISSING_ALLELE:
                return "."
            if c == NO_ALLELE:
                return None
            return ref if (as_ref and c >= n_known) else a

        distinct = {c for c in (c1, c2) if c >= 0}
        eff = len(distinct) <= 1 or (phased and ps is None)
        sep = "|" if phased else "/"
        gt = sep.join("." if c == MISSING_ALLELE else str(c) for c in (c1, c2) if c != NO_ALLELE)
        out[loc.position] = SampleAllele(
            locus=loc, allele1=a1, allele2=a2, called1=computed(c1, a1), called2=computed(c2, a2),
            phased=phased, effectively_phased=eff, phase_set=ps, gt=gt,
            undocumented=undocumented,
        )
        key.append((li, st, a1, a2, c1 < 0 and c1, c2 < 0 and c2, phased, ps))
    key.extend(x["calls"][si] for x in gg.extra)
    key.append(gg.remote_fill)
    key.append(gg.unmapped)
    return tuple(key), out


def _haplotype_call(m, shown) -> HaplotypeCall:
    hap = m.haplotype
    if hap.is_combination:
        named = [shown(c) for c in hap.components if c != REFERENCE_NAME]
        return HaplotypeCall(name=shown(hap.name), components=named, partials=[p for _, p in hap.partials])
    return HaplotypeCall(name=shown(hap.name))


def _build_warnings(gg: GeneGenotypes) -> list[Message]:
    if not gg.unmapped:
        return []
    return [Message(name="grch37-unmapped-positions", text=(
        f"The input was read as {gg.build}: {gg.unmapped} of this gene's {len(gg.definition.loci)} definition "
        f"positions have no {gg.build} position in the knowledge base's mapping (PyPGx's variant table) and are "
        "missing (never filled as reference); variants there cannot be seen."))]


def _fill_warnings(gg: GeneGenotypes, si: int) -> list[Message]:
    filled = int((gg.status[si] == FILLED).sum())
    if not filled:
        return []
    out = [Message(name="reference-filled", text=f"{filled} position(s) absent from the input were read as "
                                                 "homozygous reference (--missing-to-ref).")]
    return out + ([REMOTE_FILL] if gg.remote_fill else [])


def to_gene_call(gg: GeneGenotypes, si: int, res: GeneResult, with_evidence: bool = True,
                 shared: dict | None = None) -> GeneCall:
    gdef = gg.definition
    data = res.data
    sub = gdef.suballeles

    def shown(name: str) -> str:
        return sub.get(name, name)

    if res.diplotypes:
        labels = []
        for d in res.diplotypes:
            lab = diplotype_label(gdef.gene, shown(d.hap1.name), shown(d.hap2.name) if d.hap2 else None,
                                  gdef.reference_allele.name)
            if lab not in labels:
                labels.append(lab)
    elif res.haplotypes:
        labels = haplotype_list_labels([shown(m.name) for m in res.haplotypes])
    else:
        labels = [UNKNOWN]
    dips = [
        DiplotypeCall(
            name="/".join(shown(m.name) for m in (d.hap1, d.hap2) if m is not None), score=d.score,
            haplotypes=[_haplotype_call(m, shown) for m in (d.hap1, d.hap2) if m is not None],
        )
        for d in res.diplotypes
    ]
    evidence = []
    undocumented = [a.position for a in data.alleles if a.undocumented]
    sample = {a.position: a for a in data.alleles}
    statuses = gg.status[si].tolist()
    for li, loc in enumerate(gdef.loci):
        if with_evidence or loc.rsid in KEY_RSIDS:
            st = statuses[li]
            a = sample.get(loc.position)
            if st in MISSING_STATUSES:
                evidence.append(PositionEvidence(position=loc.position, rsid=loc.rsid, status="missing"))
            elif a is not None:
                evidence.append(PositionEvidence(
                    position=loc.position, rsid=loc.rsid, call=a.vcf_call,
                    status="called" if st == CALLED else "reference_filled",
                    phase_set=a.phase_set, undocumented=a.undocumented,
                    origin=None if gg.origin.get(li, "exact") == "exact" else gg.origin.get(li),
                ))
    call = GeneCall(
        gene=gdef.gene,
        status=res.status,
        source_diplotypes=labels,
        diplotypes=dips,
        haplotype_matches=[shown(m.name) for m in res.haplotypes],
        match_score=res.diplotypes[0].score if res.diplotypes else None,
        phased=bool(data.alleles) and data.is_phased,
        effectively_phased=bool(data.alleles) and data.effectively_phased,
        missing_positions=[loc.position for loc, st in zip(gdef.loci, statuses) if st in MISSING_STATUSES],
        undocumented_positions=undocumented,
        warnings=([Message(name=k, text=v) for k, v in res.warnings.items()] + _build_warnings(gg)
                  + _fill_warnings(gg, si)),
        evidence=evidence,
        variants_of_interest=[
            {"position": x["position"], "rsid": x["rsid"], "call": x["calls"][si]} for x in gg.extra
        ],
    )
    if shared is not None:
        # thousands of distinct calls of a gene usually miss the same positions: keep one list
        missing = shared.setdefault((gdef.gene, tuple(call.missing_positions)), call.missing_positions)
        if missing is not call.missing_positions:
            call = GeneCall.model_construct(call.model_fields_set, **{**dict(call), "missing_positions": missing})
    return call

