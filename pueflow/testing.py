"""In-package test harness: a list source, a list sink and a hand-advanced clock.

Lets a user (or a test) run the real core and the real sovereignty router without a broker,
a store or a wall clock::

    clock = ManualClock("2026-07-01T00:00Z")
    pipeline = Pipeline(cfg, clock_ns=clock)
    sink = ListSink("local")
    sinks = SinkSet(cfg, [sink])
    for batch in ListSource(pipeline.registry, rows, batch_size=100):
        sinks.write(pipeline.process(batch))
    sinks.write(pipeline.finalize())
    sink.frame("kpi")

``rows`` are ``(time, site, device, point, value)`` tuples, with ``time`` an ISO-8601 string
with a zone, a timezone-aware ``datetime`` or integer nanoseconds since the epoch (UTC).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

import numpy as np
import polars as pl

from pueflow.schema.batch import Batch
from pueflow.schema.registry import Registry

Row = tuple[object, str, str, str, float]


def to_ns(t: object) -> int:
    """Convert an ISO-8601 string with a zone, an aware datetime or ns to ns since the epoch.

    Raises
    ------
    ValueError
        For a naive time: event times are UTC instants, never local wall-clock readings.
    """
    if isinstance(t, int | np.integer):
        return int(t)
    if isinstance(t, str):
        t = datetime.fromisoformat(t.replace("Z", "+00:00"))
    if not isinstance(t, datetime) or t.tzinfo is None:
        msg = f"time {t!r} has no zone; write e.g. '2026-07-01T00:00Z' or pass ns since the epoch"
        raise ValueError(msg)
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


class ListSource:
    """Iterate :class:`Batch` es of ``batch_size`` readings from a list of rows, in order.

    Parameters
    ----------
    registry : Registry
        The core's registry; each (site, device, point) is mapped to its series id here.
    rows : iterable of (time, site, device, point, value)
    batch_size : int
        Readings per batch (the core's rows do not depend on it).
    """

    def __init__(self, registry: Registry, rows: Iterable[Row], batch_size: int = 1000):
        self.registry = registry
        self.rows = list(rows)
        self.batch_size = max(int(batch_size), 1)

    def __iter__(self) -> Iterator[Batch]:
        """Yield the rows as batches, keys registered in arrival order."""
        for i in range(0, len(self.rows), self.batch_size):
            chunk = self.rows[i: i + self.batch_size]
            yield Batch(np.array([to_ns(r[0]) for r in chunk], np.int64),
                        np.array([self.registry.id(r[1], r[2], r[3]) for r in chunk], np.int32),
                        np.array([r[4] for r in chunk], np.float64))


class ListSink:
    """A sink that keeps every written frame in memory (implements the sink protocol).

    Parameters
    ----------
    name : str
        Must match a ``[[sinks]]`` name for the router to send it rows.
    """

    def __init__(self, name: str):
        self.name = name
        self.written: dict[str, list[pl.DataFrame]] = {}
        self.flushes = 0
        self.closed = False

    def write(self, measurement: str, rows: pl.DataFrame) -> None:
        """Keep ``rows`` of ``measurement``."""
        self.written.setdefault(measurement, []).append(rows)

    def flush(self) -> None:
        """Count the flush (everything is already in memory)."""
        self.flushes += 1

    def close(self) -> None:
        """Mark the sink closed."""
        self.closed = True

    def frame(self, measurement: str) -> pl.DataFrame:
        """Return every row written for ``measurement`` (an empty frame if none)."""
        parts = self.written.get(measurement, [])
        return pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()


class ManualClock:
    """A wall clock that moves only when told to (pass it as the core's ``clock_ns``).

    Parameters
    ----------
    start : str, datetime or int
        Initial time (see :func:`to_ns`).
    """

    def __init__(self, start: object = 0):
        self.now_ns = to_ns(start)

    def __call__(self) -> int:
        """Return the current time [ns since the epoch]."""
        return self.now_ns

    def advance(self, seconds: float) -> int:
        """Move the clock forward by ``seconds`` [s] and return the new time [ns]."""
        if seconds < 0:
            msg = f"a clock only moves forward; got advance({seconds})"
            raise ValueError(msg)
        self.now_ns += int(round(seconds * 1e9))
        return self.now_ns
