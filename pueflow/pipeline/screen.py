"""Per-reading screening in arrival order, and the sort/dedup of released readings.

Screening decides, for each reading, whether it is usable, and advances each site's
watermark. A reading's fate depends only on the readings that arrived before it, never on
where the stream was cut into batches, so splitting input anywhere gives the same result.
"""

from __future__ import annotations

import numpy as np

from pueflow.jit import njit

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
def sort_dedup_arrays(series, time_ns, value, n_series, want_order=True):
    """Order readings by (series, time), drop duplicate (series, time) readings.

    One counting-sort pass scatters the readings into contiguous per-series runs, so the
    order check and the dedup read memory sequentially. Among duplicates the smallest value
    is kept (NaN last), so the choice does not depend on arrival order.

    Returns ``(kept, dup, s, t, v, ds, dt, dv)``: ``kept`` and ``dup`` index the input
    (kept readings in sorted order, dropped duplicates); ``s``, ``t``, ``v`` are the kept
    readings, sorted; ``ds``, ``dt``, ``dv`` the dropped duplicates themselves. With
    ``want_order=False`` the permutation is not tracked (one scatter stream less) and
    ``kept``/``dup`` hold nothing useful (``dup`` is -1).
    """
    n = series.shape[0]
    counts = np.zeros(n_series + 1, np.int64)
    for i in range(n):
        counts[series[i] + 1] += 1
    for k in range(n_series):
        counts[k + 1] += counts[k]
    order = np.empty(n if want_order else 0, np.int64)
    t = np.empty(n, np.int64)
    v = np.empty(n, np.float64)
    pos = counts[:-1].copy()
    for i in range(n):
        p = pos[series[i]]
        if want_order:
            order[p] = i
        t[p] = time_ns[i]
        v[p] = value[i]
        pos[series[i]] = p + 1
    # within each series, sort by (time, value) unless already sorted (the usual case);
    # the same pass counts duplicates and writes the series column for the no-dup case
    n_dup = 0
    s_all = np.empty(n, np.int32)
    for k in range(n_series):
        lo = counts[k]
        hi = counts[k + 1]
        ok = True
        for j in range(lo + 1, hi):
            if t[j] < t[j - 1] or (t[j] == t[j - 1] and _before(v[j], v[j - 1])):
                ok = False
                break
        if not ok:
            perm = np.argsort(v[lo:hi], kind="mergesort")
            perm = perm[np.argsort(t[lo:hi][perm], kind="mergesort")]
            if want_order:
                order[lo:hi] = order[lo:hi][perm]
            t[lo:hi] = t[lo:hi][perm]
            v[lo:hi] = v[lo:hi][perm]
        for j in range(lo, hi):
            s_all[j] = k
        for j in range(lo + 1, hi):
            if t[j] == t[j - 1]:
                n_dup += 1
    if n_dup == 0:  # nothing to drop: the scattered arrays are the result
        return (order if want_order else np.empty(0, np.int64), np.empty(0, np.int64), s_all,
                t, v, np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64))
    kept = np.empty(n - n_dup if want_order else 0, np.int64)
    dup = np.empty(n_dup, np.int64)
    s_out = np.empty(n - n_dup, np.int32)
    ds = np.empty(n_dup, np.int32)
    dt = np.empty(n_dup, np.int64)
    dv = np.empty(n_dup, np.float64)
    w = 0
    d = 0
    for k in range(n_series):
        for j in range(counts[k], counts[k + 1]):
            if j > counts[k] and t[j] == t[j - 1]:
                dup[d] = order[j] if want_order else -1
                ds[d] = k
                dt[d] = t[j]
                dv[d] = v[j]
                d += 1
                continue
            if want_order:
                kept[w] = order[j]
            s_out[w] = k
            t[w] = t[j]
            v[w] = v[j]
            w += 1
    return kept, dup, s_out, t[:w], v[:w], ds, dt, dv


def sort_dedup(series, time_ns, value, n_series):
    """``(kept, dup)`` of :func:`sort_dedup_arrays` (indices into the input)."""
    kept, dup, _, _, _, _, _, _ = sort_dedup_arrays(series, time_ns, value, n_series)
    return kept, dup


#: :func:`series_order` results: each series strictly increasing in time, non-decreasing
#: (a repeated time: duplicates), or going back in time somewhere.
ORDERED, REPEATS, DISORDERED = 0, 1, 2


@njit
def series_order(series, time_ns, scratch):
    """How each series' readings are ordered in time, in arrival order.

    ``ORDERED`` readings need no sort and hold no duplicate: the integrate kernel takes
    them as they are (one pass, no scatter); ``REPEATS`` need only
    :func:`dedup_ordered`. ``scratch`` [int64, per series] must hold ``NO_TIME`` on entry
    and does again on return.
    """
    n = series.shape[0]
    out = ORDERED
    m = 0
    for i in range(n):
        s = series[i]
        t = time_ns[i]
        m = i + 1
        if t <= scratch[s]:
            if t < scratch[s]:
                out = DISORDERED
                break
            out = REPEATS
        scratch[s] = t
    for i in range(m):
        scratch[series[i]] = np.iinfo(np.int64).min
    return out


@njit
def dedup_ordered(series, time_ns, value, last_t, last_i):
    """Drop repeated (series, time) readings of a ``REPEATS`` batch, keeping arrival order.

    As :func:`sort_dedup_arrays`, the smallest value of a repeated reading is kept (NaN
    last). ``last_t`` [int64] and ``last_i`` [int64] are per-series scratch; ``last_t``
    must hold ``NO_TIME`` on entry and does again on return. Returns
    ``(s, t, v, ds, dt, dv)``: kept readings, then dropped ones.
    """
    n = series.shape[0]
    s_out = np.empty(n, np.int32)
    t_out = np.empty(n, np.int64)
    v_out = np.empty(n, np.float64)
    ds = np.empty(n, np.int32)
    dt = np.empty(n, np.int64)
    dv = np.empty(n, np.float64)
    w = 0
    d = 0
    for i in range(n):
        s = series[i]
        t = time_ns[i]
        v = value[i]
        if t == last_t[s]:
            k = last_i[s]
            if _before(v, v_out[k]):  # keep the smaller, drop the one kept so far
                v, v_out[k] = v_out[k], v
            ds[d] = s
            dt[d] = t
            dv[d] = v
            d += 1
            continue
        last_t[s] = t
        last_i[s] = w
        s_out[w] = s
        t_out[w] = t
        v_out[w] = v
        w += 1
    for i in range(n):
        last_t[series[i]] = np.iinfo(np.int64).min
    return s_out[:w], t_out[:w], v_out[:w], ds[:d], dt[:d], dv[:d]


@njit
def append_ok(p_t, p_s, p_v, t, s, v, codes):
    """``p`` followed by the readings of ``(t, s, v)`` whose screen code is ``OK``: one copy."""
    m = p_t.shape[0]
    n_ok = 0
    for i in range(t.shape[0]):
        if codes[i] == OK:
            n_ok += 1
    o_t = np.empty(m + n_ok, np.int64)
    o_s = np.empty(m + n_ok, np.int32)
    o_v = np.empty(m + n_ok, np.float64)
    o_t[:m] = p_t
    o_s[:m] = p_s
    o_v[:m] = p_v
    w = m
    for i in range(t.shape[0]):
        if codes[i] == OK:
            o_t[w] = t[i]
            o_s[w] = s[i]
            o_v[w] = v[i]
            w += 1
    return o_t, o_s, o_v


@njit
def release(t, s, v, site_of, site_wm):
    """Split readings into released (older than their site's watermark) and held.

    Each side keeps arrival order; returns ``(rt, rs, rv, ht, hs, hv)``, the inputs
    themselves when one side is empty.
    """
    n = t.shape[0]
    n_r = 0
    for i in range(n):
        if t[i] < site_wm[site_of[s[i]]]:
            n_r += 1
    if n_r == n:
        return t, s, v, t[:0], s[:0], v[:0]
    if n_r == 0:
        return t[:0], s[:0], v[:0], t, s, v
    rt = np.empty(n_r, np.int64)
    rs = np.empty(n_r, np.int32)
    rv = np.empty(n_r, np.float64)
    ht = np.empty(n - n_r, np.int64)
    hs = np.empty(n - n_r, np.int32)
    hv = np.empty(n - n_r, np.float64)
    a = 0
    b = 0
    for i in range(n):
        if t[i] < site_wm[site_of[s[i]]]:
            rt[a] = t[i]
            rs[a] = s[i]
            rv[a] = v[i]
            a += 1
        else:
            ht[b] = t[i]
            hs[b] = s[i]
            hv[b] = v[i]
            b += 1
    return rt, rs, rv, ht, hs, hv


@njit
def note_first(series, time_ns, first_t):
    """Set ``first_t`` [ns] of series seeing their first reading (the earliest of each)."""
    no = np.iinfo(np.int64).min
    for i in range(series.shape[0]):
        s = series[i]
        if first_t[s] == no:
            first_t[s] = time_ns[i]


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
