"""The differencing check: two answers about sets of individuals that differ by only a few people tell
about those people (count(A) - count(A minus one person) is that person). A query whose set differs from an
earlier answered one (any token's: colluding institutions are covered) by 1..k-1 individuals is refused
when answers are exact, and answered only with noise when differential privacy is on.

Sets are kept as packed bits (N/8 bytes each) in memory and in the node's store, the last `history` of
them, so the check survives a restart. The same set asked again is fine: it tells nothing new.
"""

from __future__ import annotations

import numpy as np

from permed.federation.store import NodeStore

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


class QueryHistory:
    def __init__(self, store: NodeStore, n: int, keep: int):
        self.store, self.n, self.keep = store, n, keep
        width = (n + 7) // 8
        self.bits = np.zeros((keep, width), dtype=np.uint8)  # a ring of the last `keep` sets
        self.used = self.next = 0
        for b in (store.query_sets(n, keep) if keep else []):
            self._put(np.frombuffer(b, dtype=np.uint8))

    def _put(self, bits: np.ndarray) -> None:
        self.bits[self.next] = bits
        self.next = (self.next + 1) % self.keep
        self.used = min(self.used + 1, self.keep)

    def closest(self, mask: np.ndarray) -> int | None:
        """The smallest non-zero number of individuals by which `mask` differs from a remembered set."""
        if not self.used:
            return None
        diffs = _POPCOUNT[np.bitwise_xor(self.bits[:self.used], np.packbits(mask))].sum(axis=1)
        nz = diffs[diffs > 0]
        return int(nz.min()) if len(nz) else None

    def remember(self, mask: np.ndarray) -> None:
        if not self.keep:
            return
        bits = np.packbits(mask)
        if self.used and (self.bits[:self.used] == bits).all(axis=1).any():
            return  # asked before: already remembered
        self._put(bits)
        self.store.add_query_set(self.n, bits.tobytes(), self.keep)
