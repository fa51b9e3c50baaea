"""Energy from meter readings: register deltas and trapezoid integration into time buckets.

Kernels are pure functions over numpy arrays. Time is int64 nanoseconds, energy kWh,
power kW. Readings arrive sorted by (series, time) with duplicates removed (see
:mod:`pueflow.pipeline.screen`); per-series state carries across calls, so a series
split across batches at any point integrates exactly as if it came in one piece.

Rules (DESIGN.md "KPI rules"):

- register: delta of the cumulative register. A decrease with the previous value near the
  register maximum is a rollover (``max - prev + cur``); a decrease within the jitter
  tolerance adds 0 and keeps the max-so-far; any other decrease is a reset (add ``cur``).
  A delta whose implied power exceeds ``max_kw`` (a reset's or rollover's included) is a
  spike: excluded, state unchanged;
  three spikes in a row re-base the register on the latest reading (a replaced meter).
  The delta is spread uniformly over the interval when it is no longer than ``max_gap``,
  else it is booked at the later reading (a register never loses energy) and the interval
  counts as a gap.
- power: trapezoid between consecutive samples, split exactly at bucket boundaries
  (power is linear between samples). An interval longer than ``max_gap`` is not filled.
- coverage: nanoseconds of each bucket covered by filled intervals.
"""

from __future__ import annotations

import numpy as np

from pueflow.jit import njit

NS_PER_HOUR = 3_600_000_000_000.0
NO_TIME = np.iinfo(np.int64).min

KIND_REGISTER, KIND_POWER, KIND_SENSOR = 0, 1, 2
# event codes produced by integrate()
EV_ROLLOVER, EV_RESET, EV_SPIKE, EV_REBASE, EV_GAP = 1, 2, 3, 4, 5
EVENT_NAMES = {EV_ROLLOVER: "rollover", EV_RESET: "reset", EV_SPIKE: "spike",
               EV_REBASE: "rebase", EV_GAP: "gap"}
#: Events counted per bucket, and their column in the per-site event counts.
EV_COLUMNS = {EV_ROLLOVER: 0, EV_RESET: 1, EV_GAP: 2}
#: A decrease counts as a rollover only if the previous reading was in the top decile.
ROLLOVER_ZONE = 0.9
SPIKES_BEFORE_REBASE = 3


@njit
def _floordiv(a, b):
    q = a // b
    return q


@njit
def _spread_uniform(acc_e, acc_cov, s, b0, base_ns, t0, t1, energy, add_cov):
    """Book ``energy`` spread uniformly over [t0, t1) into row ``s`` (slot = bucket - b0)."""
    dt = t1 - t0
    b = _floordiv(t0, base_ns)
    bl = _floordiv(t1 - 1, base_ns)
    if b == bl:
        acc_e[s, b - b0] += energy
        if add_cov:
            acc_cov[s, b - b0] += dt
        return
    lo = t0
    while b <= bl:
        hi = min((b + 1) * base_ns, t1)
        acc_e[s, b - b0] += energy * ((hi - lo) / dt)
        if add_cov:
            acc_cov[s, b - b0] += hi - lo
        lo = hi
        b += 1


@njit
def _spread_linear(acc_e, acc_cov, s, b0, base_ns, t0, v0, t1, v1):
    """Integrate power linear from (t0, v0) to (t1, v1) [kW] into buckets [kWh]."""
    dt = t1 - t0
    b = _floordiv(t0, base_ns)
    bl = _floordiv(t1 - 1, base_ns)
    if b == bl:
        acc_e[s, b - b0] += (v0 + v1) * 0.5 * (dt / NS_PER_HOUR)
        acc_cov[s, b - b0] += dt
        return
    slope = (v1 - v0) / dt
    lo = t0
    vlo = v0
    while b <= bl:
        hi = min((b + 1) * base_ns, t1)
        vhi = v1 if hi == t1 else v0 + slope * (hi - t0)
        acc_e[s, b - b0] += (vlo + vhi) * 0.5 * ((hi - lo) / NS_PER_HOUR)
        acc_cov[s, b - b0] += hi - lo
        lo = hi
        vlo = vhi
        b += 1


@njit
def integrate(time_ns, series, value, kind, register_max, jitter, max_gap_ns, max_kw,
              site_of, b0_of_site, base_ns,
              last_t, last_v, spike_run,
              acc_e, acc_cov, acc_sum, acc_n,
              ev_idx, ev_code, ev_val):
    """Integrate released readings into per-series bucket accumulators.

    Parameters
    ----------
    time_ns, series, value : arrays [int64 ns], [int32], [float64]
        Readings sorted by (series, time), one reading per (series, time).
    kind, register_max, jitter, max_gap_ns, max_kw, site_of : arrays indexed by series
        Meter parameters (:class:`~pueflow.schema.registry.Registry`).
    b0_of_site : array [int64]
        First bucket index held in the accumulators, per site (slot = bucket - b0).
    base_ns : int
        Bucket length [ns].
    last_t, last_v, spike_run : arrays indexed by series, updated in place
        Per-series state: previous accepted reading (register: max-so-far) and the count of
        consecutive register spikes. ``last_t == NO_TIME`` means no reading yet.
    acc_e, acc_cov : 2-D arrays [series, slot], updated in place
        Energy [kWh] and covered time [ns] per bucket.
    acc_sum, acc_n : 2-D arrays [series, slot], updated in place
        Sum and count of sensor readings per bucket.
    ev_idx, ev_code, ev_val : output arrays, length >= 2 * len(time_ns)
        Quality events: reading index, code (``EV_*``) and a value (energy or delta). A
        reading can show two events (a reset or rollover after a gap).

    Returns
    -------
    int
        Number of events written.
    """
    n_ev = 0
    n = time_ns.shape[0]
    i = 0
    while i < n:
        s = series[i]
        j = i + 1
        while j < n and series[j] == s:
            j += 1
        # readings i..j-1 belong to series s (a long run when sorted, often 1 in arrival order)
        b0 = b0_of_site[site_of[s]]
        k = kind[s]
        if k == KIND_POWER:
            n_ev = _power_run(time_ns, value, i, j, s, b0, base_ns, max_gap_ns[s], last_t,
                              last_v, acc_e, acc_cov, ev_idx, ev_code, ev_val, n_ev)
        elif k == KIND_SENSOR:
            for q in range(i, j):
                slot = time_ns[q] // base_ns - b0
                acc_sum[s, slot] += value[q]
                acc_n[s, slot] += 1
            last_t[s] = time_ns[j - 1]
            last_v[s] = value[j - 1]
        else:
            n_ev = _register_run(time_ns, value, i, j, s, b0, base_ns, register_max[s],
                                 jitter[s], max_gap_ns[s], max_kw[s], last_t, last_v,
                                 spike_run, acc_e, acc_cov, ev_idx, ev_code, ev_val, n_ev)
        i = j
    return n_ev


@njit
def _power_run(time_ns, value, i, j, s, b0, base_ns, gap, last_t, last_v, acc_e, acc_cov,
               ev_idx, ev_code, ev_val, n_ev):
    """Trapezoid of one series' run of power readings, state kept in locals."""
    lt = last_t[s]
    lv = last_v[s]
    q = i
    if lt == NO_TIME:
        lt = time_ns[q]
        lv = value[q]
        q += 1
    b = lt // base_ns
    be = (b + 1) * base_ns  # end of the bucket holding lt
    while q < j:
        t = time_ns[q]
        v = value[q]
        dt = t - lt
        if dt <= gap:
            if t <= be:  # (t - 1) is in lt's bucket: the usual case
                acc_e[s, b - b0] += (lv + v) * 0.5 * (dt / NS_PER_HOUR)
                acc_cov[s, b - b0] += dt
            else:
                _spread_linear(acc_e, acc_cov, s, b0, base_ns, lt, lv, t, v)
        else:
            ev_idx[n_ev] = q
            ev_code[n_ev] = EV_GAP
            ev_val[n_ev] = dt / 1e9
            n_ev += 1
        lt = t
        lv = v
        if t >= be:
            b = t // base_ns
            be = (b + 1) * base_ns
        q += 1
    last_t[s] = lt
    last_v[s] = lv
    return n_ev


@njit
def _register_run(time_ns, value, i, j, s, b0, base_ns, reg_max, jit, gap, kw_max,
                  last_t, last_v, spike_run, acc_e, acc_cov, ev_idx, ev_code, ev_val, n_ev):
    """Deltas of one series' run of register readings (see the module rules)."""
    for q in range(i, j):
        t = time_ns[q]
        v = value[q]
        t0 = last_t[s]
        if t0 == NO_TIME:
            last_t[s] = t
            last_v[s] = v
            continue
        dt = t - t0
        prev = last_v[s]
        delta = v - prev
        code = 0
        if delta < 0.0:
            if -delta <= jit:
                delta = 0.0
                v = prev  # keep the max-so-far
            elif prev >= ROLLOVER_ZONE * reg_max:
                delta = reg_max - prev + v
                code = EV_ROLLOVER
            else:
                delta = v
                code = EV_RESET
        if delta > kw_max * (dt / NS_PER_HOUR):
            spike_run[s] += 1
            ev_idx[n_ev] = q
            if spike_run[s] >= SPIKES_BEFORE_REBASE:
                ev_code[n_ev] = EV_REBASE
                spike_run[s] = 0
                last_t[s] = t
                last_v[s] = value[q]
            else:
                ev_code[n_ev] = EV_SPIKE
            ev_val[n_ev] = delta
            n_ev += 1
            continue
        spike_run[s] = 0
        if code != 0:
            ev_idx[n_ev] = q
            ev_code[n_ev] = code
            ev_val[n_ev] = delta
            n_ev += 1
        if dt <= gap:
            b = t0 // base_ns
            if (t - 1) // base_ns == b:
                acc_e[s, b - b0] += delta
                acc_cov[s, b - b0] += dt
            else:
                _spread_uniform(acc_e, acc_cov, s, b0, base_ns, t0, t, delta, True)
        else:
            # booked in the bucket holding the later reading: it is still open
            acc_e[s, t // base_ns - b0] += delta
            ev_idx[n_ev] = q
            ev_code[n_ev] = EV_GAP
            ev_val[n_ev] = dt / 1e9
            n_ev += 1
        last_t[s] = t
        last_v[s] = v
    return n_ev


@njit
def integrate_ordered(time_ns, series, value, kind, register_max, jitter, max_gap_ns, max_kw,
                      site_of, b0_of_site, base_ns,
                      last_t, last_v, spike_run,
                      acc_e, acc_cov, acc_sum, acc_n,
                      ev_idx, ev_code, ev_val):
    """:func:`integrate` for readings as a time-ordered input delivers them.

    Same arguments, rules and result (bit for bit: each series' sums are taken in its own
    time order either way), but the series may interleave in any way as long as each one's
    readings strictly increase in time (what :mod:`pueflow.pipeline.held` leaves; readings
    of series ``-1`` are dropped repeats and skipped). No sort
    by series is needed; power and sensor rules run inline, one reading at a time, so
    interleaving costs no per-run call. The core uses this form; :func:`integrate` (series
    in contiguous runs) is the form the kernel benchmark and the rule tests drive.
    """
    n_ev = 0
    for q in range(time_ns.shape[0]):
        s = series[q]
        if s < 0:  # a repeated reading dropped in place
            continue
        k = kind[s]
        b0 = b0_of_site[site_of[s]]
        t = time_ns[q]
        v = value[q]
        if k == KIND_POWER:
            lt = last_t[s]
            if lt != NO_TIME:
                dt = t - lt
                if dt <= max_gap_ns[s]:
                    b = lt // base_ns
                    if t <= (b + 1) * base_ns:
                        acc_e[s, b - b0] += (last_v[s] + v) * 0.5 * (dt / NS_PER_HOUR)
                        acc_cov[s, b - b0] += dt
                    else:
                        _spread_linear(acc_e, acc_cov, s, b0, base_ns, lt, last_v[s], t, v)
                else:
                    ev_idx[n_ev] = q
                    ev_code[n_ev] = EV_GAP
                    ev_val[n_ev] = dt / 1e9
                    n_ev += 1
            last_t[s] = t
            last_v[s] = v
        elif k == KIND_SENSOR:
            slot = t // base_ns - b0
            acc_sum[s, slot] += v
            acc_n[s, slot] += 1
            last_t[s] = t
            last_v[s] = v
        else:
            n_ev = _register_run(time_ns, value, q, q + 1, s, b0, base_ns, register_max[s],
                                 jitter[s], max_gap_ns[s], max_kw[s], last_t, last_v,
                                 spike_run, acc_e, acc_cov, ev_idx, ev_code, ev_val, n_ev)
    return n_ev


def book_events(ev_acc: np.ndarray, site: np.ndarray, slot: np.ndarray, code: np.ndarray) -> None:
    """Count rollovers, resets and gaps into the bucket of the reading that showed them.

    Parameters
    ----------
    ev_acc : array [int64] (site, bucket slot, :data:`EV_COLUMNS`), updated in place
    site, slot, code : arrays, one entry per event
        Site index and bucket slot of the reading, and the event code.
    """
    for c, col in EV_COLUMNS.items():
        sel = code == c
        if sel.any():
            np.add.at(ev_acc, (site[sel], slot[sel], col), 1)
