"""Output row contract: measurements, their tag columns, and their identity.

Every sink receives a ``polars.DataFrame`` per measurement with a ``time`` column
(``Datetime("ns", "UTC")``), the tag columns below (``Utf8``), and float/int field columns.
A row's identity is (measurement, tags, time): writing it again overwrites, never duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

#: Tag columns per measurement, in order. ``run`` is present (possibly "") on every row so
#: replays and tuning runs never overwrite production series.
TAGS: dict[str, tuple[str, ...]] = {
    "kpi": ("site", "window", "category", "run"),
    "quality": ("site", "kind", "device", "point", "run"),
    "setpoint": ("site", "asset", "run"),
    "fleet": ("scope", "window", "run"),
}
MEASUREMENTS = tuple(TAGS)
TIME = "time"
TIME_DTYPE = pl.Datetime("ns", "UTC")

#: Quality event kinds (the ``kind`` tag of ``quality`` rows).
QUALITY_KINDS = (
    "reset", "rollover", "spike", "rebase", "gap", "duplicate", "late", "invalid_value",
    "unknown_series", "future", "non_positive_it", "better_than_perfect", "setpoint_clipped",
    "dispatch_fallback",
)


def tag_columns(measurement: str) -> tuple[str, ...]:
    """Return the tag columns of ``measurement``, in order.

    Raises
    ------
    ValueError
        If ``measurement`` is not one of :data:`MEASUREMENTS`.
    """
    try:
        return TAGS[measurement]
    except KeyError:
        msg = f"unknown measurement {measurement!r}; expected one of {MEASUREMENTS}"
        raise ValueError(msg) from None


def field_columns(measurement: str, df: pl.DataFrame) -> list[str]:
    """Return the field columns of ``df``: all but ``time`` and the tags, in frame order."""
    tags = set(tag_columns(measurement))
    return [c for c in df.columns if c != TIME and c not in tags]


def identity_columns(measurement: str) -> list[str]:
    """Return the columns that identify a row of ``measurement``: ``time``, then its tags."""
    return [TIME, *tag_columns(measurement)]


@dataclass
class Output:
    """What one call of the core produced: rows per measurement and rejected readings."""

    kpi: pl.DataFrame | None = None
    quality: pl.DataFrame | None = None
    setpoint: pl.DataFrame | None = None
    fleet: pl.DataFrame | None = None
    #: indices into the input batch of readings excluded at screening, and why
    rejected_index: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    rejected_reason: list[str] = field(default_factory=list)

    def frames(self) -> dict[str, pl.DataFrame]:
        """Return the non-empty frames by measurement, in :data:`MEASUREMENTS` order."""
        return {m: df for m in MEASUREMENTS
                if (df := getattr(self, m)) is not None and df.height}
