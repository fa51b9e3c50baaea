"""The EU data-centre report (Energy Efficiency Directive, Delegated Regulation (EU) 2024/1364).

Per site with at least :data:`EED_THRESHOLD_KW` of installed IT power, over one reporting
period (a calendar year in the site's local time): installed IT power, total energy
consumption, IT energy, water input, reused heat, renewable energy (on-site, and contracted:
metered ``ppa`` feeds + guarantees of origin), and PUE, WUE, ERF, REF computed from those
period sums with the rules of :mod:`pueflow.pipeline.kpi` - never averaged from windows.

Energies are the sums of the store's ``1d`` KPI rows of the period; coverage comes from the
``1h`` rows: ``metered_share`` = the coverage-weighted share of the period's hours (an hour
absent from the store counts 0), ``complete_share`` = the share of hours covered at least
:data:`COMPLETE`, and ``gaps`` = every run of hours below it. Quality events of the period
are mapped through the site's meter rules to the roles, and so to the figures, they affect.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from pueflow.config.models import Config, Site
from pueflow.modes.dashboard.report_html import render_html
from pueflow.modes.dashboard.store import local_bounds, pick_run, rows_between, scan, store_paths
from pueflow.pipeline.kpi import cfe_of_hours, ratios_of_sums, share_of_facility
from pueflow.roles import COOLING_SUBSYSTEMS

#: Installed IT power from which a data centre reports (Directive (EU) 2023/1791, art. 12) [kW].
EED_THRESHOLD_KW = 500.0
#: An hour counts as completely metered from this coverage on [share of expected readings].
COMPLETE = 0.99
_OVERHEAD = tuple(f"cooling.{s}" for s in COOLING_SUBSYSTEMS) + ("electrical_losses", "other")
#: Roles whose readings make each figure (facility without a meter: IT + overheads).
FIGURE_ROLES: dict[str, tuple[str, ...]] = {
    "total_energy_kwh": ("facility",),
    "it_energy_kwh": ("it",),
    "water_input_m3": ("water_l",),
    "reused_heat_kwh": ("heat_reuse_kwh",),
    "renewable_onsite_kwh": ("pv", "wind"),
    "renewable_contracted_kwh": ("ppa",),
}
#: KPIs and the figures they are ratios of.
KPI_FIGURES = {"pue": ("total_energy_kwh", "it_energy_kwh"),
               "wue_l_per_kwh": ("water_input_m3", "it_energy_kwh"),
               "erf": ("reused_heat_kwh", "total_energy_kwh"),
               "ref": ("renewable_onsite_kwh", "renewable_contracted_kwh", "total_energy_kwh")}
#: Quality kinds that change no figure (a repeated reading is dropped): listed under "other".
NO_EFFECT = ("duplicate",)
_SUM_COLUMNS = ("facility_kwh", "it_kwh", "water_l", "heat_reuse_kwh", "pv_kwh", "wind_kwh", "ppa_kwh")


def year_period(year: int) -> tuple[date, date]:
    """Return the period of ``year``: local 1 January to the next 1 January (exclusive)."""
    return date(year, 1, 1), date(year + 1, 1, 1)


def _metered(site: Site) -> set[str]:
    return {m.role for m in site.meters}


def _roles_of_figures(site: Site) -> dict[str, tuple[str, ...]]:
    roles = dict(FIGURE_ROLES)
    if "facility" not in _metered(site):
        roles["total_energy_kwh"] = ("it", *_OVERHEAD)
    return roles


def _events(site: Site, q: pl.DataFrame, tz: ZoneInfo) -> dict[str, list[dict[str, Any]]]:
    """Quality events grouped per figure (and ``"other"`` for those of no figure's roles)."""
    out: dict[str, list[dict[str, Any]]] = {}
    if q.height == 0:
        return out
    roles = _roles_of_figures(site)
    g = (q.group_by("kind", "device", "point")
         .agg(pl.col("count").sum(), pl.col("time").min().alias("first"), pl.col("time").max().alias("last"))
         .sort("kind", "device", "point"))
    for r in g.iter_rows(named=True):
        rule = site.rule_for(r["device"], r["point"]) if r["device"] != "*" else None
        ev = {"kind": r["kind"], "device": r["device"], "point": r["point"], "count": int(r["count"]),
              "first": r["first"].astimezone(tz).isoformat(), "last": r["last"].astimezone(tz).isoformat()}
        if r["kind"] in NO_EFFECT:
            figs = []
        elif r["device"] == "*":  # window-level events (facility/IT not reported)
            figs = ["total_energy_kwh", "it_energy_kwh"]
        else:
            figs = [f for f, rs in roles.items() if rule is not None and rule.role in rs]
        for f in figs or ["other"]:
            out.setdefault(f, []).append(ev)
    return out


def _gaps(hours: pl.DataFrame, lo: datetime, hi: datetime, tz: ZoneInfo) -> tuple[float, float, list[dict]]:
    """(metered share, complete share, runs of incomplete hours) of the period's hours."""
    n = int((hi - lo).total_seconds() // 3600)
    cover = np.zeros(n)
    if hours.height:
        idx = ((hours["time"].dt.epoch("s").to_numpy() - int(lo.timestamp())) // 3600).astype(np.int64)
        ok = (idx >= 0) & (idx < n)
        cover[idx[ok]] = np.clip(hours["coverage"].fill_null(0.0).to_numpy()[ok], 0.0, 1.0)
    bad = cover < COMPLETE
    gaps = []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], bad.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        t0 = datetime.fromtimestamp(lo.timestamp() + 3600 * int(a), tz)
        t1 = datetime.fromtimestamp(lo.timestamp() + 3600 * int(b), tz)
        gaps.append({"start": t0.isoformat(), "end": t1.isoformat(), "hours": int(b - a),
                     "coverage": float(cover[a:b].mean())})
    if n == 0:
        return 0.0, 0.0, gaps
    return float(cover.mean()), float((~bad).mean()), gaps


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def site_report(site: Site, kpi: pl.LazyFrame | None, quality: pl.LazyFrame | None, run: str,
                first: date, end: date) -> dict[str, Any]:
    """EED indicators of one site over the local days ``first`` .. ``end`` (exclusive).

    Parameters
    ----------
    site : Site
    kpi, quality : LazyFrame or None
        Store rows (see :func:`pueflow.modes.dashboard.store.scan`).
    run : str
        ``run`` tag of the rows to report.
    first, end : date
        Reporting period in the site's local time, ``end`` exclusive.

    Returns
    -------
    dict
        ``in_scope``; for a site in scope ``figures`` (value [unit in the key], metered,
        events), ``kpis``, ``coverage`` (shares [-] and ``gaps``), ``cfe_hourly`` [-].
    """
    tz = ZoneInfo(site.timezone)
    lo, hi = local_bounds(site.timezone, first, end)
    base = {"site": site.id, "jurisdiction": site.jurisdiction, "installed_it_kw": site.it_capacity_kw,
            "period": {"start": lo.astimezone(tz).isoformat(), "end": hi.astimezone(tz).isoformat(),
                       "hours": int((hi - lo).total_seconds() // 3600)}}
    if site.it_capacity_kw < EED_THRESHOLD_KW:
        return {**base, "in_scope": False,
                "reason": f"installed IT power {site.it_capacity_kw:g} kW < {EED_THRESHOLD_KW:g} kW"}
    empty = pl.DataFrame(schema={"time": pl.Datetime("ns", "UTC"), "window": pl.String,
                                 "coverage": pl.Float64, **dict.fromkeys(_SUM_COLUMNS, pl.Float64),
                                 "cfe_matched_kwh": pl.Float64})
    rows = rows_between(kpi, site.id, run, lo, hi, ["1d", "1h"]).collect() if kpi is not None else empty
    days, hours = rows.filter(pl.col("window") == "1d"), rows.filter(pl.col("window") == "1h")
    sums = {c: float(days[c].fill_null(0.0).sum()) if c in days.columns else 0.0 for c in _SUM_COLUMNS}
    goo = sum(g.kwh_within(first, end) for g in site.guarantees_of_origin)
    metered = _metered(site)
    figures = {
        "total_energy_kwh": sums["facility_kwh"],
        "it_energy_kwh": sums["it_kwh"],
        "water_input_m3": sums["water_l"] / 1000.0 if "water_l" in metered else None,
        "reused_heat_kwh": sums["heat_reuse_kwh"] if "heat_reuse_kwh" in metered else None,
        "renewable_onsite_kwh": sums["pv_kwh"] + sums["wind_kwh"],
        "renewable_contracted_kwh": sums["ppa_kwh"] + goo,
    }
    ren = sums["pv_kwh"] + sums["wind_kwh"] + sums["ppa_kwh"] + goo
    r = ratios_of_sums([sums["facility_kwh"]], [sums["it_kwh"]], [ren], water_l=[sums["water_l"]])
    kpis = {"pue": _num(r["pue"][0]), "ref": _num(r["ref"][0]),
            "wue_l_per_kwh": _num(r["wue_l_per_kwh"][0]) if "water_l" in metered else None,
            "erf": (_num(share_of_facility(sums["heat_reuse_kwh"], sums["facility_kwh"], False))
                    if "heat_reuse_kwh" in metered else None)}
    q = (rows_between(quality, site.id, run, lo, hi).collect()
         if quality is not None else pl.DataFrame(schema={"time": pl.Datetime("ns", "UTC")}))
    events = _events(site, q, tz) if q.height else {}
    metered_share, complete_share, gaps = _gaps(hours, lo, hi, tz)
    hourly_ren = sum(hours[c].fill_null(0.0) for c in ("pv_kwh", "wind_kwh", "ppa_kwh") if c in hours.columns)
    cfe = cfe_of_hours(hours["facility_kwh"], hourly_ren) if hours.height else float("nan")
    for k, figs in KPI_FIGURES.items():
        events.setdefault(k, [])
        seen = set()
        for f in figs:
            for ev in events.get(f, []):
                key = (ev["kind"], ev["device"], ev["point"])
                if key not in seen:
                    seen.add(key)
                    events[k].append(ev)
    return {**base, "in_scope": True,
            "figures": figures, "kpis": kpis,
            "renewable": {"pv_kwh": sums["pv_kwh"], "wind_kwh": sums["wind_kwh"], "ppa_kwh": sums["ppa_kwh"],
                          "guarantees_of_origin_kwh": goo},
            "cfe_hourly": _num(cfe),
            "coverage": {"metered_share": metered_share, "complete_share": complete_share,
                         "complete_threshold": COMPLETE, "days_in_store": days.height, "gaps": gaps},
            "events": events}


def eed_report(cfg: Config, year: int | None = None, stores: list[str] | None = None, *,
               period: tuple[date, date] | None = None, run: str | None = None) -> list[dict[str, Any]]:
    """EED report of every site of ``cfg``: ``year`` (local calendar year) or ``period``.

    Parameters
    ----------
    cfg : Config
    year : int, optional
        Reporting year; ``period`` (first day, end day exclusive) overrides it.
    stores : list of str, optional
        Store folders (default: the config's ``parquet`` sinks).
    run : str, optional
        ``run`` tag to report (default: production ``""``, else the store's only run).

    Returns
    -------
    list of dict, one per site (see :func:`site_report`).
    """
    if period is None:
        if year is None:
            msg = "give the reporting year (--eed YEAR) or a period"
            raise ValueError(msg)
        period = year_period(year)
    paths = store_paths(cfg, stores)
    kpi, quality = scan(paths, "kpi"), scan(paths, "quality")
    run = pick_run(paths, run)
    return [site_report(s, kpi, quality, run, *period) for s in cfg.sites]


def _flat(rep: dict[str, Any]) -> dict[str, Any]:
    row = {"site": rep["site"], "jurisdiction": rep["jurisdiction"], "in_scope": rep["in_scope"],
           "installed_it_kw": rep["installed_it_kw"], "period_start": rep["period"]["start"],
           "period_end": rep["period"]["end"]}
    if not rep["in_scope"]:
        return {**row, "reason": rep["reason"]}
    row.update(rep["figures"])
    row.update(rep["kpis"])
    row.update(rep["renewable"])
    row["cfe_hourly"] = rep["cfe_hourly"]
    c = rep["coverage"]
    row.update(metered_share=c["metered_share"], complete_share=c["complete_share"], gaps=len(c["gaps"]),
               gap_hours=sum(g["hours"] for g in c["gaps"]),
               quality_events=sum(e["count"] for f, evs in rep["events"].items()
                                  if f in FIGURE_ROLES or f == "other" for e in evs))
    return row


def render(reports: list[dict[str, Any]], fmt: str) -> str:
    """Render the report as ``json``, ``csv`` (a row per site) or ``html`` (a page per site)."""
    if fmt == "json":
        return json.dumps(reports, indent=2, default=str)
    if fmt == "csv":
        rows = [_flat(r) for r in reports]
        cols: list[str] = []
        for r in rows:
            cols += [k for k in r if k not in cols]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    if fmt == "html":
        return render_html(reports)
    msg = f"unknown report format {fmt!r}; use json, csv or html"
    raise ValueError(msg)


def write_report(reports: list[dict[str, Any]], fmt: str, out: str | None) -> str:
    """Render and write to ``out`` (a file), or return the text for stdout when ``out`` is None."""
    text = render(reports, fmt)
    if out:
        Path(out).write_text(text, encoding="utf-8")
    return text
