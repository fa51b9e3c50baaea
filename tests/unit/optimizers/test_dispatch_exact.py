"""The oracle is exact where consuming pays: checked against brute force on a coarse grid.

Three hours at -0.1/kWh with a 0.05/kWh export price: the LP alone would burn energy in
cooling above the plant model, cycle the battery and import and export at once. The exact
oracle must match the cheapest plan found by enumerating battery powers on a 25 kW grid and,
for each, the best ramp-limited supply trajectory on a 0.5 K grid (dynamic programming),
with the costs written out here from the tariff (not from the LP).
"""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest

from pueflow.optimizers.assets import site_model
from pueflow.optimizers.horizon import DispatchState, make_problem
from pueflow.optimizers.policy import SiteDispatch
from pueflow.optimizers.sinks import TOL_KW
from pueflow.optimizers.testing import flat_forecast, tiny_site

NS = 10**9
T0 = int(dt.datetime(2025, 1, 6, tzinfo=dt.UTC).timestamp()) * NS
N = 3
LOAD_KW, PRICE, EXPORT_PRICE, WEAR = 300.0, -0.1, 0.05, 0.01
RAMP = 4.0
GRID_C = np.arange(20.0, 45.01, 0.5)
POWERS = np.arange(-50.0, 50.01, 25.0)

LAST_HOUR = {"periods": [{"name": "dear", "price_per_kwh": 0.3, "start": "02:00", "end": "03:00"}]}


def _site(tariff):
    """The hand-case site with ``tariff`` merged over a flat -0.1/kWh."""
    return tiny_site(
        horizon=f"{N}h", it_capacity_kw=500.0, aux_fraction=0.0,
        tariff={"default_price_per_kwh": PRICE, "export_price_per_kwh": EXPORT_PRICE, **tariff},
        grid={"import_limit_kw": 1500.0, "export_limit_kw": 50.0},
        battery={"energy_kwh": 100.0, "charge_kw": 50.0, "discharge_kw": 50.0, "charge_efficiency": 1.0,
                 "discharge_efficiency": 1.0, "soc_min_pct": 0.0, "soc_max_pct": 100.0, "initial_soc_pct": 50.0,
                 "terminal_soc_pct": 0.0, "terminal_penalty_per_kwh": 0.1, "wear_cost_per_kwh": WEAR},
        cooling=[{"name": "liquid", "supply_min_c": 20.0, "supply_max_c": 45.0, "nominal_supply_c": 32.0,
                  "ramp_c_per_h": RAMP}])


def _brute_force(p, price):
    """Cheapest cost over battery powers (25 kW grid) and supply trajectories (0.5 K grid)."""
    assert np.isclose(GRID_C, p.t_prev[0]).any()
    heat = p.heat_firm_kw[0]
    a, g, h = p.plane_a[0], p.plane_g[0], p.plane_h[0]
    cool = np.stack([np.maximum((a[t] * heat[t] + g[t] * GRID_C[:, None] + h[t]).max(axis=1), 0.0)
                     for t in range(N)])  # (N, grid) [kW]
    reach = np.abs(GRID_C[:, None] - GRID_C[None, :]) <= RAMP + 1e-9
    best = np.inf
    for powers in itertools.product(POWERS, repeat=N):
        soc = 50.0 + np.cumsum(powers)
        if soc.min() < -1e-9 or soc.max() > 100.0 + 1e-9:
            continue
        cost = np.where(np.isclose(GRID_C, p.t_prev[0]), 0.0, np.inf)  # the supply before step 0
        for t, b in enumerate(powers):
            net = LOAD_KW + cool[t] + b  # import if positive, else export (no PV: never below the cap)
            step = np.where(net >= 0, price[t] * net, -EXPORT_PRICE * -net) + WEAR * abs(b)
            if (net < -50.0).any():
                step = np.where(net < -50.0, np.inf, step)
            cost = np.where(reach, cost[:, None], np.inf).min(axis=0) + step
        best = min(best, float(cost.min()))
    return best


@pytest.mark.parametrize(("tariff", "price"), [({}, [PRICE] * N), (LAST_HOUR, [PRICE, PRICE, 0.3])])
def test_the_oracle_equals_brute_force_where_consuming_pays(tariff, price):
    m = site_model(_site(tariff))
    eng = SiteDispatch(m)
    p, plan = eng.oracle(T0, flat_forecast(N, it_kw=LOAD_KW))
    assert plan.source == "lp"
    np.testing.assert_allclose(p.sig.price_per_kwh, price)
    best = _brute_force(p, price)
    # every grid plan is a plan, so the oracle is at most the grid's best; the true optimum may
    # sit off the supply grid (a plane kink), at most one grid spacing x the steepest plane away
    # (the battery optimum lies on its 25 kW grid: efficiencies 1, a 100 kWh band)
    off_grid = np.abs(p.plane_g[0]).max() * max(map(abs, price)) * (GRID_C[1] - GRID_C[0]) * N
    assert best - off_grid - 1e-6 <= plan.objective <= best + 1e-6
    if tariff == {}:  # flat price: the optimum follows the ramp vertices 32 -> 28 -> 24 -> 20 degC, on the grid
        assert plan.objective == pytest.approx(best, abs=1e-6)
    assert np.all(np.minimum(plan.grid_import_kw, plan.grid_export_kw) <= TOL_KW)
    # the plane-at-a-time re-solves (the MPC's LP) never come below the oracle, beyond the
    # TOL_KW of cooling overshoot per step they allow
    lp_plan = SiteDispatch(m).solve_lp(make_problem(m, T0, N, flat_forecast(N, it_kw=LOAD_KW),
                                                    DispatchState.initial(m)))
    assert lp_plan.objective >= plan.objective - abs(PRICE) * 2 * TOL_KW * N


def test_default_penalties_stay_positive_when_every_price_is_negative():
    """A tariff of negative prices only: the default terminal penalty (the highest price) would
    be negative and reward missing the target, leaving the LP unbounded; defaults scale by the
    largest price magnitude instead, so the plan is still an LP plan and keeps the target."""
    site = tiny_site(
        horizon=f"{N}h", it_capacity_kw=500.0, aux_fraction=0.0,
        tariff={"default_price_per_kwh": -0.1, "export_price_per_kwh": 0.0},
        grid={"import_limit_kw": 1500.0, "export_limit_kw": 50.0},
        battery={"energy_kwh": 100.0, "charge_kw": 50.0, "discharge_kw": 50.0,
                 "initial_soc_pct": 50.0, "terminal_soc_pct": 50.0})
    m = site_model(site)
    assert m.max_price == pytest.approx(0.1)
    assert m.battery is not None
    assert m.battery.terminal_penalty_per_kwh > 0
    _, plan = SiteDispatch(m).oracle(T0, flat_forecast(N, it_kw=LOAD_KW))
    assert plan.source == "lp"
    assert np.isfinite(plan.objective)
