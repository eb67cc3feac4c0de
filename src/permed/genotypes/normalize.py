"""Match a VCF record's alleles to a definition locus whatever the representation.

Allele definitions use left-anchored, minimal VCF alleles.  Lab VCFs may pad REF (multi-allelic
records), split alleles over several records, write MNPs, or place an indel elsewhere in a
repeat.  Two representations are the same variant when applying each to the reference gives
the same sequence; we test that over the window both REF strings cover, which needs no genome
FASTA as long as the two REF spans overlap or touch.  Anything that cannot be verified is not
guessed: the caller reports it and the locus stays missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from permed.genotypes.locus_index import Site
from permed.kb.model import Locus

UNMAPPED = None


@dataclass(frozen=True)
class AlleleMapping:
    """Record allele index -> locus allele string (None = unusable / not about this locus)."""

    alleles: tuple[str | None, ...]
    covers_locus: bool  # the record's REF spans the whole locus, so its REF allele means locus REF
    exact: bool  # same position and same REF as the definition


def _window(locus: Locus | Site, pos: int, ref: str) -> tuple[int, str] | None:
    """Reference sequence over the union of two REF spans, or None if they disagree or leave a gap."""
    a0, a1 = locus.position, locus.position + len(locus.ref)
    b0, b1 = pos, pos + len(ref)
    if b0 > a1 or a0 > b1:
        return None  # gap: bases in between are unknown
    start, end = min(a0, b0), max(a1, b1)
    seq = [""] * (end - start)
    for p0, s in ((a0, locus.ref), (b0, ref)):
        for i, base in enumerate(s):
            k = p0 - start + i
            if seq[k] and seq[k] != base:
                return None
            seq[k] = base
    return start, "".join(seq)


def _apply(window_start: int, window: str, pos: int, ref: str, alt: str) -> str:
    i = pos - window_start
    return window[:i] + alt + window[i + len(ref):]


def map_record(locus: Locus | Site, pos: int, ref: str, alts: list[str]) -> AlleleMapping | None:
    """Map a record (POS, REF, ALTs) onto the definition locus; None if it says nothing about it."""
    ref = ref.upper()
    alts = [a.upper() for a in alts]
    table = (locus.ref, *locus.alts)
    if pos == locus.position and ref == locus.ref:
        return AlleleMapping((locus.ref, *alts), True, True)

    covers = pos <= locus.position and pos + len(ref) >= locus.position + len(locus.ref)
    # equal-length substitution (MNP) covering an SNV locus: read the base at the locus
    if locus.is_snv and covers and all(len(a) == len(ref) for a in alts if _plain(a)):
        off = locus.position - pos
        if ref[off] != locus.ref:
            return None
        return AlleleMapping((locus.ref, *(a[off] if _plain(a) else a for a in alts)), True, False)

    win = _window(locus, pos, ref)
    if win is None:
        return None
    w0, seq = win
    targets = {_apply(w0, seq, locus.position, locus.ref, t): t for t in table}
    found = [targets.get(_apply(w0, seq, pos, ref, a)) if _plain(a) else a for a in alts]
    hit = any(_plain(a) and t is not None and t != locus.ref for a, t in zip(alts, found))
    if not hit and not covers:
        return None
    # the record's REF means "not this variant" when it spans the locus or is this variant's representation
    mapped: list[str | None] = [locus.ref]
    for a, t in zip(alts, found):
        mapped.append(t if t is not None else f"{ref}>{a}@{pos}")
    return AlleleMapping(tuple(mapped), covers, False)


def _plain(allele: str) -> bool:
    return bool(allele) and all(c in "ACGTN" for c in allele)
