"""What the wire decoders share.

The :class:`Decoded` result, timestamp units, the range of event times pueflow accepts, and
the final accounting of every payload.

A series is (tag ``site``, tag ``device`` or else the measurement name, field name). Every
payload yields readings, an error, or both; nothing is dropped silently. Unknown series
still get an id (the pipeline reports them, not the decoder). The registry's per-series
``scale`` is applied to every value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from pueflow.config.time_units import UNIT_NS, unit_name, unit_ns
from pueflow.schema.batch import Batch

if TYPE_CHECKING:
    from pueflow.schema.registry import Registry

__all__ = ["MAX_TIME_NS", "MIN_TIME_NS", "UNIT_NS", "Decoded", "finish", "time_range_reason",
           "unit_name", "unit_ns"]

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


def joined(payloads: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Lay ``payloads`` back to back: (buffer [uint8], exclusive end of each [bytes])."""
    ends = np.cumsum(np.fromiter(map(len, payloads), np.int64, count=len(payloads)))
    return np.frombuffer(b"".join(payloads), np.uint8), ends


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
