"""The dispatch LP on problems small enough to solve by hand, and how it fails safely."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pueflow.optimizers import plant
from pueflow.optimizers.assets import site_model
from pueflow.optimizers.horizon import DispatchState, make_problem
from pueflow.optimizers.policy import SiteDispatch
from pueflow.optimizers.solve import available_backends, solve
from pueflow.optimizers.testing import flat_forecast, tiny_site

NS = 10**9
T0 = int(dt.datetime(2025, 1, 6, tzinfo=dt.UTC).timestamp()) * NS  # a Monday, 00:00 UTC

CHEAP_THEN_DEAR = {"periods": [{"name": "cheap", "price_per_kwh": 0.5, "start": "00:00", "end": "01:00"}],
                   "default_price_per_kwh": 1.5}
BATTERY = {"energy_kwh": 10.0, "charge_kw": 10.0, "discharge_kw": 10.0, "charge_efficiency": 0.9,
           "discharge_efficiency": 0.9, "soc_min_pct": 0.0, "soc_max_pct": 100.0, "initial_soc_pct": 0.0,
           "terminal_soc_pct": 0.0, "wear_cost_per_kwh": 0.0}


def plan_for(site, fc, state=None, n=None, backend=None, **kw):
    m = site_model(site)
    n = n or m.horizon_steps
    p = make_problem(m, T0, n, fc, state or DispatchState.initial(m), **kw)
    eng = SiteDispatch(m, backend=backend)
    return m, p, eng.solve_lp(p)


@pytest.mark.parametrize("backend", available_backends())
def test_one_cheap_one_dear_hour(backend):
    """Charge in the cheap hour exactly what covers the dear hour's load after both losses."""
    site = tiny_site(horizon="2h", tariff=CHEAP_THEN_DEAR, battery=BATTERY)
    _, _, plan = plan_for(site, flat_forecast(2, it_kw=5.0), backend=backend)
    charge = 5.0 / 0.9 / 0.9
    assert plan.source == "lp"
    assert plan.status == "optimal"
    assert plan.objective == pytest.approx(0.5 * (5.0 + charge), rel=1e-9)
    np.testing.assert_allclose(plan.battery_kw, [charge, -5.0], rtol=1e-8)
    np.testing.assert_allclose(plan.grid_import_kw, [5.0 + charge, 0.0], atol=1e-7)
    np.testing.assert_allclose(plan.soc_kwh, [0.9 * charge, 0.0], atol=1e-7)


def test_wear_cost_is_paid_on_both_directions():
    battery = {**BATTERY, "wear_cost_per_kwh": 0.1}
    site = tiny_site(horizon="2h", tariff=CHEAP_THEN_DEAR, battery=battery)
    _, _, plan = plan_for(site, flat_forecast(2, it_kw=5.0))
    charge = 5.0 / 0.81
    assert plan.objective == pytest.approx(0.5 * (5.0 + charge) + 0.1 * (charge + 5.0), rel=1e-9)


def test_wear_dearer_than_the_spread_leaves_the_battery_idle():
    battery = {**BATTERY, "wear_cost_per_kwh": 1.0}
    site = tiny_site(horizon="2h", tariff=CHEAP_THEN_DEAR, battery=battery)
    _, _, plan = plan_for(site, flat_forecast(2, it_kw=5.0))
    assert plan.objective == pytest.approx(0.5 * 5 + 1.5 * 5, rel=1e-9)
    np.testing.assert_allclose(plan.battery_kw, 0.0, atol=1e-9)


def test_demand_charge_peak_shaving():
    """Flat price 1, 2 per kW of peak: discharging 10 kW at the 30 kW hour saves 20."""
    battery = {**BATTERY, "energy_kwh": 20.0, "charge_efficiency": 1.0, "discharge_efficiency": 1.0,
               "initial_soc_pct": 50.0}
    site = tiny_site(horizon="2h", tariff={"default_price_per_kwh": 1.0, "demand_charge_per_kw": 2.0},
                     battery=battery)
    _, _, plan = plan_for(site, flat_forecast(2, it_kw=np.array([10.0, 30.0])))
    assert plan.objective == pytest.approx(30.0 + 2.0 * 20.0, rel=1e-9)
    assert plan.peak_kw == pytest.approx(20.0)


def test_demand_charge_counts_the_incumbent_peak():
    """A peak already billed this month costs nothing more to reach again."""
    site = tiny_site(horizon="2h", tariff={"default_price_per_kwh": 1.0, "demand_charge_per_kw": 2.0})
    m = site_model(site)
    st = DispatchState.initial(m)
    p0 = make_problem(m, T0, 2, flat_forecast(2, it_kw=30.0), st)
    st.bill_id, st.peak_kw = int(p0.sig.bill_id[0]), 25.0
    _, _, plan = plan_for(site, flat_forecast(2, it_kw=30.0), state=st)
    assert plan.objective == pytest.approx(60.0 + 2.0 * 5.0, rel=1e-9)


def _job(**kw):
    return {"name": "train", "max_kw": 10.0, "window_start": "00:00", "window_end": "03:00", "work_h": 2.0,
            "unmet_penalty_per_h": 100.0, **kw}


PRICES_132 = {"periods": [{"name": "a", "price_per_kwh": 1.0, "start": "00:00", "end": "01:00"},
                          {"name": "b", "price_per_kwh": 3.0, "start": "01:00", "end": "02:00"},
                          {"name": "c", "price_per_kwh": 2.0, "start": "02:00", "end": "03:00"}],
              "default_price_per_kwh": 5.0}


def test_job_runs_in_the_cheapest_hours():
    site = tiny_site(tariff=PRICES_132, jobs=[_job(throughput=[(0, 0), (1, 1)])])
    _, _, plan = plan_for(site, flat_forecast(4, it_kw=0.0))
    assert plan.objective == pytest.approx(10 * 1.0 + 10 * 2.0, rel=1e-9)
    np.testing.assert_allclose(plan.job_kw[0], [10, 0, 10, 0], atol=1e-7)


def test_concave_throughput_spreads_the_work():
    """Half power gives 75 % of the throughput: 0.75 h at hours 0 and 2, then 0.5 h at 20/h."""
    site = tiny_site(tariff=PRICES_132, jobs=[_job(throughput=[(0, 0), (0.5, 0.75), (1, 1)])])
    _, _, plan = plan_for(site, flat_forecast(4, it_kw=0.0))
    assert plan.objective == pytest.approx(5 * 1.0 + 5 * 2.0 + 0.5 * 20.0, rel=1e-9)
    assert plan.unmet_h.sum() == pytest.approx(0.0, abs=1e-9)


def test_impossible_deadline_still_gives_a_plan():
    site = tiny_site(tariff=PRICES_132, jobs=[_job(work_h=5.0, throughput=[(0, 0), (1, 1)])])
    _, _, plan = plan_for(site, flat_forecast(4, it_kw=0.0))
    assert plan.source == "lp"
    assert plan.unmet_deadline_h[0] == pytest.approx(2.0)
    assert plan.objective == pytest.approx(10 * (1 + 3 + 2) + 2 * 100.0, rel=1e-9)


def test_work_already_done_carries_into_the_window():
    site = tiny_site(tariff=PRICES_132, jobs=[_job(throughput=[(0, 0), (1, 1)])])
    m = site_model(site)
    st = DispatchState.initial(m)
    p = make_problem(m, T0, 4, flat_forecast(4, it_kw=0.0), st)
    st.job_occ[:] = p.job_occ[0, 0]
    st.job_done_h[:] = 1.5
    _, _, plan = plan_for(site, flat_forecast(4, it_kw=0.0), state=st)
    assert plan.objective == pytest.approx(5 * 1.0, rel=1e-9)


def test_job_ramp_limit():
    site = tiny_site(tariff=PRICES_132, jobs=[_job(ramp_kw_per_h=4.0, throughput=[(0, 0), (1, 1)])])
    _, _, plan = plan_for(site, flat_forecast(4, it_kw=0.0))
    x = plan.job_kw[0][:3]
    assert np.all(np.abs(np.diff(x)) <= 4.0 + 1e-7)


def test_soc_outside_its_band_is_noted_and_planned_back():
    battery = {**BATTERY, "soc_min_pct": 20.0, "soc_max_pct": 80.0}
    site = tiny_site(horizon="2h", tariff=CHEAP_THEN_DEAR, battery=battery)
    m = site_model(site)
    st = DispatchState.initial(m)
    st.soc_kwh = 9.5  # 95 %: above the 80 % band
    _, p, plan = plan_for(site, flat_forecast(2, it_kw=5.0), state=st)
    assert plan.source == "lp"
    assert any(a == "battery" and "outside" in d for a, _, d in plan.notes)
    assert plan.soc_kwh.max() <= 9.5 + 1e-9
    st.soc_kwh = 14.0  # impossible: more than the battery holds
    _, p, plan = plan_for(site, flat_forecast(2, it_kw=5.0), state=st)
    assert p.e0_kwh == 10.0
    assert plan.source == "lp"


def test_infeasible_limits_fall_back_to_the_rule_with_the_reason():
    site = tiny_site(grid={"import_limit_kw": 50.0})
    _, _, plan = plan_for(site, flat_forecast(4, it_kw=80.0))
    assert plan.source == "rule"
    assert "infeasible" in plan.reason
    assert plan.job_kw.shape == (0, 4)
    assert np.isfinite(plan.objective)


def test_time_budget_falls_back_to_the_rule():
    cfg_site = tiny_site(step="15m", horizon="24h", jobs=[_job(window_end="24:00", work_h=12.0)],
                         battery={**BATTERY, "energy_kwh": 100.0}, tariff=PRICES_132,
                         cooling=[{"name": "liquid"}], time_limit_s=1e-9)
    _, _, plan = plan_for(cfg_site, flat_forecast(96, it_kw=300.0))
    assert plan.source == "rule"
    assert "budget" in plan.reason


def test_cooling_plan_follows_the_planes_and_the_chip_limit():
    site = tiny_site(cooling=[{"name": "liquid", "supply_min_c": 25.0, "supply_max_c": 45.0,
                               "chip_limit_c": 80.0, "chip_rise_c": 45.0, "chip_margin_c": 2.0}],
                     it_capacity_kw=1000.0)
    m, p, plan = plan_for(site, flat_forecast(4, it_kw=900.0, ambient_c=30.0))
    lp = m.loops[0]
    heat = 900.0 * lp.heat_share
    assert np.all(plan.supply_c[0] <= 78.0 - lp.rho_c_per_kw * heat + 1e-7)
    a, g, h = plant.fit_planes(np.full(4, 30.0), lp.params, (0.0, lp.heat_max_kw), (25.0, 45.0))
    np.testing.assert_allclose(plan.cooling_kw[0], plant.planes_kw(heat, plan.supply_c[0], a, g, h), rtol=1e-6)


def test_backends_agree_on_the_40mw_example():
    from pueflow.config.load import load_config
    from pueflow.optimizers.forecast import DefaultForecaster, Recent

    site = load_config("config/dakhla-40mw-gb200.toml").sites[0]
    m = site_model(site, {"horizon": "6h"})
    times = T0 + m.step_ns * np.arange(m.horizon_steps)
    p = make_problem(m, T0, m.horizon_steps, DefaultForecaster(m).forecast(times, Recent.empty()),
                     DispatchState.initial(m))
    lp = SiteDispatch(m).lp(p.n)
    results = [solve(lp, lp.assemble(p), 30.0, b, warm=False) for b in available_backends()]
    assert all(r.success for r in results)
    for r in results[1:]:
        assert r.objective == pytest.approx(results[0].objective, rel=1e-7)
