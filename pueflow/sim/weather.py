"""Synthetic site weather: ambient dry bulb, humidity, wet bulb, 10 m wind, cloudiness.

Everything is generated on a fixed 60 s grid covering the whole run, so a run at 10 s and a
run at 60 s with the same seed see the same weather; samples are interpolated from the grid.

Temperature = seasonal mean + synoptic anomaly (AR(1), ~2 days) + diurnal swing (minimum
near sunrise, maximum mid-afternoon in solar time) + hot desert-wind spells (chergui:
2-3 days with afternoon maxima above 40 degC, dry air) + small fast noise.
Wind = Weibull(k, c) marginal through a Gaussian AR(1) copula, times a diurnal shape.
Clouds = a daily regime (clear / broken / overcast) with minute-scale clear-sky-index noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter
from scipy.special import ndtr

from pueflow.config.plant import ClimateSpec

GRID_S = 60
_NS = 10**9
_DAY_S = 86400.0


@dataclass
class Weather:
    """Weather on the 60 s grid.

    Attributes
    ----------
    grid_ns : array [int64, ns since epoch, UTC]
    ambient_c, wet_bulb_c : array [degC]
    rh_pct : array [%]
    wind10_m_s : array [m/s] at 10 m
    clear_sky_index : array [-] global horizontal / clear-sky global horizontal
    hot_spell : array [0..1] envelope of desert-wind spells
    """

    grid_ns: np.ndarray
    ambient_c: np.ndarray
    rh_pct: np.ndarray
    wet_bulb_c: np.ndarray
    wind10_m_s: np.ndarray
    clear_sky_index: np.ndarray
    hot_spell: np.ndarray

    def at(self, name: str, time_ns: np.ndarray) -> np.ndarray:
        """Linear interpolation of field ``name`` at ``time_ns`` (inside the grid)."""
        field = getattr(self, name)
        return np.interp(time_ns.astype(np.float64), self.grid_ns.astype(np.float64), field)


def grid_for(start_ns: int, end_ns: int) -> np.ndarray:
    """60 s grid from the minute at or before ``start_ns`` to the minute at or after ``end_ns``."""
    g0 = (start_ns // (GRID_S * _NS)) * GRID_S * _NS
    n = -(-(end_ns - g0) // (GRID_S * _NS)) + 1
    return g0 + np.arange(n, dtype=np.int64) * GRID_S * _NS


def ar1(rng: np.random.Generator, n: int, tau_s: float, dt_s: float = GRID_S) -> np.ndarray:
    """Stationary unit-variance AR(1) (Ornstein-Uhlenbeck sampled every ``dt_s``)."""
    phi = float(np.exp(-dt_s / tau_s))
    eps = rng.standard_normal(n)
    z0 = rng.standard_normal()
    out, _ = lfilter([np.sqrt(1.0 - phi * phi)], [1.0, -phi], eps, zi=[phi * z0])
    return out


def diurnal_shape(solar_hour: np.ndarray) -> np.ndarray:
    """Temperature shape in [-0.5, 0.5]: minimum at 06 h, maximum at 15 h solar time, smooth."""
    h = np.mod(solar_hour - 6.0, 24.0)  # hours since the minimum
    rising = -0.5 * np.cos(np.pi * h / 9.0)
    falling = 0.5 * np.cos(np.pi * (h - 9.0) / 15.0)
    return np.where(h < 9.0, rising, falling)


def wet_bulb_c(temp_c: np.ndarray, rh_pct: np.ndarray) -> np.ndarray:
    """Wet-bulb temperature (Stull 2011), valid for RH 5-99 % and -20..50 degC [degC]."""
    t, rh = temp_c, np.clip(rh_pct, 5.0, 99.0)
    return (t * np.arctan(0.151977 * np.sqrt(rh + 8.313659)) + np.arctan(t + rh)
            - np.arctan(rh - 1.676331) + 0.00391838 * rh**1.5 * np.arctan(0.023101 * rh)
            - 4.686035)


def _solar_days(grid_ns: np.ndarray, longitude: float) -> tuple[np.ndarray, np.ndarray]:
    """(solar hour, solar-day index from the first day) for each grid point."""
    solar_s = grid_ns / _NS + longitude / 15.0 * 3600.0
    day = np.floor(solar_s / _DAY_S)
    hour = (solar_s - day * _DAY_S) / 3600.0
    return hour, (day - day[0]).astype(np.int64)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average (edges padded with the end values)."""
    if width <= 1:
        return x
    pad = np.concatenate([np.full(width, x[0]), x, np.full(width, x[-1])])
    c = np.cumsum(np.concatenate([[0.0], pad]))
    avg = (c[width:] - c[:-width]) / width
    off = width // 2
    return avg[width - off: width - off + len(x)]


def _hot_spells(c: ClimateSpec, warm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-day extra afternoon heat [K above the normal max] of desert-wind spells (0 = none)."""
    n = len(warm)
    u = rng.random(n)
    length = rng.integers(c.hot_spell_days_min, c.hot_spell_days_max + 1, size=n)
    peak = c.hot_spell_peak_c + rng.standard_normal(n)
    out = np.zeros(n)
    d = 0
    while d < n:
        if warm[d] > 0.3 and u[d] < c.hot_spell_probability:
            out[d: d + length[d]] = peak[d]
            d += int(length[d])
        else:
            d += 1
    return out


def generate(c: ClimateSpec, latitude: float, longitude: float, start_ns: int, end_ns: int,
             rng: np.random.Generator) -> Weather:
    """Weather over [start_ns, end_ns] for a site's climate and coordinates."""
    grid = grid_for(start_ns, end_ns)
    n = len(grid)
    hour, day = _solar_days(grid, longitude)
    n_days = int(day[-1]) + 1

    # seasonal mean from the climate normals
    summer_mean = c.summer_high_c - c.diurnal_range_k / 2
    winter_mean = c.winter_low_c + c.diurnal_range_k / 2
    warmest = c.warmest_day_of_year or (215 if latitude >= 0 else 30)
    doy = (grid / _NS / _DAY_S) % 365.2425
    season = np.cos(2 * np.pi * (doy - warmest) / 365.2425)  # +1 warmest, -1 coldest
    t_mean = (summer_mean + winter_mean) / 2 + (summer_mean - winter_mean) / 2 * season

    # daily regimes: clouds and hot spells (spells are clear, dusty and dry)
    day_season = season[np.searchsorted(day, np.arange(n_days))]
    spell_peak = _hot_spells(c, day_season, rng)
    u_cloud = rng.random(n_days)
    regime = np.where(u_cloud < c.overcast_day_probability, 2,
                      np.where(u_cloud < c.overcast_day_probability + c.cloudy_day_probability, 1, 0))
    regime[spell_peak > 0] = 0
    day_clear = np.array([1.0, 0.7, 0.3])[regime]

    z_fast, z_slow = ar1(rng, n, 600.0), ar1(rng, n, 3600.0)
    kc_by_regime = np.stack([
        np.clip(0.97 + 0.015 * z_fast, 0.9, 1.0) * np.where(spell_peak[day] > 0, 0.9, 1.0),
        0.22 + 0.85 * ndtr(1.4 * z_fast + 0.35),
        np.clip(0.3 + 0.12 * z_slow, 0.08, 0.6),
    ])
    kc = kc_by_regime[regime[day], np.arange(n)]

    shape = diurnal_shape(hour)
    clear_s = _smooth(day_clear[day], 3 * 3600 // GRID_S)
    swing = c.diurnal_range_k * (0.55 + 0.45 * clear_s) / (0.55 + 0.45 * 0.9)
    synoptic = c.synoptic_sigma_k * ar1(rng, n, 2.0 * _DAY_S)
    spell_env = _smooth((spell_peak[day] > 0).astype(np.float64), 8 * 3600 // GRID_S)
    spell_lift = np.maximum(0.0, _smooth(spell_peak[day], 8 * 3600 // GRID_S)
                            - (t_mean + c.diurnal_range_k / 2 + synoptic))
    bump = spell_lift * spell_env * (0.55 + 0.45 * (shape + 0.5))
    ambient = t_mean + synoptic + swing * shape + bump + 0.25 * ar1(rng, n, 1200.0)

    rh = (c.rh_mean_pct - 2.0 * c.rh_diurnal_amplitude_pct * shape + 12.0 * (1.0 - clear_s))
    rh = np.clip(rh * (1.0 - 0.65 * spell_env), 5.0, 100.0)

    z_wind = ar1(rng, n, c.wind_correlation_hours * 3600.0)
    v = c.wind_weibull_c_m_s * (-np.log1p(-np.clip(ndtr(z_wind), 0, 1 - 1e-12))) ** (1 / c.wind_weibull_k)
    v = v * (1.0 + c.wind_diurnal_amplitude * np.cos(2 * np.pi * (hour - c.wind_peak_hour_local) / 24))

    return Weather(grid_ns=grid, ambient_c=ambient, rh_pct=rh, wet_bulb_c=wet_bulb_c(ambient, rh),
                   wind10_m_s=np.maximum(v, 0.0), clear_sky_index=kc, hot_spell=spell_env)
