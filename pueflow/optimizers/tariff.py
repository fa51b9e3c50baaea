"""Price, carbon and calendar signals per step, from the tariff and local clock time.

:func:`signals` turns a site's step start times into the vectors the LP, the rule and the
backtest share: energy price, export price, grid intensity, the demand-charge mask and
the billing-period id of each step. Local time follows the site's IANA zone, so a
time-of-use period "17:00-22:00" moves with daylight saving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pueflow.config.dispatch import clock_hours
from pueflow.optimizers.assets import SiteModel


@dataclass(frozen=True)
class Calendar:
    """Local clock of each step.

    Hour of day [h, fractional], month 1-12, weekday 0 = Monday and local date
    [days since 1970-01-01].
    """

    hour: np.ndarray
    month: np.ndarray
    weekday: np.ndarray
    day: np.ndarray


@dataclass(frozen=True)
class Signals:
    """Per-step economic signals.

    price_per_kwh, export_per_kwh : [currency/kWh]
    carbon_kg_per_kwh : [kgCO2/kWh]
    demand_mask : bool, steps the billed peak is measured in
    bill_id : int64, billing period of each step (changes at local month/day starts)
    import_limit_kw : [kW], the demand-response limit (the grid limit outside events)
    """

    price_per_kwh: np.ndarray
    export_per_kwh: np.ndarray
    carbon_kg_per_kwh: np.ndarray
    demand_mask: np.ndarray
    bill_id: np.ndarray
    import_limit_kw: np.ndarray

    def slice(self, i: int, j: int) -> Signals:
        """Return steps ``i`` to ``j`` (exclusive) as new signals (views, not copies)."""
        return Signals(*(getattr(self, f)[i:j] for f in self.__dataclass_fields__))


def calendar(time_ns: np.ndarray, timezone: str) -> Calendar:
    """Return the local clock of UTC ``time_ns`` [int64 ns] in ``timezone`` (a :class:`Calendar`)."""
    s = pl.Series("t", np.asarray(time_ns, np.int64)).cast(pl.Datetime("ns", "UTC"))
    loc = s.dt.convert_time_zone(timezone)
    hour = (loc.dt.hour().cast(pl.Float64) + loc.dt.minute().cast(pl.Float64) / 60.0
            + loc.dt.second().cast(pl.Float64) / 3600.0).to_numpy()
    return Calendar(hour=hour, month=loc.dt.month().to_numpy().astype(np.int64),
                    weekday=(loc.dt.weekday().to_numpy() - 1).astype(np.int64),
                    day=loc.dt.date().cast(pl.Int32).to_numpy().astype(np.int64))


def in_window(hour: np.ndarray, start_h: float, end_h: float) -> np.ndarray:
    """Test whether local ``hour`` [h] falls in [``start_h``, ``end_h``).

    A window with start > end wraps midnight; start == end is all day when it is 0 or 24,
    else empty.
    """
    if start_h == end_h:
        return np.ones(hour.shape, bool) if start_h == 0 or end_h == 24 else np.zeros(hour.shape, bool)
    if start_h < end_h:
        return (hour >= start_h) & (hour < end_h)
    return (hour >= start_h) | (hour < end_h)


def _period_index(model: SiteModel, cal: Calendar) -> np.ndarray:
    """Index of the first matching time-of-use period per step, -1 for none."""
    idx = np.full(len(cal.hour), -1, np.int64)
    for k, p in enumerate(model.spec.tariff.periods):
        m = in_window(cal.hour, clock_hours(p.start), clock_hours(p.end)) & (idx < 0)
        if p.months:
            m &= np.isin(cal.month, p.months)
        if p.weekdays:
            m &= np.isin(cal.weekday, p.weekdays)
        idx[m] = k
    return idx


def signals(model: SiteModel, time_ns: np.ndarray, cal: Calendar | None = None) -> Signals:
    """Tariff, carbon and grid-limit signals for steps starting at ``time_ns``."""
    time_ns = np.asarray(time_ns, np.int64)
    cal = cal or calendar(time_ns, model.timezone)
    tariff = model.spec.tariff
    k = _period_index(model, cal)
    prices = np.array([p.price_per_kwh for p in tariff.periods] + [tariff.default_price_per_kwh])
    price = prices[np.where(k < 0, len(prices) - 1, k)]
    if tariff.demand_periods:
        names = [p.name for p in tariff.periods]
        wanted = [i for i, n in enumerate(names) if n in tariff.demand_periods]
        demand = np.isin(k, wanted)
    else:
        demand = np.ones(len(time_ns), bool)
    if tariff.demand_charge_per_kw <= 0:
        demand = np.zeros(len(time_ns), bool)
    profile = model.spec.carbon.intensity_kg_per_kwh
    if profile:
        carbon = np.asarray(profile, np.float64)[np.clip(cal.hour.astype(np.int64), 0, 23)]
    else:
        carbon = np.full(len(time_ns), model.grid_co2_kg_per_kwh)
    if tariff.billing_period == "month":
        bill = _year_of_day(cal.day) * 12 + cal.month
    else:
        bill = cal.day.copy()
    limit = np.full(len(time_ns), model.import_limit_kw)
    for start, end, kw in model.dr_events:
        sel = (time_ns >= start) & (time_ns < end)
        limit[sel] = np.minimum(limit[sel], kw)
    return Signals(price, np.full(len(time_ns), tariff.export_price_per_kwh), carbon, demand,
                   bill.astype(np.int64), limit)


def _year_of_day(day: np.ndarray) -> np.ndarray:
    return (np.asarray(day, np.int64).astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64)
            + 1970)
