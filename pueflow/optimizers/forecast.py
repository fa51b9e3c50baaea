"""Forecasts for the dispatch horizon, and the interface for feeding external ones.

A forecaster is anything with ``forecast(time_ns, recent, hour=None) -> Forecast``
(:class:`Forecaster`). Shipped:

* :class:`DefaultForecaster` — PV from clear-sky irradiance scaled by the recent ratio of
  output to clear sky, decaying to a prior with the lead time; wind by persistence blended
  to its recent mean; firm IT load by its hour-of-day profile plus a decaying anomaly;
  ambient temperature by persistence plus a diurnal shape.
* :class:`FrameForecaster` — values looked up in a DataFrame (a file, a topic consumer's
  buffer, or recorded truth for perfect foresight); anything it lacks comes from a fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl

from pueflow.exceptions import OptimizerError
from pueflow.jit import njit
from pueflow.optimizers.assets import SiteModel
from pueflow.optimizers.solar import clearsky_ghi
from pueflow.optimizers.tariff import calendar

FIELDS = ("pv_kw", "wind_kw", "it_kw", "ambient_c")
OPTIONAL_FIELDS = ("price_per_kwh", "carbon_kg_per_kwh")
DAYLIGHT_W_M2 = 50.0


@dataclass
class Forecast:
    """Per-step forecast for the horizon, one value per step.

    Powers are in [kW], ambient in [degC]; the optional price [currency/kWh] and carbon
    intensity [kg/kWh] override the tariff's when given.
    """

    pv_kw: np.ndarray
    wind_kw: np.ndarray
    it_kw: np.ndarray
    ambient_c: np.ndarray
    price_per_kwh: np.ndarray | None = None
    carbon_kg_per_kwh: np.ndarray | None = None

    def slice(self, i: int, j: int) -> Forecast:
        """Return steps ``i`` to ``j`` (exclusive) as a new forecast (views, not copies)."""
        def cut(v):
            return None if v is None else v[i:j]
        return Forecast(*(cut(getattr(self, f)) for f in self.__dataclass_fields__))


@dataclass
class Recent:
    """Observations before the dispatch time, oldest first (NaN = missing).

    time_ns : start of each sample [int64 ns, UTC]; samples are ``span_ns`` long
    it_kw : *firm* IT load (flexible jobs removed)
    hour : local hour of each sample; computed when None
    """

    time_ns: np.ndarray
    pv_kw: np.ndarray
    wind_kw: np.ndarray
    it_kw: np.ndarray
    ambient_c: np.ndarray
    span_ns: int = 900 * 10**9
    hour: np.ndarray | None = None

    @classmethod
    def empty(cls) -> Recent:
        """Return observations with no sample (a dispatcher's first step)."""
        z = np.zeros(0)
        return cls(np.zeros(0, np.int64), z, z, z, z)


@runtime_checkable
class Forecaster(Protocol):
    """Anything that forecasts the horizon's steps starting at ``time_ns``."""

    def forecast(self, time_ns: np.ndarray, recent: Recent, hour: np.ndarray | None = None) -> Forecast:
        """Forecast the steps starting at ``time_ns`` [int64 ns, UTC] from ``recent``.

        ``hour`` is the local hour of each step when the caller has it already.
        """
        ...


@njit
def _hour_profile(hour, values, out):
    """Mean of ``values`` per local hour bin 0..23, NaN where a bin has no finite value."""
    s = np.zeros(24)
    n = np.zeros(24)
    for i in range(len(values)):
        v = values[i]
        if np.isfinite(v) and np.isfinite(hour[i]):
            b = int(hour[i]) % 24
            s[b] += v
            n[b] += 1.0
    for b in range(24):
        out[b] = s[b] / n[b] if n[b] > 0 else np.nan
    return out


def hour_profile(hour: np.ndarray, values: np.ndarray) -> np.ndarray:
    """24 hour-of-day means (NaN for empty bins) of ``values`` at local ``hour``."""
    return _hour_profile(np.ascontiguousarray(hour, np.float64), np.ascontiguousarray(values, np.float64),
                         np.empty(24))


def _fill_profile(p: np.ndarray) -> np.ndarray:
    """Fill empty hour bins by circular linear interpolation (all-NaN stays NaN)."""
    ok = np.isfinite(p)
    if ok.all() or not ok.any():
        return p
    x = np.flatnonzero(ok)
    return np.interp(np.arange(24), np.r_[x - 24, x, x + 24], np.tile(p[ok], 3))


def _last_mean(values: np.ndarray, n: int) -> float:
    v = values[-n:] if n else values[:0]
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else np.nan


class DefaultForecaster:
    """Physics-and-persistence forecaster for one site (see the module docstring)."""

    def __init__(self, model: SiteModel) -> None:
        self.model = model
        self.spec = model.spec.forecast

    def _lead_h(self, time_ns: np.ndarray, recent: Recent) -> np.ndarray:
        end = recent.time_ns[-1] + recent.span_ns if len(recent.time_ns) else time_ns[0]
        return np.maximum((time_ns - end) / 3.6e12, 0.0)

    def forecast(self, time_ns: np.ndarray, recent: Recent, hour: np.ndarray | None = None) -> Forecast:
        """Forecast the steps starting at ``time_ns`` from ``recent`` observations.

        Parameters
        ----------
        time_ns : array of int64 [ns, UTC]
            Start of each step.
        recent : Recent
            Observations before the first step; may be empty (priors are used then).
        hour : array, optional
            Local hour of each step; computed from the site's time zone when ``None``.

        Returns
        -------
        Forecast
            PV clipped to [0, ``pv_kwp``], wind to [0, ``wind_kw``], IT to
            [0, ``it_capacity_kw``] [kW]; ambient [degC]; no price or carbon.
        """
        m, s = self.model, self.spec
        time_ns = np.asarray(time_ns, np.int64)
        if hour is None:
            hour = calendar(time_ns, m.timezone).hour
        rhour = recent.hour
        if rhour is None and len(recent.time_ns):
            rhour = calendar(recent.time_ns, m.timezone).hour
        lead = self._lead_h(time_ns, recent)
        step = int(np.median(np.diff(time_ns))) if len(time_ns) > 1 else m.step_ns
        n_hour = max(1, int(round(3.6e12 / max(recent.span_ns, 1))))
        recent_n = len(recent.time_ns)
        # PV: clear-sky shape x recent clear-sky index, decaying to the prior
        ghi = clearsky_ghi(time_ns + step // 2, m.latitude, m.longitude)
        k_prior = m.pv_kwp * s.pv_performance_ratio / 1000.0
        k_recent = np.nan
        if recent_n and m.pv_kwp > 0:
            rg = clearsky_ghi(recent.time_ns + recent.span_ns // 2, m.latitude, m.longitude)
            day = (rg > DAYLIGHT_W_M2) & np.isfinite(recent.pv_kw)
            idx = np.flatnonzero(day)[-3 * n_hour:]
            if len(idx):
                k_recent = float(np.clip(recent.pv_kw[idx].sum() / rg[idx].sum(), 0.0, 2.0 * k_prior + 1e-9))
        k = k_prior if not np.isfinite(k_recent) else k_prior + (k_recent - k_prior) * np.exp(-lead / s.pv_tau_h)
        pv = np.clip(k * ghi, 0.0, m.pv_kwp)
        # wind: persistence -> recent mean (climatology) -> prior capacity factor
        prior_w = m.wind_kw * s.wind_capacity_factor
        clim = _last_mean(recent.wind_kw, recent_n) if recent_n >= 24 * n_hour else np.nan
        clim = prior_w if not np.isfinite(clim) else clim
        w0 = _last_mean(recent.wind_kw, n_hour)
        wind = clim + ((w0 - clim) * np.exp(-lead / s.wind_tau_h) if np.isfinite(w0) else 0.0)
        wind = np.clip(wind, 0.0, m.wind_kw if m.wind_kw > 0 else np.inf)
        it = self._profiled(recent.it_kw, rhour, hour, lead, n_hour, s.load_tau_h,
                            np.full(24, m.firm_it_kw))
        it = np.clip(it, 0.0, m.it_capacity_kw)
        shape = s.ambient_mean_c + s.ambient_amplitude_c * np.cos(2 * np.pi * (np.arange(24) + 0.5 - 15.0) / 24)
        if recent_n >= 24 * n_hour:
            mean = _last_mean(recent.ambient_c, 24 * n_hour)
            if np.isfinite(mean):
                shape = shape - s.ambient_mean_c + mean
        amb = self._profiled(recent.ambient_c, rhour, hour, lead, n_hour, s.ambient_tau_h, shape,
                             days=3.0)
        return Forecast(pv, np.asarray(wind, np.float64), it, amb)

    def _profiled(self, values, rhour, hour, lead, n_hour, tau, prior, days: float | None = None):
        """Hour-of-day profile of recent ``values`` (else ``prior``) plus a decaying anomaly."""
        if len(values) == 0 or rhour is None:
            return prior[np.clip(hour.astype(np.int64), 0, 23)]
        keep = len(values) if days is None else int(days * 24 * n_hour)
        keep = min(keep, int(self.spec.history_days * 24 * n_hour))
        prof = hour_profile(rhour[-keep:], values[-keep:]) if len(values) >= 24 * n_hour else prior.copy()
        prof = _fill_profile(np.where(np.isfinite(prof), prof, np.nan))
        prof = np.where(np.isfinite(prof), prof, prior)
        base = prof[np.clip(hour.astype(np.int64), 0, 23)]
        last = np.flatnonzero(np.isfinite(values))
        if not len(last):
            return base
        i = last[-1]
        anomaly = values[i] - prof[int(rhour[i]) % 24]
        return base + anomaly * np.exp(-lead / tau)


class FrameForecaster:
    """Forecasts looked up by step start time in a DataFrame.

    Columns: ``time`` (Datetime, UTC) and any of ``pv_kw``, ``wind_kw``, ``it_kw``,
    ``ambient_c``, ``price_per_kwh``, ``carbon_kg_per_kwh``. Steps or columns it lacks come
    from ``fallback`` (price and carbon then come from the tariff), e.g. past the end of a
    file; :attr:`last_fallback_steps` says how many steps of the last forecast did. Feed newer
    forecasts with :meth:`update` (e.g. from a topic consumer); later rows replace earlier ones.
    """

    def __init__(self, frame: pl.DataFrame, fallback: Forecaster | None = None) -> None:
        self.fallback = fallback
        #: steps of the last forecast that the frame lacked a value for (filled by the fallback)
        self.last_fallback_steps = 0
        self._t = np.zeros(0, np.int64)
        self._cols: dict[str, np.ndarray] = {}
        self.update(frame)

    @classmethod
    def from_file(cls, path: str | Path, fallback: Forecaster | None = None) -> FrameForecaster:
        """Read a Parquet or CSV file of forecasts."""
        p = Path(path)
        try:
            df = pl.read_parquet(p) if p.suffix in (".parquet", ".pq") else pl.read_csv(p, try_parse_dates=True)
        except (OSError, pl.exceptions.PolarsError) as exc:
            msg = f"cannot read forecasts from {str(p)!r}: {exc}; give a Parquet or CSV file with a 'time' column"
            raise OptimizerError(msg) from None
        return cls(df, fallback)

    def update(self, frame: pl.DataFrame) -> None:
        """Merge newer forecasts: a row replaces an earlier one of the same time.

        Raises
        ------
        OptimizerError
            ``frame`` has no ``time`` column, or it is not a time-zone-aware Datetime.
        """
        if "time" not in frame.columns:
            msg = f"forecast frame has no 'time' column (columns: {frame.columns}); add one in UTC"
            raise OptimizerError(msg)
        dtype = frame.schema["time"]
        if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
            msg = f"forecast 'time' is {dtype}; give time-zone-aware UTC timestamps"
            raise OptimizerError(msg)
        t = frame["time"].dt.convert_time_zone("UTC").dt.cast_time_unit("ns").cast(pl.Int64).to_numpy()
        new = {c: frame[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in FIELDS + OPTIONAL_FIELDS
               if c in frame.columns}
        if len(self._t):
            t_all = np.r_[self._t, t]
            cols = set(self._cols) | set(new)
            merged = {c: np.r_[self._cols.get(c, np.full(len(self._t), np.nan)),
                               new.get(c, np.full(len(t), np.nan))] for c in cols}
        else:
            t_all, merged = t, new
        # keep the last row per time
        order = np.argsort(t_all, kind="stable")
        t_sorted = t_all[order]
        last = np.r_[t_sorted[1:] != t_sorted[:-1], True]
        self._t = t_sorted[last]
        self._cols = {c: v[order][last] for c, v in merged.items()}

    def lookup(self, column: str, time_ns: np.ndarray) -> np.ndarray:
        """Return the values of ``column`` at exactly ``time_ns`` [int64 ns, UTC] (NaN where absent)."""
        out = np.full(len(time_ns), np.nan)
        if column not in self._cols or not len(self._t):
            return out
        i = np.searchsorted(self._t, time_ns)
        ok = i < len(self._t)
        ok[ok] = self._t[i[ok]] == time_ns[ok]
        out[ok] = self._cols[column][i[ok]]
        return out

    def forecast(self, time_ns: np.ndarray, recent: Recent, hour: np.ndarray | None = None) -> Forecast:
        """Look up the steps starting at ``time_ns`` [int64 ns, UTC]; the fallback fills gaps.

        A step lacking any of pv, wind, IT or ambient takes the fallback's values for the
        missing ones (counted in :attr:`last_fallback_steps`). Price and carbon are given
        only when the frame has them for every step.

        Raises
        ------
        OptimizerError
            A value is missing and there is no fallback forecaster.
        """
        time_ns = np.asarray(time_ns, np.int64)
        vals = {c: self.lookup(c, time_ns) for c in FIELDS}
        self.last_fallback_steps = int(np.logical_or.reduce([np.isnan(v) for v in vals.values()]).sum())
        if self.last_fallback_steps:
            if self.fallback is None:
                missing = [c for c, v in vals.items() if np.isnan(v).any()]
                msg = f"forecast frame lacks {missing} for some steps and has no fallback forecaster"
                raise OptimizerError(msg)
            fb = self.fallback.forecast(time_ns, recent, hour)
            vals = {c: np.where(np.isnan(v), getattr(fb, c), v) for c, v in vals.items()}
        opt = {}
        for c in OPTIONAL_FIELDS:
            v = self.lookup(c, time_ns)
            opt[c] = v if np.isfinite(v).all() else None
        return Forecast(vals["pv_kw"], vals["wind_kw"], vals["it_kw"], vals["ambient_c"],
                        opt["price_per_kwh"], opt["carbon_kg_per_kwh"])


def forecaster_for(model: SiteModel) -> Forecaster:
    """Return the site's configured forecaster.

    That is the ``[sites.dispatch.forecast] path`` file (with the default forecaster as its
    fallback) when set, else the default forecaster.

    Raises
    ------
    OptimizerError
        The forecast file cannot be read or has no UTC ``time`` column.
    """
    default = DefaultForecaster(model)
    if model.spec.forecast.path:
        return FrameForecaster.from_file(model.spec.forecast.path, fallback=default)
    return default
