"""What the operators' pages show, as JSON-ready dicts computed from the store.

Every KPI over a period is a ratio of the period's summed energies (the rules of
:func:`pueflow.pipeline.kpi.ratios_of_sums`), never a mean of window ratios: PUE = sum of
facility / sum of IT energy, REF = sum of renewable (on-site + ``ppa``) / sum of facility,
CUE = sum of grid CO2 / sum of IT energy, and the hourly carbon-free share = sum of each
hour's matched energy (``cfe_matched_kwh``) / sum of facility energy of those hours. Periods
are the site's local today, the last 30 days and the year to date, all ending at the
newest row in the store (the "as of" time: a live ``consume`` store is as of now).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from pueflow.config.models import Config, Site
from pueflow.modes.dashboard.store import at, local_bounds, rows_between
from pueflow.pipeline.kpi import ratios_of_sums
from pueflow.roles import COOLING_SUBSYSTEMS

PERIODS = ("today", "30d", "ytd")
#: the window the fleet sums and the hourly match are read from
HOURLY = "1h"
_SUMS = ("fac", "it", "ren", "co2", "matched", "fac_matched")
#: setpoint fields drawn against the measured value of the same quantity
SETPOINT_PAIRS = (("cooling_supply_c", "supply_temp_c", "°C"), ("grid_import_kw", "grid_import_kw", "kW"),
                  ("battery_kw", "battery_kw", "kW"))


def _renewable(names: list[str]) -> pl.Expr:
    return pl.sum_horizontal([pl.col(c).fill_null(0.0) for c in ("pv_kwh", "wind_kwh", "ppa_kwh") if c in names])


def as_of(kpi: pl.LazyFrame | None, run: str, latest: date | None = None) -> datetime | None:
    """End of the newest hourly row of ``run`` in the store (UTC), or None if it has none.

    ``latest`` (the newest ``date=`` partition, see ``store.latest_date``) limits the read to
    the files of the last days.
    """
    if kpi is None:
        return None
    if latest is not None:
        kpi = kpi.filter(pl.col("date") >= latest - timedelta(days=2))
    t = kpi.filter((pl.col("window") == HOURLY) & (pl.col("run") == run)).select(pl.col("time").max()).collect()
    v = t["time"][0]
    return None if v is None else v + timedelta(hours=1)


def period_starts(site: Site, end: datetime) -> dict[str, datetime]:
    """UTC start of each of :data:`PERIODS` for ``site``, all ending at ``end``."""
    tz = ZoneInfo(site.timezone)
    local = end.astimezone(tz) - timedelta(microseconds=1)
    today = local_bounds(site.timezone, local.date(), local.date() + timedelta(days=1))[0]
    ytd = local_bounds(site.timezone, date(local.year, 1, 1), date(local.year + 1, 1, 1))[0]
    return {"today": today, "30d": end - timedelta(days=30), "ytd": ytd}


def _ratios(s: dict[str, float]) -> dict[str, float | None]:
    r = ratios_of_sums([s["fac"]], [s["it"]], [s["ren"]], co2_kg=[s["co2"]])
    cfe = s["matched"] / s["fac_matched"] if s["fac_matched"] > 0 else np.nan
    out = {"pue": r["pue"][0], "ref": r["ref"][0], "cue_kg_per_kwh": r["cue_kg_per_kwh"][0], "cfe_hourly": cfe}
    return {k: (None if not np.isfinite(v) else float(v)) for k, v in out.items()} | {
        "facility_kwh": s["fac"], "it_kwh": s["it"]}


def fleet_overview(cfg: Config, kpi: pl.LazyFrame | None, run: str, end: datetime | None = None,
                   latest: date | None = None) -> dict[str, Any]:
    """Energy-weighted PUE, REF, CUE and hourly CFE per site, jurisdiction and fleet.

    Parameters
    ----------
    cfg : Config
    kpi : LazyFrame or None
        KPI rows of the store(s).
    run : str
        ``run`` tag to show.
    end : datetime, optional
        End of every period (default: :func:`as_of` the store).
    latest : date, optional
        Newest ``date=`` partition, to find the end reading only the last days' files.

    Returns
    -------
    dict with ``as_of`` (ISO UTC), ``periods``, ``sites``, ``jurisdictions`` and ``fleet``;
    each entry has, per period, ``pue`` [-], ``ref`` [-], ``cue_kg_per_kwh`` [kg/kWh],
    ``cfe_hourly`` [-], ``facility_kwh`` and ``it_kwh`` [kWh] (None where undefined).
    """
    end = end or as_of(kpi, run, latest)
    sites_out: list[dict[str, Any]] = []
    sums: dict[str, dict[str, dict[str, float]]] = {}
    if end is not None and kpi is not None:
        starts = {s.id: period_starts(s, end) for s in cfg.sites}
        lo = min(min(v.values()) for v in starts.values())
        names = kpi.collect_schema().names()
        start_df = pl.DataFrame({"site": list(starts), **{
            f"start_{p}": pl.Series([starts[s][p] for s in starts]).cast(pl.Datetime("ns", "UTC")) for p in PERIODS}})
        fac, it = pl.col("facility_kwh").fill_null(0.0), pl.col("it_kwh").fill_null(0.0)
        co2 = (pl.col("cue_kg_per_kwh") * pl.col("it_kwh")).fill_null(0.0).fill_nan(0.0)
        matched = pl.col("cfe_matched_kwh")
        agg = []
        for p in PERIODS:
            inside = pl.col("time") >= pl.col(f"start_{p}")
            agg += [fac.filter(inside).sum().alias(f"fac_{p}"), it.filter(inside).sum().alias(f"it_{p}"),
                    _renewable(names).filter(inside).sum().alias(f"ren_{p}"),
                    co2.filter(inside).sum().alias(f"co2_{p}"),
                    matched.filter(inside & matched.is_not_null()).sum().alias(f"matched_{p}"),
                    fac.filter(inside & matched.is_not_null()).sum().alias(f"fac_matched_{p}")]
        got = (kpi.filter((pl.col("window") == HOURLY) & (pl.col("run") == run)
                          & (pl.col("date") >= (lo - timedelta(days=1)).date())
                          & (pl.col("time") >= at(lo)) & (pl.col("time") < at(end)))
               .unique(subset=["time", "site", "window", "run"], keep="first")
               .join(start_df.lazy(), on="site").group_by("site").agg(agg).collect())
        for r in got.iter_rows(named=True):
            sums[r["site"]] = {p: {k: float(r[f"{k}_{p}"] or 0.0) for k in _SUMS} for p in PERIODS}
    zero = {p: dict.fromkeys(_SUMS, 0.0) for p in PERIODS}
    groups: dict[str, dict[str, dict[str, float]]] = {}
    for s in cfg.sites:
        ss = sums.get(s.id, zero)
        sites_out.append({"site": s.id, "jurisdiction": s.jurisdiction, "timezone": s.timezone,
                          **{p: _ratios(ss[p]) for p in PERIODS}})
        for g in (s.jurisdiction, "fleet"):
            acc = groups.setdefault(g, {p: dict.fromkeys(_SUMS, 0.0) for p in PERIODS})
            for p in PERIODS:
                for k in _SUMS:
                    acc[p][k] += ss[p][k]
    juris = [{"jurisdiction": j, **{p: _ratios(v[p]) for p in PERIODS}}
             for j, v in sorted(groups.items()) if j != "fleet"]
    fleet = {p: _ratios(groups["fleet"][p]) for p in PERIODS} if groups else {}
    return {"as_of": None if end is None else end.astimezone(UTC).isoformat(), "periods": list(PERIODS),
            "sites": sites_out, "jurisdictions": juris, "fleet": fleet}


def pick_window(cfg: Config, days: float) -> str:
    """Return the window to draw ``days`` of history with (~100-3000 points per series)."""
    windows = cfg.pipeline.window_ns()
    want = 15 * 60 if days <= 3 else (3600 if days <= 92 else 86400)
    fits = [w for w, n in windows.items() if n >= want * 10**9]
    return min(fits, key=lambda w: windows[w]) if fits else max(windows, key=lambda w: windows[w])


def _local(t: pl.Series, tz: str) -> list[str]:
    return t.dt.convert_time_zone(tz).dt.strftime("%Y-%m-%d %H:%M:%S").to_list()


def _clean(v: pl.Series) -> list[float | None]:
    return [None if x is None or not np.isfinite(x) else float(x) for x in v.cast(pl.Float64).to_list()]


def _share(x: np.ndarray, fac: np.ndarray) -> list[float | None]:
    ok = fac > 0
    return _clean(pl.Series(np.where(ok, x / np.where(ok, fac, 1.0), np.nan)))


def site_series(cfg: Config, site_id: str, kpi: pl.LazyFrame | None, quality: pl.LazyFrame | None,
                setpoint: pl.LazyFrame | None, run: str, first: date, end: date,
                window: str | None = None) -> dict[str, Any]:
    """Time series of one site over local days ``first`` .. ``end`` (exclusive).

    Returns
    -------
    dict with ``timezone``, ``window`` and, per series, local wall-clock ``time`` strings
    and values: ``kpi`` (pue, ppue_<subsystem>, ref [-], coverage [-], ambient and supply
    temperature [°C]), ``cfe`` (hourly ``cfe_hourly`` [-] and ``ref`` of the same hours),
    ``events`` (quality events) and ``setpoints`` (published vs measured, per field).
    """
    site = cfg.site(site_id)
    tz = site.timezone
    lo, hi = local_bounds(tz, first, end)
    window = window or pick_window(cfg, (end - first).days)
    out: dict[str, Any] = {"site": site.id, "timezone": tz, "window": window, "windows": cfg.pipeline.windows,
                           "from": first.isoformat(),
                           "to": end.isoformat(), "kpi": {"time": []}, "cfe": {"time": []},
                           "events": {"time": [], "kind": [], "series": [], "count": []}, "setpoints": {}}
    if kpi is None:
        return out
    rows = rows_between(kpi, site.id, run, lo, hi, [window, HOURLY]).sort("time").collect()
    w = rows.filter(pl.col("window") == window)
    cols = ["pue", *(f"ppue_{s}" for s in COOLING_SUBSYSTEMS), "ref", "coverage", "ambient_temp_c",
            "supply_temp_c"]
    k: dict[str, list[Any]] = {"time": _local(w["time"], tz)}
    for c in cols:
        if c in w.columns and w[c].is_not_null().any():
            k[c] = _clean(w[c])
    out["kpi"] = k
    h = rows.filter(pl.col("window") == HOURLY)
    if "cfe_hourly" in h.columns:
        # over the range so far: REF = sum renewable / sum facility (capped), CFE = sum of the
        # hours' matched energy / sum facility; they part when supply and load miss each other
        fac = h["facility_kwh"].fill_null(0.0).cum_sum().to_numpy()
        ren = h.select(_renewable(h.columns)).to_series().cum_sum().to_numpy()
        matched = h["cfe_matched_kwh"].fill_null(0.0).cum_sum().to_numpy()
        out["cfe"] = {"time": _local(h["time"], tz), "cfe_hourly": _clean(h["cfe_hourly"]),
                      "ref_so_far": _share(np.minimum(ren, fac), fac), "cfe_so_far": _share(matched, fac)}
    if quality is not None:
        q = rows_between(quality, site.id, run, lo, hi).sort("time").collect()
        out["events"] = {"time": _local(q["time"], tz), "kind": q["kind"].to_list(),
                         "series": [f"{d}/{p}" for d, p in zip(q["device"], q["point"], strict=True)],
                         "count": q["count"].to_list()}
    hours = cfg.pipeline.window_ns()[window] / 3.6e12
    measured = {"supply_temp_c": w.get_column("supply_temp_c") if "supply_temp_c" in w.columns else None,
                "grid_import_kw": w["grid_import_kwh"] / hours if "grid_import_kwh" in w.columns else None,
                "battery_kw": w["battery_kwh"] / hours if "battery_kwh" in w.columns else None}
    sp = rows_between(setpoint, site.id, run, lo, hi).sort("time").collect() if setpoint is not None else None
    for field, meas, unit in SETPOINT_PAIRS:
        if sp is None or field not in sp.columns:
            continue
        s = sp.filter(pl.col(field).is_not_null())
        if s.height == 0:
            continue
        m = measured[meas]
        # cooling loops publish one row each: the drawn setpoint is their mean per step
        s = s.group_by("time").agg(pl.col(field).mean()).sort("time")
        out["setpoints"][field] = {"unit": unit, "time": _local(s["time"], tz), "setpoint": _clean(s[field]),
                                   "measured_time": k["time"], "measured": [] if m is None else _clean(m)}
    return out
