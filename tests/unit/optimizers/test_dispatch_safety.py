"""Setpoint safety: every limit clips, and every clip is reported."""

from __future__ import annotations

import numpy as np
import pytest

from pueflow.optimizers.assets import site_model
from pueflow.optimizers.safety import Setpoints, clip_setpoints
from pueflow.optimizers.testing import tiny_site

MODEL = site_model(tiny_site(
    it_capacity_kw=1000.0, grid={"import_limit_kw": 800.0},
    battery={"energy_kwh": 100.0, "charge_kw": 50.0, "discharge_kw": 40.0, "soc_min_pct": 10.0,
             "soc_max_pct": 90.0, "charge_efficiency": 1.0, "discharge_efficiency": 1.0},
    jobs=[{"name": "j", "max_kw": 300.0, "idle_kw": 30.0}],
    cooling=[{"name": "liquid", "heat_share": 1.0, "supply_min_c": 20.0, "supply_max_c": 45.0,
              "chip_limit_c": 85.0, "chip_rise_c": 50.0}]))


def clip(bat=0.0, grid=100.0, job=100.0, supply=30.0, soc=50.0, on=True, firm=200.0):
    return clip_setpoints(MODEL, Setpoints(bat, grid, np.array([job]), np.array([supply])), soc_kwh=soc,
                          dt_h=1.0, job_on=np.array([on]), firm_kw=firm)


def test_within_limits_passes_untouched():
    pub, clips = clip()
    assert clips == []
    assert pub.battery_kw == 0.0
    assert pub.flex_it_cap_kw == 100.0


@pytest.mark.parametrize(("kw", "asset", "point", "published"), [
    ({"bat": 80.0}, "battery", "battery_kw", 40.0),           # SoC room: 90 - 50 kWh in an hour
    ({"bat": 80.0, "soc": 20.0}, "battery", "battery_kw", 50.0),  # charger rating
    ({"bat": -80.0}, "battery", "battery_kw", -40.0),         # discharge rating
    ({"bat": -30.0, "soc": 15.0}, "battery", "battery_kw", -5.0),  # down to the 10 % floor
    ({"grid": 900.0}, "grid", "grid_import_kw", 800.0),
    ({"grid": -5.0}, "grid", "grid_import_kw", 0.0),
    ({"job": 500.0}, "job.j", "flex_it_cap_kw", 300.0),
    ({"job": 5.0}, "job.j", "flex_it_cap_kw", 30.0),          # idle floor while the window is open
    ({"job": 100.0, "on": False}, "job.j", "flex_it_cap_kw", 0.0),
    ({"supply": 50.0}, "cooling.liquid", "cooling_supply_c", 45.0),
    ({"supply": 10.0}, "cooling.liquid", "cooling_supply_c", 20.0),
    ({"supply": 45.0, "job": 300.0, "firm": 600.0}, "cooling.liquid", "cooling_supply_c", 85.0 - 50.0 * 0.9),
    ({"bat": np.nan}, "battery", "battery_kw", 0.0),
])
def test_each_limit_clips_and_reports(kw, asset, point, published):
    pub, clips = clip(**kw)
    assert [(c.asset, c.point) for c in clips] == [(asset, point)]
    assert clips[0].published == pytest.approx(published)
    assert clips[0].detail


def test_soc_outside_the_band_may_only_move_back():
    pub, clips = clip(bat=-10.0, soc=5.0)
    assert pub.battery_kw == 0.0
    assert clips
    pub, clips = clip(bat=20.0, soc=5.0)
    assert pub.battery_kw == 20.0
    assert not clips
    pub, clips = clip(bat=10.0, soc=95.0)
    assert pub.battery_kw == 0.0
    assert clips


def test_chip_limit_beyond_the_band_publishes_the_band_minimum():
    pub, clips = clip(supply=30.0, job=300.0, firm=1500.0)
    assert pub.supply_c[0] == 20.0
    assert clips[0].asset == "cooling.liquid"
