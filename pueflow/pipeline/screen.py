"""Per-reading screening in arrival order, and the sort/dedup of released readings.

Screening decides, for each reading, whether it is usable, and advances each site's
watermark. A reading's fate depends only on the readings that arrived before it, never on
where the stream was cut into batches, so splitting input anywhere gives the same result.
"""

from __future__ import annotations

import numpy as np

from pueflow.pipeline.jit import njit

OK, UNKNOWN, FUTURE, INVALID, SPIKE, LATE = 0, 1, 2, 3, 4, 5
#: Quality kind for each screen code.
SCREEN_NAMES = {UNKNOWN: "unknown_series", FUTURE: "future", INVALID: "invalid_value",
                SPIKE: "spike", LATE: "late"}
_KIND_POWER = 1


@njit
def screen(time_ns, series, value, site_of, role_of, kind_of, signed, max_kw,
           site_max_t, site_wm, grace_ns, future_limit_ns, out_code):
    """Classify each reading and advance per-site watermarks (in place).

    Parameters
    ----------
    time_ns, series, value : arrays [int64 ns], [int32], [float64]
        Readings in arrival order.
    site_of, role_of, kind_of, signed, max_kw : arrays indexed by series
        ``site_of < 0`` or ``role_of < 0`` marks an unknown series.
    site_max_t, site_wm : arrays [int64 ns] indexed by site, updated in place
        Highest accepted event time, and the watermark (never decreases).
    grace_ns : int
        Readings older than the watermark (max event time − grace) are late.
    future_limit_ns : int
        Readings later than this are rejected as from the future (a bad clock).
    out_code : array [int8], written
        ``OK`` or the reason (``UNKNOWN``, ``FUTURE``, ``INVALID``, ``SPIKE``, ``LATE``).
    """
    for i in range(time_ns.shape[0]):
        s = series[i]
        if s < 0 or s >= site_of.shape[0] or site_of[s] < 0 or role_of[s] < 0:
            out_code[i] = UNKNOWN
            continue
        t = time_ns[i]
        if t > future_limit_ns:
            out_code[i] = FUTURE
            continue
        v = value[i]
        if not np.isfinite(v) or (v < 0.0 and not signed[s] and kind_of[s] != 2):
            out_code[i] = INVALID
            continue
        if kind_of[s] == _KIND_POWER and abs(v) > max_kw[s]:
            out_code[i] = SPIKE
            continue
        site = site_of[s]
        if t < site_wm[site]:
            out_code[i] = LATE
            continue
        out_code[i] = OK
        if t > site_max_t[site]:
            site_max_t[site] = t
            wm = t - grace_ns
            if wm > site_wm[site]:
                site_wm[site] = wm


@njit
def _before(x, y):
    """Total order on floats for tie-breaking: NaN after every number."""
    return x < y or (np.isnan(y) and not np.isnan(x))


@njit
def sort_dedup(series, time_ns, value, n_series):
    """Order readings by (series, time) and drop duplicate (series, time) readings.

    Among duplicates the smallest value is kept, so the choice does not depend on arrival
    order. Returns ``(order, dup)``: ``order`` indexes the kept readings in sorted order;
    ``dup`` indexes the dropped duplicates.
    """
    n = series.shape[0]
    counts = np.zeros(n_series + 1, np.int64)
    for i in range(n):
        counts[series[i] + 1] += 1
    for k in range(n_series):
        counts[k + 1] += counts[k]
    order = np.empty(n, np.int64)
    pos = counts[:-1].copy()
    for i in range(n):
        s = series[i]
        order[pos[s]] = i
        pos[s] += 1
    # within each series, sort by (time, value) unless already sorted
    for k in range(n_series):
        lo = counts[k]
        hi = counts[k + 1]
        ok = True
        for j in range(lo + 1, hi):
            a = order[j - 1]
            b = order[j]
            if time_ns[b] < time_ns[a] or (time_ns[b] == time_ns[a] and _before(value[b], value[a])):
                ok = False
                break
        if not ok:
            seg = order[lo:hi].copy()
            # lexicographic (time, value) via a stable sort on value then on time
            seg = seg[np.argsort(value[seg], kind="mergesort")]
            seg = seg[np.argsort(time_ns[seg], kind="mergesort")]
            order[lo:hi] = seg
    keep = np.ones(n, np.bool_)
    n_dup = 0
    for j in range(1, n):
        a = order[j - 1]
        b = order[j]
        if series[a] == series[b] and time_ns[a] == time_ns[b]:
            keep[j] = False
            n_dup += 1
    kept = np.empty(n - n_dup, np.int64)
    dup = np.empty(n_dup, np.int64)
    ik = 0
    idp = 0
    for j in range(n):
        if keep[j]:
            kept[ik] = order[j]
            ik += 1
        else:
            dup[idp] = order[j]
            idp += 1
    return kept, dup


@njit
def close_time(site_series, last_t, max_gap_ns, watermark_ns):
    """Latest time up to which every bucket of one site is final [ns].

    A bucket ending at ``e`` can still receive energy from a series whose last reading is
    before ``e`` if the next reading (at or after the watermark) is within ``max_gap``.
    Series that have not reported, or whose gap already exceeds ``max_gap``, cannot.
    """
    ct = watermark_ns
    for j in range(site_series.shape[0]):
        s = site_series[j]
        t = last_t[s]
        if t == np.iinfo(np.int64).min:
            continue
        if t + max_gap_ns[s] >= watermark_ns and t < ct:
            ct = t
    return ct


@njit
def site_span(site, time_ns, n_sites):
    """Earliest and latest reading time per site [ns]; ``NO_TIME`` bounds where none."""
    lo = np.full(n_sites, np.iinfo(np.int64).max, np.int64)
    hi = np.full(n_sites, np.iinfo(np.int64).min, np.int64)
    for i in range(site.shape[0]):
        s = site[i]
        t = time_ns[i]
        if t < lo[s]:
            lo[s] = t
        if t > hi[s]:
            hi[s] = t
    return lo, hi
