"""The simulator's contracted wind farm (``[[sites.ppa]]``): a metered off-site feed that the
site's power balance never sees."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pueflow.config.load import load_config
from pueflow.sim import simulate
from pueflow.sim.wind import power_curve

ROOT = Path(__file__).resolve().parents[3]
JULY = datetime(2026, 7, 20, tzinfo=UTC)


def tetouan_fleet_site(with_ppa: bool):
    cfg = load_config(ROOT / "config" / "fleet-4-countries.toml")
    cfg.sites = [s for s in cfg.sites if s.id == "tetouan-1"]
    if not with_ppa:
        cfg.sites[0].ppa = []
    return cfg


@pytest.fixture(scope="module")
def runs():
    return (simulate(tetouan_fleet_site(True), JULY, 1, seed=5, step_s=60.0, faults=False),
            simulate(tetouan_fleet_site(False), JULY, 1, seed=5, step_s=60.0, faults=False))


def test_moroccan_sites_have_a_ppa_wind_farm():
    cfg = load_config(ROOT / "config" / "fleet-4-countries.toml")
    assert {s.id for s in cfg.sites if s.ppa} == {s.id for s in cfg.sites if s.jurisdiction == "MA"}
    assert load_config(ROOT / "config" / "dakhla-40mw-gb200.toml").sites[0].ppa


def test_ppa_feed_is_metered_within_capacity_and_matches_truth(runs):
    with_ppa, _ = runs
    c = tetouan_fleet_site(True).sites[0].ppa[0]
    feed = with_ppa.telemetry.filter(pl.col("device") == f"ppa-{c.name}")
    assert feed.height == 24 * 60 + 1
    assert set(feed["point"]) == {"power_kw"}
    kw = feed.sort("time")["value"].to_numpy()
    assert kw.min() >= 0.0
    assert kw.max() <= c.capacity_kw * (1 + 1e-9)
    assert kw.max() > 0.05 * c.capacity_kw  # the farm does produce in a July day of trade winds
    # trapezoid of the 1-minute samples = truth's ppa energy of the day
    trap = float(((kw[1:] + kw[:-1]) / 2).sum() / 60.0)
    truth = with_ppa.truth.filter(pl.col("window") == "1h")["ppa_kwh"].sum()
    assert truth == pytest.approx(trap, rel=1e-9)
    assert power_curve(c.turbine_type, c.hub_height_m)[2] > 0


def test_ppa_never_enters_the_site_balance(runs):
    with_ppa, without = runs
    a = with_ppa.truth.filter(pl.col("window") == "1h").sort("time")
    b = without.truth.filter(pl.col("window") == "1h").sort("time")
    for col in ("facility_kwh", "it_kwh", "pv_kwh", "wind_kwh", "grid_import_kwh", "grid_export_kwh",
                "battery_kwh"):
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy(), err_msg=col)
    assert b["ppa_kwh"].sum() == 0.0
    # REF of the truth counts it: (pv + wind + ppa) / facility, capped
    ren = a["pv_kwh"] + a["wind_kwh"] + a["ppa_kwh"]
    want = np.minimum((ren / a["facility_kwh"]).to_numpy(), 1.0)
    np.testing.assert_allclose(a["ref"].to_numpy(), want, rtol=1e-12)
    assert (a["ref"] >= b["ref"]).all()
