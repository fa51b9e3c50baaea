"""Plans a plant can carry out: no energy dumped into cooling, the battery or the grid that
does not exist, and a terminal target that holds unless a price makes missing it pay.

Each case is solved a second way in the test: brute force over a coarse grid of supply
temperatures (dynamic programming over the ramp limit), or the same small LP written out
with ``scipy.optimize.linprog``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from scipy.optimize import linprog

from pueflow.optimizers import plant
from pueflow.optimizers.assets import site_model
from pueflow.optimizers.horizon import DispatchState, make_problem
from pueflow.optimizers.policy import SiteDispatch
from pueflow.optimizers.sinks import TOL_KW
from pueflow.optimizers.testing import flat_forecast, tiny_site

NS = 10**9
T0 = int(dt.datetime(2025, 1, 6, tzinfo=dt.UTC).timestamp()) * NS  # a Monday, 00:00 UTC
NEGATIVE = {"periods": [{"name": "neg", "price_per_kwh": -0.1, "start": "01:00", "end": "04:00"}],
            "default_price_per_kwh": 0.2}
LOOP = {"name": "liquid", "supply_min_c": 20.0, "supply_max_c": 45.0, "nominal_supply_c": 32.0,
        "ramp_c_per_h": 4.0}


def _solve(site, fc, n):
    m = site_model(site)
    p = make_problem(m, T0, n, fc, DispatchState.initial(m))
    return m, p, SiteDispatch(m).solve_lp(p)


def _plane_cooling(p, heat, supply):
    return plant.planes_kw(heat, supply, p.plane_a[0], p.plane_g[0], p.plane_h[0])


GRID_C = np.arange(20.0, 45.01, 0.5)


def _dp_best(p, price, base_kw, heat, t_prev, ramp, grid=GRID_C):
    """Cheapest supply trajectory on a coarse grid: cost = price x (base + plane cooling), ramp-limited."""
    n = len(price)
    best = np.where(np.abs(grid - t_prev) <= ramp + 1e-9, 0.0, np.inf)
    for t in range(n):
        a, g, h = p.plane_a[0][t], p.plane_g[0][t], p.plane_h[0][t]
        step = price[t] * (base_kw + np.maximum((a * heat + g * grid[:, None] + h).max(axis=1), 0.0))
        reach = np.abs(grid[:, None] - grid[None, :]) <= ramp + 1e-9  # from i to j
        best = np.where(reach, best[:, None], np.inf).min(axis=0) + step
    return float(best.min())


def test_negative_prices_buy_only_what_the_plant_consumes():
    """-0.1 for three hours on a 500 kW site: import is the load plus real cooling, never the 1,500 kW limit."""
    site = tiny_site(horizon="6h", it_capacity_kw=500.0, tariff=NEGATIVE, aux_fraction=0.0,
                     grid={"import_limit_kw": 1500.0}, cooling=[LOOP])
    m, p, plan = _solve(site, flat_forecast(6, it_kw=300.0), 6)
    assert plan.source == "lp"
    heat = 300.0 * m.loops[0].heat_share
    model_kw = _plane_cooling(p, heat, plan.supply_c[0])
    np.testing.assert_allclose(plan.cooling_kw[0], model_kw, atol=2 * TOL_KW)
    np.testing.assert_allclose(plan.grid_import_kw, 300.0 + model_kw, atol=2 * TOL_KW)
    assert plan.grid_import_kw.max() < 400.0
    # what the plan costs is what its setpoints cost in the plant model
    real = float(np.sum(p.sig.price_per_kwh * (300.0 + model_kw)))
    assert plan.objective == pytest.approx(real, abs=6 * TOL_KW)
    assert np.allclose(plan.step_cost, p.sig.price_per_kwh * (300.0 + model_kw), atol=TOL_KW)
    # consuming the most where it pays means maximising a convex cooling model, which an LP
    # can only do cell by cell: the plan comes within 0.5 % of the best supply trajectory on a
    # 0.5 K grid (found by dynamic programming over the ramp limit), never below what it can reach
    best = _dp_best(p, p.sig.price_per_kwh, 300.0, heat, p.t_prev[0], m.loops[0].ramp_c_per_h)
    assert best - 0.05 <= plan.objective <= best + 0.005 * abs(best)
    assert plan.supply_c[0, 2] == pytest.approx(20.0)  # the coldest supply where burning energy pays


def test_surplus_beyond_the_export_cap_is_curtailed_not_burnt():
    """900 kW of PV, a 300 kW load, a 50 kW export cap: the rest is curtailed at its price."""
    site = tiny_site(horizon="3h", it_capacity_kw=500.0, tariff={"default_price_per_kwh": 0.2}, aux_fraction=0.0,
                     curtailment_cost_per_kwh=0.05, grid={"import_limit_kw": 1500.0, "export_limit_kw": 50.0},
                     cooling=[LOOP])
    m, p, plan = _solve(site, flat_forecast(3, it_kw=300.0, pv_kw=900.0), 3)
    heat = 300.0 * m.loops[0].heat_share
    model_kw = _plane_cooling(p, heat, plan.supply_c[0])
    np.testing.assert_allclose(plan.cooling_kw[0], model_kw, atol=2 * TOL_KW)
    np.testing.assert_allclose(plan.grid_import_kw, 0.0, atol=1e-6)
    np.testing.assert_allclose(plan.grid_export_kw, 50.0, atol=1e-6)
    np.testing.assert_allclose(plan.curtail_kw, 900.0 - 300.0 - model_kw - 50.0, atol=2 * TOL_KW)
    assert plan.objective == pytest.approx(0.05 * plan.curtail_kw.sum(), abs=1e-5)


def test_negative_export_price_is_not_arbitraged_through_one_connection():
    """Import at -0.1 and export at 0 at once would earn 0.1/kWh without moving a watt on site."""
    site = tiny_site(horizon="4h", it_capacity_kw=500.0, tariff=NEGATIVE, aux_fraction=0.0,
                     grid={"import_limit_kw": 1500.0, "export_limit_kw": 400.0},
                     battery={"energy_kwh": 100.0, "charge_kw": 50.0, "discharge_kw": 50.0, "wear_cost_per_kwh": 0.0,
                              "initial_soc_pct": 50.0, "terminal_soc_pct": 0.0, "soc_min_pct": 0.0,
                              "soc_max_pct": 100.0})
    m, p, plan = _solve(site, flat_forecast(4, it_kw=100.0), 4)
    assert np.all(np.minimum(plan.grid_import_kw, plan.grid_export_kw) <= TOL_KW)
    b = m.battery
    # the same LP with one net battery flow and one net grid flow per step, written out by hand
    # (columns: imp, exp, ch, dis, e per step); net flows are what a plant can carry out
    n = 4
    price = p.sig.price_per_kwh
    c = np.concatenate([price, np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)])
    a_eq, b_eq = [], []
    for t in range(n):
        row = np.zeros(5 * n)
        row[t], row[n + t], row[2 * n + t], row[3 * n + t] = 1, -1, -1, 1
        a_eq.append(row)
        b_eq.append(100.0)
        row = np.zeros(5 * n)
        row[4 * n + t] = 1
        row[2 * n + t] = -b.eta_charge
        row[3 * n + t] = 1 / b.eta_discharge
        if t:
            row[4 * n + t - 1] = -1
        a_eq.append(row)
        b_eq.append(0.0 if t else b.e_init_kwh)
    best = np.inf
    # brute force over which direction each flow takes in each step (2^(2n) sign patterns)
    for pattern in range(4**n):
        bounds = []
        bits = [(pattern >> (2 * t)) & 3 for t in range(n)]
        bounds += [(0, 0 if k & 1 else 1500.0) for k in bits]
        bounds += [(0, 400.0 if k & 1 else 0) for k in bits]
        bounds += [(0, 0 if k & 2 else 50.0) for k in bits]
        bounds += [(0, 50.0 if k & 2 else 0) for k in bits]
        bounds += [(0, 100.0)] * n
        r = linprog(c, A_eq=np.array(a_eq), b_eq=b_eq, bounds=bounds, method="highs")
        if r.status == 0:
            best = min(best, r.fun)
    assert plan.objective == pytest.approx(best, abs=1e-6)


TWO_PRICES = {"periods": [{"name": "cheap", "price_per_kwh": 0.5, "start": "00:00", "end": "01:00"}],
              "default_price_per_kwh": 2.0}


def _terminal_lp(price, load, e0, target, pen, eta, e_min, e_max, p_max, wear):
    """min Σ price·imp + wear (ch + dis) + pen·z  s.t. balance, SoC, z ≥ target − e_N; columns per step
    imp, ch, dis, e, then z."""
    n = len(price)
    c = np.concatenate([price, np.full(n, wear), np.full(n, wear), np.zeros(n), [pen]])
    a_eq, b_eq = [], []
    for t in range(n):
        row = np.zeros(4 * n + 1)
        row[t], row[n + t], row[2 * n + t] = 1, -1, 1
        a_eq.append(row)
        b_eq.append(load)
        row = np.zeros(4 * n + 1)
        row[3 * n + t], row[n + t], row[2 * n + t] = 1, -eta, 1 / eta
        if t:
            row[3 * n + t - 1] = -1
        a_eq.append(row)
        b_eq.append(0.0 if t else e0)
    a_ub = np.zeros((1, 4 * n + 1))
    a_ub[0, 4 * n - 1], a_ub[0, 4 * n] = -1, -1
    bounds = [(0, None)] * n + [(0, p_max)] * 2 * n + [(e_min, e_max)] * n + [(0, None)]
    r = linprog(c, A_ub=a_ub, b_ub=[-target], A_eq=np.array(a_eq), b_eq=b_eq, bounds=bounds, method="highs")
    return r.fun, r.x[4 * n - 1]


@pytest.mark.parametrize(("penalty", "holds"), [(None, True), (1.0, False)])
def test_terminal_target_holds_unless_a_price_makes_missing_it_pay(penalty, holds):
    """Default penalty = the highest price (2.0) > η_d × 2.0: the 50 kWh target holds. A configured
    1.0 < 0.95 × 2.0 makes draining to the floor pay, and the plan does."""
    battery = {"energy_kwh": 100.0, "charge_kw": 50.0, "discharge_kw": 50.0, "charge_efficiency": 0.95,
               "discharge_efficiency": 0.95, "soc_min_pct": 10.0, "soc_max_pct": 90.0, "initial_soc_pct": 50.0,
               "terminal_soc_pct": 50.0, "wear_cost_per_kwh": 0.0, "terminal_penalty_per_kwh": penalty}
    site = tiny_site(horizon="3h", tariff=TWO_PRICES, battery=battery)
    m, p, plan = _solve(site, flat_forecast(3, it_kw=20.0), 3)
    assert m.battery.terminal_penalty_per_kwh == (2.0 if penalty is None else penalty)
    fun, e_end = _terminal_lp(p.sig.price_per_kwh, 20.0, 50.0, 50.0, m.battery.terminal_penalty_per_kwh, 0.95,
                              10.0, 90.0, 50.0, 0.0)
    assert plan.objective == pytest.approx(fun, abs=1e-6)
    assert plan.soc_kwh[-1] == pytest.approx(e_end, abs=1e-6)
    if holds:
        assert plan.soc_kwh[-1] >= 50.0 - 1e-6
    else:
        assert plan.soc_kwh[-1] < 50.0 - 1.0
