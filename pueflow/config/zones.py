"""Base bucket of the window kernel, derived from the configured windows and site zones.

Every window is a sum of *base buckets* aligned to UTC multiples of the bucket length. A
sub-day window of length ``n`` starts at UTC multiples of ``n``; a ``1d`` window starts at
the site's local midnight, i.e. at a UTC multiple of one day minus the zone's UTC offset at
that moment. So the base bucket is the greatest common divisor of the window lengths and,
when a ``1d`` window is configured, of every UTC offset the site's zone takes (DST and
historical changes included, 1970-2100).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from pueflow.units import parse_duration_ns

NS = 10**9
DAY_NS = 86_400 * NS
#: Never use buckets finer than this unless a configured window is finer: a site whose
#: local midnight needs finer buckets (e.g. a 1970s offset of -0:44:30) is refused.
MIN_BASE_NS = 60 * NS
_FIRST_YEAR, _LAST_YEAR = 1970, 2100


@lru_cache(maxsize=256)
def zone_offsets_ns(zone: str) -> tuple[int, ...]:
    """Distinct UTC offsets [ns] that ``zone`` takes over 1970-2100, sorted.

    Sampled every 12 hours (no zone keeps an offset for less than a day), which also
    catches each offset in force at a local midnight.
    """
    tz = ZoneInfo(zone)
    t = datetime(_FIRST_YEAR, 1, 1, tzinfo=UTC)
    end = datetime(_LAST_YEAR + 1, 1, 1, tzinfo=UTC)
    step = timedelta(hours=12)
    seen: set[timedelta] = set()
    while t < end:
        off = t.astimezone(tz).utcoffset()
        if off is not None:
            seen.add(off)
        t += step
    return tuple(sorted(int(o.total_seconds()) * NS for o in seen))


def base_bucket_ns(windows: list[str], zones: list[str]) -> int:
    """Length [ns] of the base bucket every window of every site is a whole sum of.

    Parameters
    ----------
    windows : list of str
        Configured windows, e.g. ``["1h", "1d"]``.
    zones : list of str
        IANA zones of the sites (only used when ``"1d"`` is configured).

    Returns
    -------
    int
        Greatest common divisor [ns] of the window lengths and, with a ``1d`` window, of
        every UTC offset of every zone (so each local midnight starts a bucket).
    """
    base = 0
    for w in windows:
        base = math.gcd(base, parse_duration_ns(w))
    if "1d" in windows:
        for z in zones:
            for off in zone_offsets_ns(z):
                base = math.gcd(base, off % DAY_NS)
    return base


def _fmt(ns: int) -> str:
    s = ns // NS
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    text = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{sec}s" if sec else "")
    return text or "0s"


def window_zone_problem(windows: list[str], site_id: str, zone: str) -> str | None:
    """Why ``windows`` cannot be aligned for a site in ``zone``, or None if they can.

    A ``1d`` window needs base buckets that start at every local midnight; a zone whose
    offsets would force buckets below ``min(smallest window, 1m)`` is refused, naming a
    smallest window that would work (or suggesting to drop ``1d``).
    """
    if "1d" not in windows:
        return None
    smallest = min(parse_duration_ns(w) for w in windows)
    need = base_bucket_ns(windows, [zone])
    if need >= min(smallest, MIN_BASE_NS):
        return None
    offs = ", ".join(f"UTC{'+' if o >= 0 else '-'}{_fmt(abs(o))}" for o in zone_offsets_ns(zone))
    works = _fmt(base_bucket_ns(["1d"], [zone]))
    return (f"site {site_id!r}: zone {zone} has offsets {offs} (1970-2100), so its local "
            f"midnights need {_fmt(need)} buckets, finer than the smallest window "
            f"{_fmt(smallest)} (or 1m); "
            f"with '1d' use a smallest window of {works} (e.g. windows = ['{works}', '1d']) "
            f"or drop '1d'")
