"""Synthetic history for backtests and benchmarks when no simulator truth is at hand.

Seeded and cheap: PV is clear-sky irradiance times a daily cloudiness (clear, broken,
overcast) with intra-day flicker; wind follows an autocorrelated speed through a generic
power curve; firm IT load follows an inference-like diurnal profile peaking in the
evening; ambient temperature has a diurnal wave plus a slow synoptic anomaly.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl

from pueflow.optimizers.assets import SiteModel
from pueflow.optimizers.solar import clearsky_ghi
from pueflow.optimizers.tariff import calendar


def _ar1(rng: np.random.Generator, n: int, rho: float, sigma: float) -> np.ndarray:
    e = rng.normal(0.0, sigma * np.sqrt(1 - rho * rho), n)
    out = np.empty(n)
    acc = rng.normal(0.0, sigma)
    for i in range(n):
        acc = rho * acc + e[i]
        out[i] = acc
    return out


def synthetic_history(model: SiteModel, start: datetime, days: float, seed: int = 0) -> pl.DataFrame:
    """Return a random but plausible history frame of one site at its dispatch step.

    Parameters
    ----------
    model : SiteModel
        Sizes (PV, wind, firm IT), location and forecast priors of the site.
    start : datetime
        First step; must be time-zone aware.
    days : float
        Length [d]; ``round(days * 86400 / step_s)`` steps.
    seed : int
        Seed of the random generator: the same seed gives the same frame.

    Returns
    -------
    polars.DataFrame
        ``time`` (Datetime ns, UTC), ``pv_kw``, ``wind_kw``, ``it_kw`` [kW] and
        ``ambient_c`` [degC]; powers are >= 0.

    Raises
    ------
    ValueError
        ``start`` is a naive datetime.
    """
    if start.tzinfo is None:
        msg = "start must be time-zone aware, e.g. datetime(2025, 7, 1, tzinfo=UTC)"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    step = model.step_ns
    n = int(round(days * 86400 / model.step_s))
    t0 = int(start.timestamp()) * 10**9
    t = t0 + step * np.arange(n, dtype=np.int64)
    cal = calendar(t, model.timezone)
    day = cal.day - cal.day[0]
    nd = int(day.max()) + 1 if n else 0
    sp = model.spec.forecast
    per_h = 3600.0 / model.step_s
    # PV: clear sky x daily cloudiness x flicker
    kind = rng.choice(3, size=nd, p=[0.7, 0.22, 0.08])
    level = np.array([0.97, 0.65, 0.25])[kind] + rng.normal(0, 0.03, nd)
    flick = np.array([0.02, 0.18, 0.08])[kind]
    cloud = np.clip(level[day] + flick[day] * _ar1(rng, n, 0.8 ** (1 / per_h), 1.0), 0.05, 1.05)
    ghi = clearsky_ghi(t + step // 2, model.latitude, model.longitude)
    pv = np.clip(model.pv_kwp * sp.pv_performance_ratio / 1000.0 * ghi * cloud, 0.0, model.pv_kwp)
    # wind: autocorrelated speed through a generic curve (cut-in 3, rated 12, cut-out 25 m/s)
    speed = np.clip(7.5 + 3.0 * _ar1(rng, n, np.exp(-1 / (8 * per_h)), 1.0)
                    + 1.0 * np.cos(2 * np.pi * (cal.hour - 15) / 24), 0.0, None)
    wind = model.wind_kw * np.where(speed >= 25, 0.0, np.clip((speed - 3) / 9, 0.0, 1.0) ** 3)
    # firm IT: inference-like, evening peak
    it = model.firm_it_kw * (1.0 + 0.15 * np.cos(2 * np.pi * (cal.hour - 20) / 24)
                             + 0.03 * _ar1(rng, n, np.exp(-1 / (2 * per_h)), 1.0))
    # ambient: diurnal wave + synoptic anomaly
    amb = (sp.ambient_mean_c + sp.ambient_amplitude_c * np.cos(2 * np.pi * (cal.hour - 15) / 24)
           + 2.0 * _ar1(rng, n, np.exp(-1 / (48 * per_h)), 1.0) + 0.3 * rng.normal(size=n))
    return pl.DataFrame({"time": t, "pv_kw": pv, "wind_kw": wind, "it_kw": np.clip(it, 0, None),
                         "ambient_c": amb}).with_columns(pl.col("time").cast(pl.Datetime("ns", "UTC")))
