"""Timestamp units of the wire formats, written once.

The config's ``[kafka] timestamp_unit`` is validated by the same function the decoders use.

Telegraf's ``json_timestamp_units`` is a duration (``1s`` by default, ``1ms``, ``10ms``,
``1us``...), truncated to a power of ten nanoseconds; ``s``, ``ms``, ``us`` and ``ns`` name
the four usual ones.
"""

from __future__ import annotations

import re

UNIT_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_DURATION_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9,
                "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION = re.compile(r"(\d+)?(ns|us|µs|μs|ms|s|m|h)")


def unit_ns(timestamp_unit: str) -> int:
    """Nanoseconds in one ``timestamp_unit``.

    Parameters
    ----------
    timestamp_unit : str
        ``s``, ``ms``, ``us``, ``ns``, or a Telegraf ``json_timestamp_units`` duration such
        as ``1s``, ``10ms``, ``100us``, ``1µs``. Like Telegraf, a duration is truncated to a
        power of ten nanoseconds (``15ms`` -> ``10ms``).

    Returns
    -------
    int
        The unit [ns].

    Raises
    ------
    ValueError
        Not a duration (the message names the value and the accepted forms).
    """
    if timestamp_unit in UNIT_NS:
        return UNIT_NS[timestamp_unit]
    m = _DURATION.fullmatch(timestamp_unit.strip()) if isinstance(timestamp_unit, str) else None
    if m is None or (m[1] is not None and int(m[1]) == 0):
        msg = (f"timestamp unit {timestamp_unit!r} is not a unit: write s, ms, us or ns, or a "
               "duration such as '10ms' (Telegraf's json_timestamp_units)")
        raise ValueError(msg)
    ns = int(m[1] or 1) * _DURATION_NS[m[2]]
    return 10 ** (len(str(ns)) - 1)


def unit_name(mult: int) -> str:
    """Short name of a unit of ``mult`` ns (``s``, ``10ms``, ...)."""
    for name, ns in (("s", 10**9), ("ms", 10**6), ("us", 10**3), ("ns", 1)):
        if mult >= ns and mult % ns == 0:
            return name if mult == ns else f"{mult // ns}{name}"
    return f"{mult}ns"
