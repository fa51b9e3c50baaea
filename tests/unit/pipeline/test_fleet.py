"""Fleet KPIs are energy-weighted: sums of energies across sites, never means of ratios."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from pueflow.config.load import parse_config
from pueflow.pipeline.core import Pipeline
from pueflow.pipeline.fleet import FleetAggregator, fleet_row, site_totals
from pueflow.roles import ALL_ROLES, ROLE_INDEX
from pueflow.schema.batch import Batch

NS = 10**9
FLEET_PUE = 175.0 / 150.0  # A: IT 100 at 1.10, B: IT 50 at 1.30
FAR_CLOCK = lambda: 2**62  # noqa: E731 - nothing in these tests is "from the future"


def _site(sid: str, jur: str, tz: str = "UTC", co2: float = 0.0) -> dict:
    return {"id": sid, "jurisdiction": jur, "timezone": tz, "latitude": 0.0, "longitude": 0.0,
            "it_capacity_kw": 1000.0, "grid_co2_kg_per_kwh": co2,
            "meters": [
                {"device": "incomer-*", "point": "power_kw", "kind": "power", "role": "facility",
                 "max_gap": "120s"},
                {"device": "pdu-*", "point": "power_kw", "kind": "power", "role": "it",
                 "max_gap": "120s"},
                {"device": "pv-*", "point": "power_kw", "kind": "power", "role": "pv",
                 "max_gap": "120s"},
            ]}


def _run(cfg, loads: dict[tuple[str, str], float], t0_ns: int, t1_ns: int, step_s: int = 60,
         chunk: int | None = None):
    """Constant ``loads`` [kW] per (site, device), sampled every ``step_s`` from t0 to t1
    inclusive, fed in time order (as a collector would) through one pipeline."""
    p = Pipeline(cfg, clock_ns=FAR_CLOCK)
    ts = np.arange(t0_ns, t1_ns + 1, step_s * NS, dtype=np.int64)
    ids = [p.registry.id(site, dev, "power_kw") for site, dev in loads]
    t = np.repeat(ts, len(ids))
    s = np.tile(np.array(ids, np.int32), len(ts))
    v = np.tile(np.array(list(loads.values())), len(ts))
    batch = Batch(t, s, v)
    outs = [p.process(b) for b in (batch.split(chunk) if chunk else [batch])]
    outs.append(p.finalize())
    kpi = pl.concat([o.kpi for o in outs if o.kpi is not None], how="diagonal_relaxed")
    fleet = pl.concat([o.fleet for o in outs if o.fleet is not None], how="diagonal_relaxed")
    return kpi, fleet


def _energy(**kwh: float) -> np.ndarray:
    e = np.zeros(len(ALL_ROLES))
    for role, v in kwh.items():
        e[ROLE_INDEX[role]] = v
    return e


def _metered(*roles: str) -> np.ndarray:
    m = np.zeros(len(ALL_ROLES), np.bool_)
    for r in roles:
        m[ROLE_INDEX[r]] = True
    return m


# ------------------------------------------------------------------------ fleet_row directly
def test_worked_example_fleet_pue_is_energy_weighted_not_mean_of_ratios():
    met = _metered("facility", "it")
    a = site_totals(_energy(facility=110e6, it=100e6), met, 0.0)  # 100 GWh IT at 1.10
    b = site_totals(_energy(facility=65e6, it=50e6), met, 0.0)  # 50 GWh IT at 1.30
    row = fleet_row(a + b)
    assert row["pue"] == pytest.approx(1.166667, abs=5e-7)
    assert row["pue"] == pytest.approx(FLEET_PUE, rel=1e-12)
    assert abs(row["pue"] - (1.10 + 1.30) / 2) > 0.03
    assert row["it_kwh"] == 150e6
    assert row["facility_kwh"] == 175e6


def test_ref_and_cue_are_energy_weighted_too():
    met = _metered("facility", "it", "pv")
    a = site_totals(_energy(facility=110.0, it=100.0, pv=55.0), met, 0.5)  # REF 0.5
    b = site_totals(_energy(facility=65.0, it=50.0), met, 0.1)  # REF 0
    row = fleet_row(a + b)
    assert row["ref"] == pytest.approx(55.0 / 175.0)  # not (0.5 + 0) / 2
    # CUE: grid = facility - renewables when grid import is not metered
    assert row["cue_kg_per_kwh"] == pytest.approx((55.0 * 0.5 + 65.0 * 0.1) / 150.0)


def test_fleet_row_without_it_energy_has_no_pue():
    row = fleet_row(np.array([10.0, 0.0, 0.0, 0.0, 0.0]))
    assert row["pue"] is None
    assert row["cue_kg_per_kwh"] is None
    assert fleet_row(np.zeros(5))["ref"] is None


def test_unmetered_facility_is_built_from_it_and_overheads():
    met = _metered("it", "cooling.chiller", "electrical_losses")
    tot = site_totals(_energy(it=100.0, **{"cooling.chiller": 25.0}, electrical_losses=8.0),
                      met, 0.0)
    assert tot[0] == pytest.approx(133.0)


# ------------------------------------------------------------------------ through Pipeline
T0 = int(datetime(2026, 7, 1, tzinfo=UTC).timestamp()) * NS
LOADS = {("a", "incomer-1"): 110.0, ("a", "pdu-1"): 100.0,
         ("b", "incomer-1"): 65.0, ("b", "pdu-1"): 50.0}


@pytest.mark.parametrize("chunk", [None, 97], ids=["one-batch", "chunks-of-97"])
def test_fleet_pue_through_pipeline_is_energy_weighted(chunk):
    cfg = parse_config({"pipeline": {"windows": ["1m", "15m", "1h", "1d"]},
                        "sites": [_site("a", "MA"), _site("b", "ES")]})
    kpi, fleet = _run(cfg, LOADS, T0, T0 + 2 * 3600 * NS, chunk=chunk)
    site_1h = kpi.filter(pl.col("window") == "1h").sort("site", "time")
    assert site_1h["pue"].to_list() == pytest.approx([1.1, 1.1, 1.3, 1.3])

    whole = fleet.filter((pl.col("scope") == "fleet") & (pl.col("sites") == 2))
    assert set(whole["window"]) == {"1m", "15m", "1h", "1d"}
    assert whole.height == 120 + 8 + 2 + 1
    assert whole["pue"].to_list() == pytest.approx([FLEET_PUE] * whole.height, rel=1e-12)
    one_h = whole.filter(pl.col("window") == "1h").sort("time")
    assert one_h["time"].to_list() == [datetime(2026, 7, 1, h, tzinfo=UTC) for h in (0, 1)]
    assert one_h["it_kwh"].to_list() == pytest.approx([150.0, 150.0])
    assert one_h["facility_kwh"].to_list() == pytest.approx([175.0, 175.0])
    # per-jurisdiction scopes carry their own site's ratio
    for scope, pue in (("MA", 1.1), ("ES", 1.3)):
        rows = fleet.filter(pl.col("scope") == scope)
        assert rows["pue"].to_list() == pytest.approx([pue] * rows.height)
        assert set(rows["sites"]) == {1}


def test_fleet_rows_do_not_depend_on_how_the_input_was_cut():
    cfg = parse_config({"pipeline": {"windows": ["1m", "15m", "1h"]},
                        "sites": [_site("a", "MA"), _site("b", "ES")]})
    _, one = _run(cfg, LOADS, T0, T0 + 3600 * NS)
    _, many = _run(cfg, LOADS, T0, T0 + 3600 * NS, chunk=13)
    cols = ["time", "scope", "window", "facility_kwh", "it_kwh", "pue", "sites"]
    key = ["scope", "window", "time"]
    assert one.select(cols).sort(key).equals(many.select(cols).sort(key))


def test_fleet_daily_row_joins_each_sites_local_day():
    """Madrid's 2026-03-29 (23 h) and Chicago's 2026-03-29 (24 h) start 7 h apart in UTC;
    the fleet row of that date holds both sites' local days."""
    cfg = parse_config({"pipeline": {"windows": ["15m", "1h", "1d"]},
                        "sites": [_site("mad", "ES", "Europe/Madrid"),
                                  _site("chi", "US", "America/Chicago")]})
    loads = {("mad", "pdu-1"): 100.0, ("mad", "incomer-1"): 120.0,
             ("chi", "pdu-1"): 50.0, ("chi", "incomer-1"): 70.0}
    start = int(datetime(2026, 3, 28, tzinfo=ZoneInfo("Europe/Madrid")).timestamp()) * NS
    end = int(datetime(2026, 3, 31, tzinfo=ZoneInfo("America/Chicago")).timestamp()) * NS
    kpi, fleet = _run(cfg, loads, start, end)
    day = (fleet.filter((pl.col("window") == "1d") & (pl.col("scope") == "fleet")
                        & (pl.col("time") == datetime(2026, 3, 29, tzinfo=UTC))).row(0, named=True))
    assert day["sites"] == 2
    assert day["it_kwh"] == pytest.approx(100.0 * 23 + 50.0 * 24)
    assert day["facility_kwh"] == pytest.approx(120.0 * 23 + 70.0 * 24)
    assert day["pue"] == pytest.approx((120.0 * 23 + 70.0 * 24) / (100.0 * 23 + 50.0 * 24))
    # the site rows of that day start at each site's own local midnight
    site_days = kpi.filter(pl.col("window") == "1d")
    starts = {(r["site"], r["time"]) for r in site_days.iter_rows(named=True)}
    assert ("mad", datetime(2026, 3, 28, 23, tzinfo=UTC)) in starts
    assert ("chi", datetime(2026, 3, 29, 5, tzinfo=UTC)) in starts


def test_aggregator_waits_for_every_site_of_a_scope_until_final():
    cfg = parse_config({"sites": [_site("a", "MA"), _site("b", "ES"), _site("c", "ES")]})
    agg = FleetAggregator(cfg)
    assert agg.scopes == {"fleet": {"a", "b", "c"}, "MA": {"a"}, "ES": {"b", "c"}}
    met = _metered("facility", "it")
    tz = ZoneInfo("UTC")
    agg.add(cfg.sites[0], "1h", T0, _energy(facility=110.0, it=100.0), met, tz)
    agg.add(cfg.sites[1], "1h", T0, _energy(facility=65.0, it=50.0), met, tz)
    out = agg.flush(final=False)
    assert out["scope"].to_list() == ["MA"]  # ES and fleet still wait for site c
    agg.add(cfg.sites[2], "1h", T0, _energy(facility=13.0, it=10.0), met, tz)
    out = agg.flush(final=False).sort("scope")
    assert out["scope"].to_list() == ["ES", "fleet"]
    assert out["pue"].to_list() == pytest.approx([78.0 / 60.0, 188.0 / 160.0])
    assert agg.flush(final=True) is None
    assert out["time"].to_list() == [datetime(2026, 7, 1, tzinfo=UTC)] * 2


def test_a_silent_site_does_not_hold_fleet_rows_back_forever():
    cfg = parse_config({"pipeline": {"windows": ["1m", "1h"], "grace": "0s"},
                        "sites": [_site("a", "MA"), _site("b", "ES")]})
    p = Pipeline(cfg, clock_ns=FAR_CLOCK)
    sid = p.registry.id("a", "pdu-1", "power_kw")
    ts = T0 + np.arange(0, 3 * 3600 + 1, 60, dtype=np.int64) * NS
    emitted = []
    for b in Batch(ts, np.full(len(ts), sid), np.full(len(ts), 100.0)).split(120):
        out = p.process(b)
        if out.fleet is not None:
            emitted.append(out.fleet)
    # site b is silent: its feed's watermark moves on (the quiet-feed rule / an operator)
    out = p.advance_watermark({1: T0 + 3 * 3600 * NS})
    if out.fleet is not None:
        emitted.append(out.fleet)
    fleet = pl.concat(emitted)
    whole = fleet.filter((pl.col("scope") == "fleet") & (pl.col("window") == "1h"))
    assert whole.height >= 2, "no all-fleet row before finalize() although both feeds moved on"
