"""Ordering of haplotype names, as PharmCAT orders them in its output.

Rules (PharmCAT 3.x):
* plain names sort before combination names ("[a + b]"); combinations with fewer parts first,
  then by their first part;
* genomic/coding HGVS names ("c.1627A>G (*5)", "g.94781859G>A") sort by their position number;
* "Reference" (and "Any"/"All") first, "Unknown"/"Other" last;
* otherwise a natural sort in which digit runs compare as numbers ("*2" < "*10").

PharmCAT's own comparator is not transitive when kinds are mixed; Python's sort only needs a
consistent pairwise rule, and we apply exactly the same pairwise rule so results agree.
"""

from __future__ import annotations

import re
from functools import cmp_to_key, lru_cache

COMBINATION_JOINER = " + "
_TOP = ("Any", "All", "Reference")
_BOTTOM = ("Other", "Unknown")
_HGVS = re.compile(r"(?:.*:)?[cgnmopr]\.(\d+).*")
_DIGITS = re.compile(r"(\d+)")


def is_combination_name(name: str) -> bool:
    return name.startswith("[") and COMBINATION_JOINER in name and name.endswith("]")


def combination_parts(name: str) -> list[str]:
    """Components of a bracketed combination name (the name itself if not a combination)."""
    if is_combination_name(name):
        return [p.strip() for p in name[1:-1].split(COMBINATION_JOINER)]
    return [name]


@lru_cache(maxsize=65536)
def _natural_parts(s: str) -> tuple:
    return tuple(int(p) if i % 2 else p for i, p in enumerate(_DIGITS.split(s)) if p != "")


def _natural_cmp(a: str, b: str) -> int:
    pa, pb = _natural_parts(a), _natural_parts(b)
    for x, y in zip(pa, pb):
        if isinstance(x, int) and isinstance(y, int):
            c = (x > y) - (x < y)
        elif isinstance(x, str) and isinstance(y, str):
            c = (x > y) - (x < y)
        else:
            c = 1 if isinstance(x, str) else -1  # "XXXa" sorts after "XXX1"
        if c:
            return c
    return (len(pa) > len(pb)) - (len(pa) < len(pb))


def _common_cmp(a: str, b: str) -> int:
    if a == b:
        return 0
    if a in _TOP or b in _BOTTOM:
        return -1
    if b in _TOP or a in _BOTTOM:
        return 1
    return _natural_cmp(a, b)


def name_cmp(a: str, b: str) -> int:
    """Pairwise order of two haplotype names."""
    if a == b:
        return 0
    ca, cb = is_combination_name(a), is_combination_name(b)
    if ca != cb:
        return 1 if ca else -1
    if ca:
        pa, pb = combination_parts(a), combination_parts(b)
        if len(pa) != len(pb):
            return -1 if len(pa) < len(pb) else 1
        a, b = pa[0], pb[0]
    ha, hb = _HGVS.fullmatch(a), _HGVS.fullmatch(b)
    if ha and hb:
        na, nb = int(ha.group(1)), int(hb.group(1))
        if na == nb:
            return (a > b) - (a < b)
        return -1 if na < nb else 1
    return _common_cmp(a, b)


def match_name_cmp(a: str, b: str) -> int:
    """Order of two haplotype matches by name: `name_cmp`, then part by part for combinations."""
    c = name_cmp(a, b)
    if c or a == b:
        return c
    for x, y in zip(combination_parts(a), combination_parts(b)):
        c = name_cmp(x, y)
        if c:
            return c
    return (a > b) - (a < b)


name_key = cmp_to_key(name_cmp)
match_name_key = cmp_to_key(match_name_cmp)
