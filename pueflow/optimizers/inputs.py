"""What the dispatcher may read from a KPI window, and what it must not trust.

A KPI window whose ``coverage`` is low (a meter dropout) reports the energy of the part
that was seen, not of the window: read as a power it is a load that fell to zero, and the
plan would warm the coolant for heat that is still there. A window just after a dropout
may carry the whole gap's energy at once, an IT power no site can draw. Both are read as
missing (NaN), so the forecaster fills them from what it knows, and they are flagged so
the setpoints planned on them are clipped against the worst case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

#: A window covered less than this [share of its length] is not read as a measurement.
MIN_COVERAGE = 0.5
#: IT power above this multiple of the site's IT capacity is not a measurement.
MAX_IT_FACTOR = 1.05


@dataclass
class WindowInputs:
    """Per-KPI-window inputs of the dispatcher, one value per window.

    Start [int64 ns], powers [kW] (NaN where missing or not trusted), ambient [degC],
    state of charge [%], coverage [share] and whether the window was discarded.
    """

    time_ns: np.ndarray
    pv_kw: np.ndarray
    wind_kw: np.ndarray
    it_kw: np.ndarray
    grid_import_kw: np.ndarray
    ambient_c: np.ndarray
    soc_pct: np.ndarray
    coverage: np.ndarray
    filled: np.ndarray


def read_windows(rows: pl.DataFrame, window_ns: int, it_capacity_kw: float) -> WindowInputs:
    """Mean powers of KPI ``rows`` of one site and one window length ``window_ns`` [ns].

    Rows without a ``coverage`` column count as fully covered. Energies of a window with
    coverage below :data:`MIN_COVERAGE`, and an IT power above :data:`MAX_IT_FACTOR` ×
    ``it_capacity_kw`` [kW], become NaN and the window is marked ``filled``.
    """
    hours = window_ns / 3.6e12
    t = rows["time"].cast(pl.Int64).to_numpy()

    def col(name: str, per_hour: bool = True, default: float = np.nan) -> np.ndarray:
        if name not in rows.columns:
            return np.full(len(t), default)
        v = rows[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        return v / hours if per_hour else v

    cover = col("coverage", False, 1.0)
    it = col("it_kwh")
    bad = ~(cover >= MIN_COVERAGE) | (it > MAX_IT_FACTOR * it_capacity_kw)

    def trusted(v: np.ndarray) -> np.ndarray:
        return np.where(bad, np.nan, v)

    return WindowInputs(t, trusted(col("pv_kwh")), trusted(col("wind_kwh")), trusted(it),
                        trusted(col("grid_import_kwh")), col("ambient_temp_c", False),
                        col("battery_soc", False), cover, bad)
