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
           site_max_t, site_wm, grace_ns, future_limit_ns, out_code, o_t, o_s, o_v, w,
           held_min):
    """Classify each reading, advance per-site watermarks, and append the good readings.

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
    o_t, o_s, o_v : arrays [int64 ns], [int32], [float64]
        Buffer receiving the ``OK`` readings in arrival order from position ``w`` on (the
        core's held readings come first); it must hold ``w + len(time_ns)`` readings.
    w : int
        Readings already in the buffer.
    held_min : array [int64 ns] indexed by site, updated in place
        Earliest time in the buffer per site: lowered by each reading appended.

    Returns
    -------
    int
        Readings in the buffer afterwards.
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
        o_t[w] = t
        o_s[w] = s
        o_v[w] = v
        w += 1
        if t < held_min[site]:
            held_min[site] = t
        if t > site_max_t[site]:
            site_max_t[site] = t
            wm = t - grace_ns
            if wm > site_wm[site]:
                site_wm[site] = wm
    return w


@njit
def before(x, y):
    """Total order on floats for tie-breaking: NaN after every number."""
    return x < y or (np.isnan(y) and not np.isnan(x))


#: :func:`series_order` results: each series strictly increasing in time, non-decreasing
#: (a repeated time: duplicates), or going back in time somewhere.
ORDERED, REPEATS, DISORDERED = 0, 1, 2


@njit
def note_first(series, time_ns, first_t):
    """Set ``first_t`` [ns] of series seeing their first reading (the earliest of each).

    Readings marked dropped (series ``-1``) are skipped.
    """
    no = np.iinfo(np.int64).min
    for i in range(series.shape[0]):
        s = series[i]
        if s >= 0 and first_t[s] == no:
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
