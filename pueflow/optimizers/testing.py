"""Small sites and KPI rows for testing dispatch without a simulator or a broker.

``tiny_site(...)`` builds a config ``Site`` with a ``[sites.dispatch]`` section from keyword
overrides; ``kpi_rows(history, site_id)`` turns a backtest history frame into the KPI rows
the streaming core would emit for it, for driving a :class:`Dispatcher`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from pueflow.config.dispatch import DispatchSpec
from pueflow.config.load import parse_config
from pueflow.config.models import Site
from pueflow.optimizers.forecast import Forecast


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def tiny_dispatch(**extra: Any) -> dict[str, Any]:
    """Return a small dispatch section as a dict, with ``extra`` merged in (nested dicts too).

    The base has 1 h steps over 4 h, a flat 1.0 price, no cooling, no jobs and no battery.
    """
    base = {"step": "1h", "horizon": "4h", "redispatch": "1h", "input_window": "1h",
            "aux_fraction": 0.0, "cooling": [],
            "battery": {"energy_kwh": 0.0, "charge_efficiency": 0.95, "discharge_efficiency": 0.95},
            "grid": {"import_limit_kw": 1000.0},
            "forecast": {"pv_kwp": 0.0, "wind_kw": 0.0, "firm_it_kw": 100.0}}
    return _merge(base, extra)


def tiny_site(site_id: str = "s1", *, timezone: str = "UTC", it_capacity_kw: float = 1000.0,
              co2: float = 0.5, **dispatch: Any) -> Site:
    """Return a validated config ``Site`` whose dispatch section is :func:`tiny_dispatch` plus ``dispatch``."""
    return Site(id=site_id, jurisdiction="MA", timezone=timezone, latitude=35.0, longitude=-5.0,
                it_capacity_kw=it_capacity_kw, grid_co2_kg_per_kwh=co2,
                dispatch=DispatchSpec.model_validate(tiny_dispatch(**dispatch)))


def tiny_config(sites: list[dict[str, Any]], windows: tuple[str, ...] = ("15m", "1h")):
    """Return a validated config of ``sites`` (dicts merged over a base site).

    Each dict may hold a ``dispatch`` dict; ``windows`` are the pipeline's KPI windows.
    """
    base = {"jurisdiction": "MA", "timezone": "UTC", "latitude": 35.0, "longitude": -5.0,
            "it_capacity_kw": 1000.0,
            "meters": [{"device": "pdu-*", "point": "power_kw", "kind": "power", "role": "it"}]}
    return parse_config({"pipeline": {"windows": list(windows)}, "sites": [_merge(base, s) for s in sites]})


def flat_forecast(n: int, *, it_kw: float | np.ndarray = 100.0, pv_kw: float | np.ndarray = 0.0,
                  wind_kw: float | np.ndarray = 0.0, ambient_c: float | np.ndarray = 20.0) -> Forecast:
    """Return a forecast of ``n`` steps from scalars or arrays (broadcast and copied)."""
    def arr(v):
        return np.broadcast_to(np.asarray(v, np.float64), (n,)).copy()
    return Forecast(arr(pv_kw), arr(wind_kw), arr(it_kw), arr(ambient_c))


def kpi_rows(history: pl.DataFrame, site_id: str, window: str = "15m", run: str = "",
             soc_pct: float | None = None, coverage: float | np.ndarray = 1.0) -> pl.DataFrame:
    """KPI rows for ``history`` (one row per step, window = the step) as the core emits them.

    ``coverage`` [share of the window, 0..1] is written as the rows' ``coverage``.
    """
    hours = {"1m": 1 / 60, "5m": 1 / 12, "15m": 0.25, "1h": 1.0}[window]
    n = history.height
    return history.select(
        pl.col("time"),
        pl.lit(site_id).alias("site"), pl.lit(window).alias("window"), pl.lit("2").alias("category"),
        pl.lit(run).alias("run"),
        (pl.col("pv_kw") * hours).alias("pv_kwh"), (pl.col("wind_kw") * hours).alias("wind_kwh"),
        (pl.col("it_kw") * hours).alias("it_kwh"), pl.col("ambient_c").alias("ambient_temp_c"),
        pl.Series("battery_soc", [soc_pct] * n, dtype=pl.Float64),
        pl.Series("grid_import_kwh", [None] * n, dtype=pl.Float64),
        pl.Series("coverage", np.broadcast_to(np.asarray(coverage, np.float64), (n,)).copy()),
    )
