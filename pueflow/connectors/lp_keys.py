"""Series ids of scanned fields (line protocol and JSON) by the 128-bit hash of their raw name bytes.

An open-addressing table (two uint64 hash halves -> int32 value) lives in numpy arrays so a
numba kernel looks up a whole poll at once; Python only resolves hashes not seen before. A
value >= 0 is a series id, a negative one -(1 + k) is reason ``k`` (a head that cannot be a
series, e.g. without a ``site`` tag), so a bad head costs Python once, not once a line.
"""

from __future__ import annotations

import numpy as np

from pueflow.jit import njit

MISSING = np.iinfo(np.int32).min


@njit
def _lookup(t1, t2, tv, h1, h2):
    mask = len(t1) - 1
    out = np.empty(len(h1), np.int32)
    for k in range(len(h1)):
        j = np.int64(h1[k] & np.uint64(mask))
        while True:
            if t1[j] == 0:
                out[k] = -2147483648
                break
            if t1[j] == h1[k] and t2[j] == h2[k]:
                out[k] = tv[j]
                break
            j = (j + 1) & mask
    return out


@njit
def _insert(t1, t2, tv, h1, h2, v):
    mask = len(t1) - 1
    added = 0
    for k in range(len(h1)):
        j = np.int64(h1[k] & np.uint64(mask))
        while t1[j] != 0 and not (t1[j] == h1[k] and t2[j] == h2[k]):
            j = (j + 1) & mask
        added += t1[j] == 0
        t1[j], t2[j], tv[j] = h1[k], h2[k], v[k]
    return added


class KeyTable:
    """Hash -> value map for :func:`pueflow.connectors.lp_scan.scan` field hashes.

    ``h1`` must be odd (never 0, the empty-slot mark); the scan guarantees it.
    """

    def __init__(self, capacity: int = 1 << 12):
        self._alloc(capacity)
        self.n = 0
        self.reasons: list[str] = []

    def _alloc(self, capacity: int) -> None:
        self.h1 = np.zeros(capacity, np.uint64)
        self.h2 = np.zeros(capacity, np.uint64)
        self.v = np.zeros(capacity, np.int32)

    def lookup(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        """Values of the hashes; :data:`MISSING` where unknown."""
        return _lookup(self.h1, self.h2, self.v, h1, h2)

    def insert(self, h1: np.ndarray, h2: np.ndarray, values: np.ndarray) -> None:
        """Add (or overwrite) entries, growing to stay at most half full."""
        if 2 * (self.n + len(h1)) > len(self.h1):
            used = self.h1 != 0
            old = (self.h1[used], self.h2[used], self.v[used])
            cap = len(self.h1)
            while 2 * (self.n + len(h1)) > cap:
                cap *= 2
            self._alloc(cap)
            _insert(self.h1, self.h2, self.v, *old)
        self.n += _insert(self.h1, self.h2, self.v, h1, h2, values.astype(np.int32))

    def reason_code(self, reason: str) -> int:
        """Return the negative value standing for ``reason``."""
        try:
            k = self.reasons.index(reason)
        except ValueError:
            self.reasons.append(reason)
            k = len(self.reasons) - 1
        return -1 - k
