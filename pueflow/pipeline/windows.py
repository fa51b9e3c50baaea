"""Event-time tumbling windows.

Readings are integrated into *base buckets* (the smallest configured window). Closed base
buckets are rolled up per site and role; every longer window is the sum of its base
buckets, so ratio-of-sums over short windows equals the long window's ratio exactly.
Windows shorter than a day align to UTC; ``1d`` aligns to the site's local midnight.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from pueflow.jit import njit
from pueflow.units import parse_duration_ns

DAY = "1d"


def window_start(window: str, t_ns: int, tz: ZoneInfo) -> int:
    """Start [ns, UTC] of the ``window`` containing ``t_ns``."""
    if window == DAY:
        local = datetime.fromtimestamp(t_ns // 10**9, tz)
        midnight = datetime(local.year, local.month, local.day, tzinfo=tz)
        return int(midnight.timestamp()) * 10**9
    n = parse_duration_ns(window)
    return (t_ns // n) * n


def window_end(window: str, start_ns: int, tz: ZoneInfo) -> int:
    """End [ns, UTC] of the ``window`` that starts at ``start_ns``."""
    if window == DAY:
        local = datetime.fromtimestamp(start_ns // 10**9, tz)
        nxt = local.date() + timedelta(days=1)
        return int(datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp()) * 10**9
    return start_ns + parse_duration_ns(window)


def complete_windows(window: str, start_ns: int, closed_ns: int, tz: ZoneInfo
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Return starts and ends [ns] of the ``window`` windows from ``start_ns`` ending by ``closed_ns``.

    Days follow the local calendar of ``tz`` (23, 24 or 25 hours); other windows are fixed
    lengths.
    """
    if window == DAY:
        starts: list[int] = []
        ends: list[int] = []
        while (end := window_end(window, start_ns, tz)) <= closed_ns:
            starts.append(start_ns)
            ends.append(end)
            start_ns = end
        return np.array(starts, np.int64), np.array(ends, np.int64)
    n = parse_duration_ns(window)
    k = max((closed_ns - start_ns) // n, 0)
    first = start_ns + n * np.arange(k, dtype=np.int64)
    return first, first + n


def local_date(start_ns: int, tz: ZoneInfo) -> str:
    """Return the local calendar date (ISO) in ``tz`` of the instant ``start_ns`` [ns]."""
    return datetime.fromtimestamp(start_ns // 10**9, tz).date().isoformat()


def utc(t_ns: int) -> datetime:
    """Return the instant ``t_ns`` [ns since the epoch] as an aware UTC datetime."""
    return datetime.fromtimestamp(t_ns / 1e9, UTC)


@njit
def rollup(site_series, role_of, kind_of, first_t, base_ns, b0, n_buckets,
           acc_e, acc_cov, acc_sum, acc_n, n_roles,
           out_e, out_cov, out_den, out_ssum, out_sn):
    """Sum a site's series into per-role totals for buckets ``b0 .. b0 + n_buckets - 1``.

    ``site_series`` is in canonical order, so the float sums do not depend on the order in
    which series were first seen. Coverage counts every energy series that had reported
    before the bucket ended (a silent meter lowers coverage; a meter not yet installed does
    not).

    Outputs (written): ``out_e [n_buckets, n_roles]`` energy, ``out_cov [n_buckets]``
    covered ns summed over series, ``out_den [n_buckets]`` number of energy series counted,
    ``out_ssum``/``out_sn [n_buckets, n_roles]`` sensor sums and counts.
    """
    for k in range(n_buckets):
        end = (b0 + k + 1) * base_ns
        for r in range(n_roles):
            out_e[k, r] = 0.0
            out_ssum[k, r] = 0.0
            out_sn[k, r] = 0
        out_cov[k] = 0.0
        out_den[k] = 0
        for j in range(site_series.shape[0]):
            s = site_series[j]
            r = role_of[s]
            if kind_of[s] == 2:
                out_ssum[k, r] += acc_sum[s, k]
                out_sn[k, r] += acc_n[s, k]
                continue
            out_e[k, r] += acc_e[s, k]
            if first_t[s] < end and first_t[s] != np.iinfo(np.int64).min:
                out_cov[k] += acc_cov[s, k]
                out_den[k] += 1


@njit
def shift_rows(site_series, k, acc_e, acc_cov, acc_sum, acc_n):
    """Drop the first ``k`` slots of a site's rows (closed buckets); zero the tail."""
    shift_used(site_series, k, acc_e.shape[1], acc_e, acc_cov, acc_sum, acc_n)


@njit
def shift_used(site_series, k, n_used, acc_e, acc_cov, acc_sum, acc_n):
    """:func:`shift_rows` when only the first ``n_used`` slots can be non-zero.

    The slots from ``n_used`` on must be zero already (no reading reached them); they are
    not touched, so a close costs the open buckets, not the accumulators' width.
    """
    n_used = min(n_used, acc_e.shape[1])
    for j in range(site_series.shape[0]):
        s = site_series[j]
        for c in range(n_used):
            src = c + k
            if src < n_used:
                acc_e[s, c] = acc_e[s, src]
                acc_cov[s, c] = acc_cov[s, src]
                acc_sum[s, c] = acc_sum[s, src]
                acc_n[s, c] = acc_n[s, src]
            else:
                acc_e[s, c] = 0.0
                acc_cov[s, c] = 0.0
                acc_sum[s, c] = 0.0
                acc_n[s, c] = 0
