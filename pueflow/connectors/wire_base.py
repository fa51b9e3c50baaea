"""What the wire decoders share: the :class:`Decoded` result, timestamp units, the range of
event times pueflow accepts, and the final accounting of every payload.

A series is (tag ``site``, tag ``device`` or else the measurement name, field name). Every
payload yields readings, an error, or both; nothing is dropped silently. Unknown series
still get an id (the pipeline reports them, not the decoder). The registry's per-series
``scale`` is applied to every value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from pueflow.schema.batch import Batch

if TYPE_CHECKING:
    from pueflow.schema.registry import Registry

UNIT_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_DURATION_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9,
                "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION = re.compile(r"(\d+)?(ns|us|µs|μs|ms|s|m|h)")
#: Event times outside [MIN_TIME_NS, MAX_TIME_NS) are refused at decoding: before 1970 is
#: never telemetry, and a year short of int64's end (2262-04-11) keeps every window, grace
#: and lateness sum far from overflow.
MIN_TIME_NS = 0
MAX_TIME_NS = int((datetime(2261, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC))
                  .total_seconds()) * 10**9


@dataclass(slots=True)
class Decoded:
    """Readings decoded from a list of payloads.

    Attributes
    ----------
    batch : Batch
        The readings, in payload order.
    origin : array [int32]
        For each reading, the index of the payload it came from.
    errors : list of (int, str)
        (payload index, human reason), sorted by payload index. A payload may appear both
        here and in ``origin`` (partly good).
    """

    batch: Batch
    origin: np.ndarray
    errors: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def empty(cls) -> Decoded:
        """No readings, no errors."""
        return cls(Batch.empty(), np.empty(0, np.int32), [])


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
        Not a duration.
    """
    if timestamp_unit in UNIT_NS:
        return UNIT_NS[timestamp_unit]
    m = _DURATION.fullmatch(timestamp_unit.strip()) if isinstance(timestamp_unit, str) else None
    if m is None or (m[1] is not None and int(m[1]) == 0):
        msg = (f"timestamp unit {timestamp_unit!r} is not one of {sorted(UNIT_NS)} or a "
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


def time_range_reason(t_ns: int, shown: str, mult: int) -> str:
    """Why a timestamp ``shown`` (``t_ns`` after applying the unit) is refused."""
    when = "before 1970" if t_ns < MIN_TIME_NS else "after 2260"
    return (f"timestamp {shown} is out of range in unit {unit_name(mult)!r} ({when}); "
            "pueflow accepts 1970-01-01..2260-12-31: check the timestamp unit or precision")


def finish(n_payloads: int | None, time_ns: np.ndarray, series: np.ndarray,
           value: np.ndarray, origin: np.ndarray, errors: list[tuple[int, str]],
           registry: Registry) -> Decoded:
    """Apply scale, make sure each of ``n_payloads`` is accounted for, sort errors."""
    if len(series):
        scale = registry.scale[: len(registry)]
        if (scale != 1.0).any():
            value = value * scale[series]
    if n_payloads is not None:
        seen = np.zeros(n_payloads, np.bool_)
        seen[origin] = True
        for i, _ in errors:
            seen[i] = True
        errors.extend((int(i), "no readings in message (empty)") for i in np.flatnonzero(~seen))
    errors.sort(key=lambda e: e[0])
    return Decoded(Batch(time_ns, series, value), origin.astype(np.int32, copy=False), errors)
