"""The columnar data path of the core: release held readings, order them, drop repeats.

Every reading is copied once, by :func:`~pueflow.pipeline.screen.screen`, into a buffer
(:class:`Buffers`) the core reuses from call to call. Releasing by watermark
(:func:`release_in_place`), then putting each series that went back in time or repeated a
time in order without its repeats (:func:`fix_series`, which touches only those series'
readings) work in that buffer without copying the rest: on a time-ordered or nearly
ordered input each step is one sequential pass.

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
        True for each series whose released readings go back in time or repeat a time
        somewhere (for :func:`fix_series`, which resets it).
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
            disordered[si] = True
            if ti < last:
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
def fix_series(t, s, v, flagged, last_i, ds, dt, dv):
    """Order each flagged series in time and drop its repeated readings, in place.

    Only the readings of flagged series move, each within the positions its own readings
    occupy: sorted by time (stable, so equal times keep arrival order; a series already in
    order, with only repeats, is not sorted), then of each repeated (series, time) the
    smallest value is kept (NaN last) and the others are marked dropped (series ``-1``,
    which the integrate kernel skips) and copied to ``ds``, ``dt``, ``dv``. Every other
    series is untouched, so each series ends up strictly increasing in time (the kernel
    needs no order across series).

    Parameters
    ----------
    t, s, v : arrays [int64 ns], [int32], [float64]
        Released readings.
    flagged : array [bool] per series
        From :func:`release_in_place`; reset to all False.
    last_i : array [int64] per series
        Scratch.
    ds, dt, dv : arrays [int32], [int64], [float64]
        Receive the dropped readings (room for all of ``t``).

    Returns
    -------
    int
        Readings dropped.
    """
    n = t.shape[0]
    n_series = flagged.shape[0]
    # each flagged series' positions, grouped by series (a counting sort), arrival order kept
    start = np.zeros(n_series + 1, np.int64)
    found = np.empty(n, np.int64)
    m = 0
    for i in range(n):  # the one pass over every reading
        si = s[i]
        if flagged[si]:
            start[si + 1] += 1
            found[m] = i
            m += 1
    for j in range(n_series):
        start[j + 1] += start[j]
    pos = np.empty(m, np.int64)
    for j in range(n_series):
        last_i[j] = start[j]
    for k in range(m):
        i = found[k]
        si = s[i]
        pos[last_i[si]] = i
        last_i[si] += 1
    d = 0
    for j in range(n_series):
        a, b = start[j], start[j + 1]
        if a == b:
            continue
        flagged[j] = False
        p = pos[a:b]
        nt = t[p]
        nv = v[p]
        if not _insertion_sort(nt, nv, 8 * (b - a) + 64):  # far from ordered: merge sort
            o = np.argsort(nt, kind="mergesort")
            nt = nt[o]
            nv = nv[o]
        keep = 0
        s[p[0]] = j
        for k in range(1, b - a):
            if nt[k] != nt[keep]:
                keep = k
                s[p[k]] = j
                continue
            if before(nv[k], nv[keep]):  # keep the smaller, drop the one kept so far
                nv[k], nv[keep] = nv[keep], nv[k]
            ds[d] = j
            dt[d] = nt[k]
            dv[d] = nv[k]
            d += 1
            s[p[k]] = -1
        for k in range(b - a):
            t[p[k]] = nt[k]
            v[p[k]] = nv[k]
    return d


@njit
def _insertion_sort(t, v, budget):
    """Sort ``t`` (and ``v`` along) stably in place, if it takes at most ``budget`` moves.

    A series a few readings late or out of order is nearly sorted: this takes one pass
    plus a move per place a reading is out of it. Returns False (``t`` partly sorted,
    equal times still in their original order) once the budget is spent.
    """
    for k in range(1, t.shape[0]):
        x = t[k]
        if x >= t[k - 1]:
            continue
        y = v[k]
        j = k
        while j > 0 and t[j - 1] > x:
            t[j] = t[j - 1]
            v[j] = v[j - 1]
            j -= 1
        t[j] = x
        v[j] = y
        budget -= k - j
        if budget < 0:
            return False
    return True


class Buffers:
    """Arrays the data path reuses between calls; they only grow.

    Attributes
    ----------
    t, s, v : arrays [int64 ns], [int32], [float64]
        Held readings plus the batch being screened.
    ev_idx, ev_code, ev_val : arrays [int64], [int8], [float64]
        Integration events (two per reading at most).
    ds, dt, dv : arrays [int32], [int64], [float64]
        Repeated readings dropped by :func:`fix_series`.
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


__all__ = ["DISORDERED", "ORDERED", "REPEATS", "Buffers", "fix_series", "release_in_place"]
