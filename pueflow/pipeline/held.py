"""The columnar data path of the core: release held readings, order them, drop repeats.

Every reading is copied once, by :func:`~pueflow.pipeline.screen.screen`, into a buffer
(:class:`Buffers`) the core reuses from call to call; releasing by watermark
(:func:`release_in_place`), putting each series in time order (:func:`order_series`) and
dropping repeated readings (:func:`dedup_in_place`) then work in that buffer without
allocating. On a time-ordered or nearly ordered input
each step is one sequential pass, and the working set stays in cache between steps.

The rules are those of :mod:`pueflow.pipeline.screen` (screen codes, the smallest of a
repeated reading's values kept, NaN last); only the copies are gone.
"""

from __future__ import annotations

import numpy as np

from pueflow.jit import njit
from pueflow.pipeline.screen import DISORDERED, ORDERED, REPEATS, before

_NO_TIME = np.iinfo(np.int64).min


@njit
def release_in_place(t, s, v, site_of, site_wm, seen, disordered, lo, hi, held_min):
    """Move the readings older than their site's watermark to the front; copy out the rest.

    Parameters
    ----------
    t, s, v : arrays [int64 ns], [int32], [float64]
        Held readings in arrival order; released ones are compacted to the front, in
        arrival order (in place).
    site_of : array [int32] per series
    site_wm : array [int64 ns] per site
        A reading is released when its time is before its site's watermark.
    seen : array [int64] per series
        Scratch holding ``NO_TIME`` on entry; so it does again on return.
    disordered : array [bool] per series, written
        True for each series whose released readings go back in time somewhere (for
        :func:`order_series`); the caller resets it.
    lo, hi : arrays [int64 ns] per site, written
        Earliest and latest released reading per site (max int64 / ``NO_TIME`` where none).
    held_min : array [int64 ns] per site, written
        Earliest reading still held per site (max int64 where none).

    Returns
    -------
    (int, array, array, array, int)
        Released readings (now ``t[:w]`` …), the held ones (own arrays, arrival order; the
        inputs themselves when none is released), and :data:`ORDERED`, :data:`REPEATS`
        or :data:`DISORDERED` for the released ones.
    """
    n = t.shape[0]
    lo[:] = np.iinfo(np.int64).max
    hi[:] = _NO_TIME
    held_min[:] = np.iinfo(np.int64).max
    # room for every reading; only the held ones are written (the rest is never touched)
    ht = np.empty(n, np.int64)
    hs = np.empty(n, np.int32)
    hv = np.empty(n, np.float64)
    w = 0
    h = 0
    state = ORDERED
    for i in range(n):
        ti = t[i]
        si = s[i]
        site = site_of[si]
        if ti >= site_wm[site]:
            if ti < held_min[site]:
                held_min[site] = ti
            ht[h] = ti
            hs[h] = si
            hv[h] = v[i]
            h += 1
            continue
        if w != i:
            t[w] = ti
            s[w] = si
            v[w] = v[i]
        w += 1
        last = seen[si]
        if ti <= last:
            if ti < last:
                disordered[si] = True
                state = DISORDERED
            elif state == ORDERED:
                state = REPEATS
        else:
            seen[si] = ti
        if ti < lo[site]:
            lo[site] = ti
        if ti > hi[site]:
            hi[site] = ti
    for i in range(w):
        seen[s[i]] = _NO_TIME
    if w == 0:
        return 0, t, s, v, ORDERED
    return w, ht[:h].copy(), hs[:h].copy(), hv[:h].copy(), state


@njit
def order_series(t, s, v, disordered):
    """Put each flagged series' readings in time order, in the positions they occupy (in place).

    The other series are not moved, so every series ends up in time order while the
    readings keep their interleaving; equal times keep arrival order (a stable sort).
    Resets ``disordered`` [bool, per series] to all False.
    """
    n = t.shape[0]
    pos = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if disordered[s[i]]:
            pos[m] = i
            m += 1
    pos = pos[:m]
    perm = pos[np.argsort(t[pos], kind="mergesort")]
    nt = t[perm]
    ns = s[perm]
    nv = v[perm]
    for k in range(m):
        p = pos[k]
        t[p] = nt[k]
        s[p] = ns[k]
        v[p] = nv[k]
        disordered[ns[k]] = False


@njit
def dedup_in_place(s, t, v, last_t, last_i, ds, dt, dv):
    """Drop repeated (series, time) readings of series each in time order, in place.

    As :func:`~pueflow.pipeline.screen.dedup_ordered`: the smallest value of a repeated
    reading is kept (NaN last), the others are written to ``ds``, ``dt``, ``dv`` (each as
    long as the input). ``last_t`` [int64] and ``last_i`` [int64] are per-series scratch;
    ``last_t`` holds ``NO_TIME`` on entry and does again on return.

    Returns
    -------
    (int, int)
        Readings kept (now ``s[:w]`` …) and dropped.
    """
    n = s.shape[0]
    w = 0
    d = 0
    for i in range(n):
        si = s[i]
        ti = t[i]
        vi = v[i]
        if ti == last_t[si]:
            k = last_i[si]
            if before(vi, v[k]):  # keep the smaller, drop the one kept so far
                vi, v[k] = v[k], vi
            ds[d] = si
            dt[d] = ti
            dv[d] = vi
            d += 1
            continue
        last_t[si] = ti
        last_i[si] = w
        s[w] = si
        t[w] = ti
        v[w] = vi
        w += 1
    for i in range(w):
        last_t[s[i]] = _NO_TIME
    return w, d


class Buffers:
    """Arrays the data path reuses between calls; they only grow.

    Attributes
    ----------
    t, s, v : arrays [int64 ns], [int32], [float64]
        Held readings plus the batch being screened.
    ev_idx, ev_code, ev_val : arrays [int64], [int8], [float64]
        Integration events (two per reading at most).
    ds, dt, dv : arrays [int32], [int64], [float64]
        Repeated readings dropped by :func:`dedup_in_place`.
    """

    def __init__(self) -> None:
        self.t = np.empty(0, np.int64)
        self.s = np.empty(0, np.int32)
        self.v = np.empty(0, np.float64)
        self.ev_idx = np.empty(0, np.int64)
        self.ev_code = np.empty(0, np.int8)
        self.ev_val = np.empty(0, np.float64)
        self.ds = np.empty(0, np.int32)
        self.dt = np.empty(0, np.int64)
        self.dv = np.empty(0, np.float64)

    def readings(self, n: int) -> None:
        """Make room for ``n`` readings in ``t, s, v`` (contents are not kept)."""
        if len(self.t) < n:
            cap = max(n, len(self.t) + len(self.t) // 2)
            self.t = np.empty(cap, np.int64)
            self.s = np.empty(cap, np.int32)
            self.v = np.empty(cap, np.float64)

    def events(self, n: int) -> None:
        """Make room for the events and dropped repeats of ``n`` readings."""
        if len(self.ds) < n:
            cap = max(n, len(self.ds) + len(self.ds) // 2)
            self.ev_idx = np.empty(2 * cap, np.int64)
            self.ev_code = np.empty(2 * cap, np.int8)
            self.ev_val = np.empty(2 * cap, np.float64)
            self.ds = np.empty(cap, np.int32)
            self.dt = np.empty(cap, np.int64)
            self.dv = np.empty(cap, np.float64)


__all__ = ["DISORDERED", "ORDERED", "REPEATS", "Buffers", "dedup_in_place", "order_series",
           "release_in_place"]
