"""``report --eed``: the EU data-centre indicators from a store, checked against the store's
daily rows read independently (``read_store``) and against hand-made numbers.

A 3-day period stands in for the year (``period=``): a 1 MW site in Madrid whose load differs
day to day (so a mean of daily PUEs is not the period's PUE), with a 3-hour outage of every
meter on day 2, and a 300 kW site that is not in scope.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from pueflow.cli import main
from pueflow.config.load import parse_config
from pueflow.connectors.parquet_store import ParquetStore, read_store
from pueflow.modes.eed import COMPLETE, eed_report, render
from tests.conftest import frames, run

TZ = ZoneInfo("Europe/Madrid")
FIRST, END = date(2026, 3, 2), date(2026, 3, 5)
MIN = 60 * 10**9
IT_KW = {0: 500.0, 1: 800.0, 2: 650.0}          # per local day
OVERHEAD = {0: 0.30, 1: 0.12, 2: 0.20}          # facility = IT x (1 + overhead)
GAP = (datetime(2026, 3, 3, 10, tzinfo=TZ), datetime(2026, 3, 3, 13, tzinfo=TZ))
METERS = [{"device": "inc", "point": "kw", "kind": "power", "role": "facility"},
          {"device": "pdu", "point": "kw", "kind": "power", "role": "it"},
          {"device": "pv", "point": "kw", "kind": "power", "role": "pv"},
          {"device": "ppa-farm", "point": "kw", "kind": "power", "role": "ppa"},
          {"device": "water", "point": "l", "kind": "register", "role": "water_l"}]


def site(sid: str, kw: float, **extra) -> dict:
    return {"id": sid, "jurisdiction": "ES", "timezone": "Europe/Madrid", "latitude": 41.6,
            "longitude": -0.9, "it_capacity_kw": kw, "meters": METERS, **extra}


CFG = parse_config({
    "pipeline": {"windows": ["1m", "1h", "1d"], "grace": "0s"},
    "sites": [site("zaragoza-1", 1000.0, guarantees_of_origin=[
        {"start": "2026-01-01", "end": "2027-01-01", "kwh": 365000.0, "technology": "wind"}]),
        site("edge-1", 300.0)]})


def readings(sid: str, gap: bool):
    t0 = int(datetime(2026, 3, 2, tzinfo=TZ).timestamp()) * 10**9
    t_end = int(datetime(2026, 3, 5, tzinfo=TZ).timestamp()) * 10**9
    g0, g1 = (int(t.timestamp()) * 10**9 for t in GAP)
    rows, water = [], 0.0
    for t in range(t0, t_end + MIN, MIN):
        if gap and g0 < t < g1:
            continue
        local = datetime.fromtimestamp(t / 1e9, TZ)
        day = min((local.date() - FIRST).days, 2)
        it = IT_KW[day]
        pv = max(0.0, 300.0 * np.sin(np.pi * (local.hour + local.minute / 60 - 7) / 12))
        rows += [(t, (sid, "inc", "kw"), it * (1 + OVERHEAD[day])), (t, (sid, "pdu", "kw"), it),
                 (t, (sid, "pv", "kw"), pv), (t, (sid, "ppa-farm", "kw"), 200.0),
                 (t, (sid, "water", "l"), water)]
        water += 25.0
    return rows


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("eed-store")
    _, outs = run(CFG, [readings("zaragoza-1", gap=True) + readings("edge-1", gap=False)])
    st = ParquetStore(path)
    for m in ("kpi", "quality"):
        df = frames(outs, m)
        if df is not None:
            st.write(m, df.with_columns(pl.lit("").alias("run")))
    st.flush()
    return path


@pytest.fixture(scope="module")
def report(store):
    return {r["site"]: r for r in eed_report(CFG, stores=[str(store)], period=(FIRST, END))}


def test_figures_are_sums_of_the_daily_rows(store, report):
    r = report["zaragoza-1"]
    days = read_store(store, "kpi", site="zaragoza-1", window="1d")
    days = days.filter((pl.col("time") >= datetime(2026, 3, 2, tzinfo=TZ).astimezone(UTC))
                       & (pl.col("time") < datetime(2026, 3, 5, tzinfo=TZ).astimezone(UTC)))
    assert days.height == 3
    f = r["figures"]
    assert f["total_energy_kwh"] == pytest.approx(days["facility_kwh"].sum(), rel=1e-12)
    assert f["it_energy_kwh"] == pytest.approx(days["it_kwh"].sum(), rel=1e-12)
    assert f["water_input_m3"] == pytest.approx(days["water_l"].sum() / 1000, rel=1e-12)
    assert f["renewable_onsite_kwh"] == pytest.approx(days["pv_kwh"].sum(), rel=1e-12)
    # contracted = metered PPA + guarantees of origin pro rata (3 of 365 days of 365 000 kWh)
    assert r["renewable"]["guarantees_of_origin_kwh"] == pytest.approx(3000.0, rel=1e-12)
    assert f["renewable_contracted_kwh"] == pytest.approx(days["ppa_kwh"].sum() + 3000.0, rel=1e-12)
    assert f["reused_heat_kwh"] is None  # no heat-reuse meter: not metered, not zero


def test_kpis_are_ratios_of_the_period_sums_not_means(report):
    r = report["zaragoza-1"]
    f, k = r["figures"], r["kpis"]
    assert k["pue"] == pytest.approx(f["total_energy_kwh"] / f["it_energy_kwh"], rel=1e-12)
    assert k["wue_l_per_kwh"] == pytest.approx(1000 * f["water_input_m3"] / f["it_energy_kwh"], rel=1e-12)
    ren = f["renewable_onsite_kwh"] + f["renewable_contracted_kwh"]
    assert k["ref"] == pytest.approx(min(ren / f["total_energy_kwh"], 1.0), rel=1e-12)
    # independently: trapezoids of the raw readings (intervals longer than the 60 s max_gap
    # of a power meter are not filled), facility over IT; not the mean of the daily PUEs
    def energy(device):
        pts = sorted((t, v) for t, key, v in readings("zaragoza-1", gap=True) if key[1] == device)
        return sum((v0 + v1) / 2 * (t1 - t0) / 3.6e12
                   for (t0, v0), (t1, v1) in zip(pts, pts[1:], strict=False) if t1 - t0 <= MIN)
    assert k["pue"] == pytest.approx(energy("inc") / energy("pdu"), rel=1e-9)
    assert abs(k["pue"] - np.mean([1 + OVERHEAD[d] for d in range(3)])) > 5e-3


def test_small_site_is_listed_as_not_in_scope(report):
    r = report["edge-1"]
    assert r["in_scope"] is False
    assert "300 kW < 500 kW" in r["reason"]
    assert "figures" not in r


def test_the_metering_gap_reduces_coverage_and_is_named(report):
    c = report["zaragoza-1"]["coverage"]
    hours = 72
    # the three silent hours are the only incomplete ones; everything else is complete
    assert c["complete_share"] == pytest.approx((hours - 3) / hours, rel=1e-12)
    assert c["metered_share"] < 1.0
    assert c["metered_share"] == pytest.approx((hours - 3) / hours, abs=1e-3)
    assert c["complete_threshold"] == COMPLETE
    assert [(g["start"], g["end"], g["hours"]) for g in c["gaps"]] == [
        (GAP[0].isoformat(), GAP[1].isoformat(), 3)]
    # and the gap events of each meter are named against the figures they make
    ev = report["zaragoza-1"]["events"]
    assert {"gap"} <= {e["kind"] for e in ev["total_energy_kwh"]}
    assert ("inc", "kw") in {(e["device"], e["point"]) for e in ev["total_energy_kwh"] if e["kind"] == "gap"}
    assert ("pdu", "kw") in {(e["device"], e["point"]) for e in ev["pue"] if e["kind"] == "gap"}
    assert ("ppa-farm", "kw") in {(e["device"], e["point"]) for e in ev["ref"] if e["kind"] == "gap"}
    assert report["zaragoza-1"]["coverage"]["days_in_store"] == 3


def test_formats(report, store, tmp_path, capsys):
    reports = list(report.values())
    js = json.loads(render(reports, "json"))
    assert {r["site"] for r in js} == {"zaragoza-1", "edge-1"}
    rows = list(csv.DictReader(io.StringIO(render(reports, "csv"))))
    z = next(r for r in rows if r["site"] == "zaragoza-1")
    assert float(z["pue"]) == pytest.approx(report["zaragoza-1"]["kpis"]["pue"], rel=1e-12)
    assert z["gaps"] == "1"
    html = render(reports, "html")
    assert html.count('class="page"') == 2
    assert "Not in scope" in html
    assert "<script" not in html
    assert f'{report["zaragoza-1"]["kpis"]["pue"]:.3f}' in html


def test_cli_report_eed_writes_the_html(store, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("""
[pipeline]
windows = ["1m", "1h", "1d"]
[[sites]]
id = "zaragoza-1"
jurisdiction = "ES"
timezone = "Europe/Madrid"
latitude = 41.6
longitude = -0.9
it_capacity_kw = 1000
[[sites.meters]]
device = "inc"
point = "kw"
kind = "power"
role = "facility"
[[sites.meters]]
device = "pdu"
point = "kw"
kind = "power"
role = "it"
""")
    out = tmp_path / "eed.html"
    assert main(["report", "--eed", "2026", "--config", str(cfg), "--store", str(store),
                 "--format", "html", "--out", str(out)]) == 0
    text = out.read_text()
    assert "zaragoza-1 — EU data-centre report" in text
    assert "2026-01-01 to 2027-01-01" in text
