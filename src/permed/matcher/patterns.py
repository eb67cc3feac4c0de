"""Call a gene for every sample at once.

Samples are grouped by their genotype pattern at the gene's definition positions (alleles,
phase, phase-set structure) with one vectorised `np.unique`.  For the common case (two well-defined
strands, no missing alleles, no phase sets) every distinct pattern's strands are matched against every
named allele in one array operation (patterns x positions against alleles x positions); the
lowest-function genes, whose calls name combinations and partial alleles from a strand's own variants,
key each strand by its alleles instead.  Patterns whose outcome and reported facts coincide share one
call, and PharmCAT's decision flow runs once per distinct outcome.  Other patterns (unknown strands,
phase sets, missing alleles; research mode; full evidence) run the decision flow one by one.  Patterns
are cached by allele content, so further files and chunks reuse earlier work.
A single patient is simply a cohort of one.
"""

from __future__ import annotations

import numpy as np

from permed.genotypes.model import CALLED, FILLED, MISSING_ALLELE, MISSING_STATUSES, NO_ALLELE, GeneGenotypes
from permed.kb.policy import KEY_RSIDS, LOWEST_FUNCTION_GENES, undocumented_as_reference
from permed.matcher.alleles import SampleAllele, allele_matches
from permed.matcher.gene_caller import GeneCaller, GeneResult, MatchOptions
from permed.matcher.labels import UNKNOWN, diplotype_label, haplotype_list_labels
from permed.matcher.match_data import haplotype_set
from permed.matcher.model import (
    DiplotypeCall,
    GeneCall,
    HaplotypeCall,
    Message,
    PositionEvidence,
    VariantOfInterest,
)

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
_CONTEXT_LIMIT = 256  # gene contexts whose per-position alleles are kept (genes x files)
_HASH_BLOCK = 64  # columns hashed at a time: memory stays O(samples x block), not O(samples x positions)


def _row_hash(n: int, blocks) -> np.ndarray:
    """A 64-bit polynomial hash per row over column blocks (each samples x k, ints >= 0)."""
    rng = np.random.default_rng(20261125)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrapping arithmetic is intended
        for block in blocks:
            w = rng.integers(1, 2**63 - 1, size=block.shape[1], dtype=np.uint64)
            block = block.view(np.uint64) if block.dtype == np.int64 else block.astype(np.uint64)
            h += (block * w).sum(axis=1)
    return h


def _column_blocks(part: np.ndarray):
    for a in range(0, part.shape[1], _HASH_BLOCK):
        yield part[:, a:a + _HASH_BLOCK]


def _unique_rows(parts: list[np.ndarray], blocks=None) -> tuple[np.ndarray, np.ndarray]:
    """Rows identical across all `parts` (each n x k: samples, patterns, masks) grouped: (each group's first
    row, every row's group).

    A 64-bit hash per row (over `blocks`, default the parts' own column blocks: memory O(n x block)),
    grouped with a 1-D unique, then checked exactly; a collision falls back to exact grouping."""
    n = parts[0].shape[0]
    if blocks is None:
        blocks = (b for part in parts for b in _column_blocks(part))
    h = _row_hash(n, blocks)
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    rep = first[inverse]
    if not all((part == part[rep]).all() for part in parts):
        feats = np.concatenate([p.reshape(n, -1).astype(np.int64) for p in parts], axis=1)
        _, first, inverse = np.unique(feats, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
    return first, inverse


def _allele_pairs(gg: GeneGenotypes) -> np.ndarray:
    """Both allele codes of each sample x position as one int32 (a view: no copy)."""
    n, L = gg.status.shape
    gt = np.ascontiguousarray(gg.gt, dtype=np.int16)
    return gt.view(np.int32).reshape(n, L)


def _varying_columns(gg: GeneGenotypes, pairs: np.ndarray) -> np.ndarray:
    """Positions where some sample's status, alleles or phase differ from the first sample's. Usually a
    fifth of a gene's positions vary within a chunk; the others cannot tell patterns apart, and comparing
    small integers costs far less than hashing every column."""
    var = (gg.status != gg.status[0]).any(axis=0)
    var |= (gg.phased != gg.phased[0]).any(axis=0)
    var |= (pairs != pairs[0]).any(axis=0)
    return np.flatnonzero(var)


def pattern_groups(gg: GeneGenotypes) -> tuple[np.ndarray, np.ndarray]:
    """(representative sample index per pattern, pattern index per sample)."""
    n = gg.status.shape[0]
    if n == 0:
        return np.zeros(0, int), np.zeros(0, int)
    if not gg.status.any() and not gg.extra:
        return np.zeros(1, int), np.zeros(n, int)  # no data for anyone: a single pattern
    pairs = _allele_pairs(gg)
    cols = _varying_columns(gg, pairs)
    status, pairs, phased = gg.status[:, cols], pairs[:, cols], gg.phased[:, cols]
    extra = []
    if gg.phase_set.any():
        extra.append(_canonical_phase_sets(gg.phase_set))
    if gg.extra:
        # report-only positions (e.g. CYP2C9 rs12777823) are part of what a sample's call shows
        extra.append(np.stack([x["codes"] for x in gg.extra], axis=1))
    if not len(cols) and not extra:
        return np.zeros(1, int), np.zeros(n, int)  # everyone alike

    def blocks():
        # allele pair, status (2 bits) and phase (1 bit) packed into one integer per position: one pass to hash
        for a in range(0, len(cols), _HASH_BLOCK):
            z = slice(a, a + _HASH_BLOCK)
            packed = pairs[:, z].astype(np.int64) << 3
            packed |= status[:, z] << 1
            packed |= phased[:, z]
            yield packed
        for part in extra:
            yield from _column_blocks(part)

    return _unique_rows([status, pairs, phased] + extra, blocks())


class PatternCaller:
    """Calls genes over GenotypeSets, caching results by genotype pattern."""

    def __init__(self, options: MatchOptions, evidence: bool = True, vectorised: bool = True):
        self.options = options
        self.evidence = evidence  # per-position evidence is for reports; cohort tables do without
        self.vectorised = vectorised  # False: every pattern through the decision flow (tests compare both)
        self._callers: dict[str, GeneCaller] = {}
        self._cache: dict[tuple, GeneCall] = {}
        self._shared: dict[tuple, list[int]] = {}
        self._outcomes: dict[tuple, GeneCall] = {}  # vectorised path: outcome + facts -> call
        self._context_of: tuple[GeneGenotypes | None, tuple, dict] = (None, (), {})
        self._alleles_of: dict[tuple, dict] = {}  # context -> SampleAllele per (locus, codes, phase)

    def caller(self, gg: GeneGenotypes) -> GeneCaller:
        c = self._callers.get(gg.gene)
        if c is None or c.gdef is not gg.definition:
            c = self._callers[gg.gene] = GeneCaller(gg.definition, self.options)
        return c

    def call(self, gg: GeneGenotypes) -> tuple[list[GeneCall], np.ndarray]:
        """Distinct gene calls and, per sample, the index of its call."""
        first, inverse = pattern_groups(gg)
        if self.vectorised and len(first) > 1 and self._fast_gene(gg):
            return self._call_fast(gg, first), inverse
        calls = [self._call_pattern(gg, int(si)) for si in first]
        return calls, inverse

    def _fast_gene(self, gg: GeneGenotypes) -> bool:
        # research mode builds combinations strand by strand from more than the strands' named alleles; full
        # evidence makes every pattern's call distinct anyway
        return not self.evidence and not self.options.find_combinations

    def _call_fast(self, gg: GeneGenotypes, first: np.ndarray) -> list[GeneCall]:
        """Calls of the patterns whose representatives are `first`: eligible patterns through one
        decision flow per distinct outcome (`outcome_keys`), the rest one by one."""
        outcome, facts, ok, masks = outcome_keys(gg, first, self.caller(gg))
        calls: list[GeneCall | None] = [None] * len(first)
        if ok.any():
            sel = np.flatnonzero(ok)
            rep, back = _unique_rows([outcome])
            frep, fback = _unique_rows([outcome, facts])
            full = np.concatenate([outcome, facts], axis=1)
            # later chunks meet the same outcomes: cached by content (the mask itself, not its local number)
            context = self._context(gg)
            decided: dict[int, GeneCall] = {}
            variants = []
            for j in frep.tolist():
                key = (context, masks[full[j, 0]].tobytes(), full[j, 1:].tobytes())
                call = self._outcomes.get(key)
                if call is None:
                    k = int(back[j])
                    if k not in decided:
                        decided[k] = self._call_pattern(gg, int(first[sel[rep[k]]]))
                    # same outcome, other reported facts (key genotypes, fills...): restated
                    call = decided[k] if j == rep[k] else self._restate(decided[k], gg, int(first[sel[j]]))
                    if len(self._outcomes) >= PATTERN_CACHE_LIMIT:
                        self._outcomes.clear()
                    self._outcomes[key] = call
                variants.append(call)
            for j, k in zip(sel.tolist(), fback.tolist()):
                calls[j] = variants[k]
        for j in np.flatnonzero(~ok).tolist():
            calls[j] = self._call_pattern(gg, int(first[j]))
        return calls

    def _context(self, gg: GeneGenotypes) -> tuple:
        """What every call of `gg`'s gene depends on besides the sample's row: the definition, the allele
        tables, build, fills and record origins (worked out once per GeneGenotypes)."""
        if self._context_of[0] is not gg:
            context = (gg.gene, id(gg.definition), tuple(map(tuple, gg.alleles)), gg.remote_fill, gg.unmapped,
                       gg.build, tuple(sorted(gg.origin.items())))
            if len(self._alleles_of) >= _CONTEXT_LIMIT:
                self._alleles_of.clear()
            self._context_of = (gg, context, self._alleles_of.setdefault(context, {}))
        return self._context_of[1]

    def _sample_alleles(self, gg: GeneGenotypes, si: int) -> dict[int, SampleAllele]:
        self._context(gg)
        memo = self._context_of[2]
        if len(memo) >= PATTERN_CACHE_LIMIT:
            memo.clear()  # phase-set numbers can make states many: bound memory
        return sample_alleles(gg, si, self.options.find_combinations, memo)

    def _key(self, gg: GeneGenotypes, si: int) -> tuple:
        """What sample `si`'s call depends on, as a cache key: the gene's context and the sample's row as
        bytes. Cheap: a cached pattern is never turned into matcher objects."""
        ps = gg.phase_set[si]
        return (self._context(gg), gg.status[si].tobytes(), gg.gt[si].tobytes(), gg.phased[si].tobytes(),
                ps.tobytes() if ps.any() else b"", tuple(x["calls"][si] for x in gg.extra))

    def _restate(self, call: GeneCall, gg: GeneGenotypes, si: int) -> GeneCall:
        """`call` (an eligible pattern's) with sample `si`'s own phasing, fill warnings, key-position
        evidence and context positions, as `to_gene_call` states them."""
        key = self._key(gg, si)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        sample = self._sample_alleles(gg, si)
        fill_names = {"reference-filled", REMOTE_FILL.name}
        restated = call.model_copy(update={
            "phased": all(a.phased for a in sample.values()),
            "warnings": [w for w in call.warnings if w.name not in fill_names] + _fill_warnings(gg, si),
            "evidence": _evidence(gg, si, sample, False),
            "variants_of_interest": _variants_of_interest(gg, si),
        })
        self._remember(key, restated)
        return restated

    def _remember(self, key: tuple, call: GeneCall) -> None:
        if len(self._cache) >= PATTERN_CACHE_LIMIT:
            self._cache.clear()  # rare patterns rarely recur: bound memory, keep the speed of common ones
        self._cache[key] = call

    def _call_pattern(self, gg: GeneGenotypes, si: int) -> GeneCall:
        key = self._key(gg, si)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        sample = self._sample_alleles(gg, si)
        result = self.caller(gg).call(sample)
        call = to_gene_call(gg, si, result, self.evidence, self._shared)
        self._remember(key, call)
        return call


_MATCH_BLOCK = 2048  # strands matched at a time: memory O(block x positions x alleles)


def _accept_table(gg: GeneGenotypes, avail: np.ndarray, exclude: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
    """(accept, wobble columns) for one set of observed positions: accept[c, k, h] says whether named
    allele h (as `build_match_data` restricts and reference-fills it) accepts allele code k at column c;
    wobble columns are those where some allele is an IUPAC code (scores then depend on the strand)."""
    hs = haplotype_set(gg.definition, tuple(avail.tolist()), True, False, exclude)
    H, A = hs.matrix.shape
    K = max(len(gg.alleles[li]) for li in avail.tolist())
    accept = np.zeros((A, K, H), dtype=bool)
    for c, li in enumerate(avail.tolist()):
        col = hs.matrix[:, c]
        for k, allele in enumerate(gg.alleles[li]):
            accept[c, k] = (col == "") | (col == allele)  # as compare_permutations: "" = any allele
    wob = set()
    for r, c, code in hs.wobble_cells:
        wob.add(c)
        for k, allele in enumerate(gg.alleles[avail[c]]):
            accept[c, k, r] = allele_matches(code, allele)
    return accept, np.array(sorted(wob), dtype=np.intp)


def _strand_matches(accept: np.ndarray, strands: np.ndarray) -> np.ndarray:
    """(strands, named alleles) bool: which named alleles each strand (allele codes per column) matches."""
    A = accept.shape[0]
    cols = np.arange(A)[None, :]
    out = np.empty((len(strands), accept.shape[2]), dtype=bool)
    for a in range(0, len(strands), _MATCH_BLOCK):
        out[a:a + _MATCH_BLOCK] = accept[cols, strands[a:a + _MATCH_BLOCK]].all(axis=1)
    return out


def outcome_keys(gg: GeneGenotypes, first: np.ndarray, caller: GeneCaller
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per pattern (representative sample `first[j]`): (outcome, facts, eligible, masks). Over eligible
    patterns, `outcome` rows (column 0: the row of `masks`, observed positions) determine the decision
    flow's result and `outcome` + `facts` rows the whole GeneCall.

    Eligible: every observed position has two alleles, documented (or read as the reference: genes in
    `undocumented_as_reference`), no phase set, and the strands are
    known (phased or homozygous everywhere, or a single heterozygous position), so the matcher's
    strand sequences are exactly the two GT strands. For those, PharmCAT's decision flow depends only
    on which named alleles each strand matches, the strands' alleles where definitions use IUPAC
    codes (scores), whether both strands are the same, and the observed positions (for the lowest-function
    genes, which name combinations and partial alleles from a strand's own variants: on the strands' alleles
    themselves, so a pattern's outcome is its unordered pair of strands); the call also
    shows whether all positions are phased, how many were filled as reference, the genotypes at the
    key positions interpretation reads, and the context-only positions. The key holds all of these,
    the two strands in a canonical order (the flow is symmetric in them)."""
    gdef = gg.definition
    L = len(gdef.loci)
    lowest = gg.gene in LOWEST_FUNCTION_GENES
    st = gg.status[first]
    g1 = gg.gt[first, :, 0].astype(np.int64)
    g2 = gg.gt[first, :, 1].astype(np.int64)
    ph = gg.phased[first]
    present = ~np.isin(st, MISSING_STATUSES)
    n_known = np.array([1 + len(loc.alts) for loc in gdef.loci], dtype=np.int64)
    undocumented = present & ((g1 >= n_known) | (g2 >= n_known))
    bad = present & ((g1 < 0) | (g2 < 0) | (ph & (gg.phase_set[first] != 0)))
    as_ref = undocumented_as_reference(gg.gene, caller.options.find_combinations)
    if not as_ref:
        bad |= undocumented
    # an undocumented allele is an allele of its own for phasing (as in sample_alleles), the reference for
    # matching where the gene reads it so
    het = present & (g1 != g2)
    c1, c2 = (np.where(g >= n_known, 0, g) for g in (g1, g2)) if as_ref else (g1, g2)
    ok = ~bad.any(axis=1) & present.any(axis=1) & (((het & ~ph).sum(axis=1) == 0) | (het.sum(axis=1) == 1))
    if caller.required:
        req = [li for li, loc in enumerate(gdef.loci) if loc.position in caller.required]
        ok &= present[:, req].all(axis=1)  # a missing required position has its own message
    if not ok.any():
        return np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64), ok, np.zeros((0, L), bool)
    sel = np.flatnonzero(ok)
    first_of_mask, mask_id = _unique_rows([present[sel]])
    masks = present[sel][first_of_mask]
    blocks = []
    for m, mask in enumerate(masks):
        rows = np.flatnonzero(mask_id == m)
        avail = np.flatnonzero(mask)
        s1, s2 = c1[sel[rows]][:, avail], c2[sel[rows]][:, avail]
        if lowest:
            # the lowest-function flow names what no single allele explains (combinations, partials) from the
            # strand's own alleles: a strand is keyed by its alleles (one matrix for all patterns)
            f1, f2 = s1, s2
        else:
            accept, wob = _accept_table(gg, avail, caller.ignored)
            m1, m2 = _strand_matches(accept, s1), _strand_matches(accept, s2)
            f1 = np.concatenate([m1, s1[:, wob]], axis=1).astype(np.int64)
            f2 = np.concatenate([m2, s2[:, wob]], axis=1).astype(np.int64)
        diff = f1 != f2
        first_diff = diff.argmax(axis=1)
        r = np.arange(len(rows))
        swap = diff.any(axis=1) & (f1[r, first_diff] > f2[r, first_diff])
        lo = np.where(swap[:, None], f2, f1)
        hi = np.where(swap[:, None], f1, f2)
        same = (s1 == s2).all(axis=1).astype(np.int64)[:, None]
        blocks.append((rows, np.concatenate([same, lo, hi], axis=1)))
    # masks of different sizes give rows of different widths: padded (the mask, column 0, tells them apart)
    strands = np.full((len(sel), max(b.shape[1] for _, b in blocks)), -9, dtype=np.int64)
    for rows, block in blocks:
        strands[rows, :block.shape[1]] = block
    key_loci = [li for li, loc in enumerate(gdef.loci) if loc.rsid in KEY_RSIDS]
    s = sel
    facts = [
        (st[s] == FILLED).sum(axis=1)[:, None],
        (ph[s] | ~present[s]).all(axis=1)[:, None],  # all observed positions phased
        st[s][:, key_loci], g1[s][:, key_loci], g2[s][:, key_loci], ph[s][:, key_loci],
        *([np.stack([x["codes"][first[s]] for x in gg.extra], axis=1)] if gg.extra else []),
    ]
    # the call lists the positions where undocumented alleles were read as the reference
    undocumented = undocumented[sel][:, undocumented[sel].any(axis=0)].astype(np.int64)
    outcome = np.concatenate([mask_id[:, None].astype(np.int64), strands, undocumented], axis=1)
    return outcome, np.concatenate([f.astype(np.int64) for f in facts], axis=1), ok, masks


def sample_alleles(gg: GeneGenotypes, si: int, find_combinations: bool, memo: dict | None = None
                   ) -> dict[int, SampleAllele]:
    """One sample's alleles at the gene's positions, in matcher form. `memo` keeps the objects made for
    one gene context (`PatternCaller._context`): samples share most of their per-position states."""
    gdef = gg.definition
    as_ref = undocumented_as_reference(gg.gene, find_combinations)
    out: dict[int, SampleAllele] = {}
    # the sample's row as Python values once (indexing numpy element by element costs more than the rest)
    statuses, gts = gg.status[si].tolist(), gg.gt[si].tolist()
    phases, phase_sets = gg.phased[si].tolist(), gg.phase_set[si].tolist()
    for li, loc in enumerate(gdef.loci):
        if statuses[li] in MISSING_STATUSES:
            continue
        c1, c2 = gts[li]
        phased = phases[li]
        ps = phase_sets[li] if phased and phase_sets[li] else None
        if memo is None:
            out[loc.position] = _sample_allele(loc, gg.alleles[li], c1, c2, phased, ps, as_ref)
            continue
        key = (li, c1, c2, phased, ps)
        a = memo.get(key)
        if a is None:
            a = memo[key] = _sample_allele(loc, gg.alleles[li], c1, c2, phased, ps, as_ref)
        out[loc.position] = a
    return out


def _sample_allele(loc, table: list[str], c1: int, c2: int, phased: bool, ps: int | None, as_ref: bool
                   ) -> SampleAllele:
    n_known = 1 + len(loc.alts)
    a1 = table[c1] if c1 >= 0 else None
    a2 = table[c2] if c2 >= 0 else None

    def computed(c: int, a: str | None) -> str | None:
        if c == MISSING_ALLELE:
            return "."
        if c == NO_ALLELE:
            return None
        return loc.ref if (as_ref and c >= n_known) else a

    distinct = {c for c in (c1, c2) if c >= 0}
    sep = "|" if phased else "/"
    return SampleAllele(
        locus=loc, allele1=a1, allele2=a2, called1=computed(c1, a1), called2=computed(c2, a2),
        phased=phased, effectively_phased=len(distinct) <= 1 or (phased and ps is None), phase_set=ps,
        gt=sep.join("." if c == MISSING_ALLELE else str(c) for c in (c1, c2) if c != NO_ALLELE),
        undocumented=c1 >= n_known or c2 >= n_known,
    )


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
        f"positions have no {gg.build} position in the knowledge base's mapping (PyPGx's variant table and SNVs "
        "interpolated between its positions) and are "
        "missing (never filled as reference); variants there cannot be seen."))]


def _fill_warnings(gg: GeneGenotypes, si: int) -> list[Message]:
    filled = int((gg.status[si] == FILLED).sum())
    if not filled:
        return []
    out = [Message(name="reference-filled", text=f"{filled} position(s) absent from the input were read as "
                                                 "homozygous reference (--missing-to-ref).")]
    return out + ([REMOTE_FILL] if gg.remote_fill else [])


def _evidence(gg: GeneGenotypes, si: int, sample: dict[int, SampleAllele], everything: bool
              ) -> list[PositionEvidence]:
    """Per-position evidence: every position for reports, the key positions interpretation reads otherwise."""
    evidence = []
    statuses = gg.status[si].tolist()
    for li, loc in enumerate(gg.definition.loci):
        if everything or loc.rsid in KEY_RSIDS:
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
    return evidence


def _variants_of_interest(gg: GeneGenotypes, si: int) -> list[VariantOfInterest]:
    return [VariantOfInterest(position=x["position"], rsid=x["rsid"], call=x["calls"][si]) for x in gg.extra]


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
    undocumented = [a.position for a in data.alleles if a.undocumented]
    evidence = _evidence(gg, si, {a.position: a for a in data.alleles}, with_evidence)
    statuses = gg.status[si].tolist()
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
        variants_of_interest=_variants_of_interest(gg, si),
    )
    if shared is not None:
        # thousands of distinct calls of a gene usually miss the same positions: keep one list
        missing = shared.setdefault((gdef.gene, tuple(call.missing_positions)), call.missing_positions)
        if missing is not call.missing_positions:
            call = GeneCall.model_construct(call.model_fields_set, **{**call.__dict__, "missing_positions": missing})
    return call

