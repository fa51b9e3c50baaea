"""Rule-based dispatch: the numba kernel's invariants checked from outside (brute force), and its behaviour."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pueflow.optimizers import rule
from pueflow.optimizers.assets import site_model
from pueflow.optimizers.horizon import DispatchState, make_problem
from pueflow.optimizers.testing import flat_forecast, tiny_site

NS = 10**9
T0 = int(dt.datetime(2025, 1, 6, tzinfo=dt.UTC).timestamp()) * NS


@st.composite
def rule_inputs(draw):
    n = draw(st.integers(1, 30))
    nj = draw(st.integers(0, 3))
    fl = st.floats(0, 2000, allow_nan=False)
    arr = lambda lo, hi: np.array(draw(st.lists(st.floats(lo, hi, allow_nan=False), min_size=n, max_size=n)))  # noqa: E731
    dt_h = np.where(arr(0, 1) < 0.1, 0.0, 0.25)
    price = arr(0, 3)
    lo_q, hi_q = np.quantile(price, 0.25), np.quantile(price, 0.75)
    e0 = draw(st.floats(0, 1000))
    bat = np.array([float(draw(st.booleans())), e0, min(100.0, e0), max(900.0, e0), draw(fl), draw(fl),
                    draw(st.floats(0.5, 1.0)), draw(st.floats(0.5, 1.0)), draw(st.floats(0, 0.01)), 100.0, 900.0])
    on = np.array(draw(st.lists(st.booleans(), min_size=n * nj, max_size=n * nj)), bool).reshape(nj, n)
    new = on & np.array(draw(st.lists(st.booleans(), min_size=n * nj, max_size=n * nj)), bool).reshape(nj, n)
    dead = on & np.array(draw(st.lists(st.booleans(), min_size=n * nj, max_size=n * nj)), bool).reshape(nj, n)
    alpha = np.tile(np.array([[1.2e-3, 0.8e-3]]), (nj, 1))
    beta = np.tile(np.array([[0.0, 0.2]]), (nj, 1))
    return (dt_h, arr(0, 3000), arr(0, 3000), price, arr(500, 5000), draw(fl), arr(0, 0.3),
            draw(st.floats(0, 0.1)), draw(fl), price <= lo_q, price >= hi_q, arr(0, 5000), bat, on, new, dead,
            np.array(draw(st.lists(fl.map(lambda v: v / 100), min_size=nj, max_size=nj))),
            np.array(draw(st.lists(st.floats(0, 20), min_size=nj, max_size=nj))),
            np.full(nj, 1000.0), np.array(draw(st.lists(st.floats(0, 500), min_size=nj, max_size=nj))),
            alpha, beta)


def _soc_after(e, b, dt_h, bat):
    """Stored energy after a step, from the energy that crosses the terminals (charging stores
    η_c of it, discharging draws 1/η_d of it) and the self-discharge of the step."""
    stored = bat[6] * b * dt_h if b >= 0 else b * dt_h / bat[7]
    return e - e * bat[8] * dt_h + stored


@settings(max_examples=150, deadline=None)
@given(args=rule_inputs())
def test_rule_kernel_keeps_its_invariants(args):
    """Checked from the outside, not against a copy: balance, limits, SoC physics, and each battery
    decision against a brute-force search over 4,001 candidate powers."""
    (dt_h, ren, firm, price, imp_lim, exp_lim, cool, aux_frac, aux_kw, cheap, peak, heavy, bat, on, new, dead,
     done0, work, jmax, jidle, alpha, beta) = args
    n, nj = len(dt_h), on.shape[0]
    outs = [np.zeros(n), np.zeros(n), np.zeros((nj, n)), np.zeros((nj, n)), np.zeros(n), np.zeros(n), np.zeros(n)]
    rule._rule(*args, *outs)
    b, soc, jkw, jrate, imp, exp, ren_used = outs
    e, e_lo, e_hi = bat[1], bat[2], bat[3]
    tol = 1e-6
    for t in range(n):
        if dt_h[t] <= 0:
            assert (b[t], imp[t], exp[t], soc[t]) == (0.0, 0.0, 0.0, e)
            continue
        for j in range(nj):
            allowed = (jidle[j], jmax[j]) if on[j, t] else (0.0,)
            assert jkw[j, t] in allowed
            rate = max(min(alpha[j] * jkw[j, t] + beta[j]), 0.0) if on[j, t] else 0.0
            assert jrate[j, t] == pytest.approx(rate, abs=1e-12)
        net = (firm[t] + jkw[:, t].sum()) * (1 + aux_frac + cool[t]) + aux_kw - ren[t]
        # balance: the grid takes what the load and the battery leave, export within its cap
        assert imp[t] - exp[t] - (ren[t] - ren_used[t]) == pytest.approx(net + b[t], abs=1e-6 * (1 + abs(net)))
        assert imp[t] >= 0
        assert 0 <= exp[t] <= exp_lim + tol
        assert min(imp[t], exp[t]) == 0
        assert -tol <= ren_used[t] <= ren[t] + tol
        if bat[0] > 0:
            cand = np.linspace(-bat[5], bat[4], 4001)
            after = np.array([_soc_after(e, c, dt_h[t], bat) for c in cand])
            # the step must end in [e_lo, e_hi], except that doing nothing is always allowed:
            # a SoC that self-discharge took outside the band may stay where it drifts and
            # move back towards the band (battery.power_window's documented window)
            idle = _soc_after(e, 0.0, dt_h[t], bat)
            ok = (after <= max(e_hi, idle) + 1e-9) & (after >= min(e_lo, idle) - 1e-9)
            if net < 0:  # soak the surplus: the most charge it and the SoC allow
                want = cand[ok & (cand >= 0) & (cand <= -net + 1e-9)].max(initial=0.0)
            elif cheap[t]:  # cheap: the most charge the SoC and the import limit allow
                want = cand[ok & (cand >= 0) & (cand <= imp_lim[t] - net + 1e-9)].max(initial=0.0)
            elif peak[t]:  # peak: the most discharge the SoC allows, never more than the load
                want = cand[ok & (cand <= 0) & (cand >= -net - 1e-9)].min(initial=0.0)
            else:
                want = 0.0
            step = (bat[4] + bat[5]) / 4000
            assert abs(b[t] - want) <= step + 1e-6
            assert soc[t] == pytest.approx(_soc_after(e, b[t], dt_h[t], bat), abs=1e-6)
            e = soc[t]
            e_lo, e_hi = min(bat[9], max(e_lo, e)), max(bat[10], min(e_hi, e))
        else:
            assert b[t] == 0


# --------------------------------------------------------------------------- behaviour

TOU = {"periods": [{"name": "off", "price_per_kwh": 0.5, "start": "00:00", "end": "06:00"},
                   {"name": "peak", "price_per_kwh": 2.0, "start": "18:00", "end": "22:00"}],
       "default_price_per_kwh": 1.0}
BATTERY = {"energy_kwh": 400.0, "charge_kw": 100.0, "discharge_kw": 100.0, "soc_min_pct": 10.0,
           "soc_max_pct": 90.0, "initial_soc_pct": 50.0}


def _plan(jobs=(), tariff=TOU, **fc_kw):
    site = tiny_site(horizon="24h", tariff=tariff, battery=BATTERY, jobs=list(jobs))
    m = site_model(site)
    p = make_problem(m, T0, 24, flat_forecast(24, **fc_kw), DispatchState.initial(m))
    return m, rule.rule_plan(m, p)


def test_charges_cheap_discharges_peak_and_stays_in_band():
    m, plan = _plan(it_kw=200.0)
    assert (plan.battery_kw[:6] > 0).any()
    assert (plan.battery_kw[18:22] < 0).all()
    b = m.battery
    assert plan.soc_kwh.min() >= b.e_min_kwh - 1e-9
    assert plan.soc_kwh.max() <= b.e_max_kwh + 1e-9
    assert np.all(plan.battery_kw <= b.charge_kw + 1e-9)
    assert np.all(plan.battery_kw >= -b.discharge_kw - 1e-9)


def test_soaks_renewable_surplus():
    pv = np.where((np.arange(24) >= 10) & (np.arange(24) < 14), 400.0, 0.0)
    _, plan = _plan(it_kw=200.0, pv_kw=pv, tariff={"default_price_per_kwh": 1.0})
    assert plan.battery_kw[10] == pytest.approx(100.0)  # 200 kW surplus, 100 kW charger
    assert plan.soc_kwh[13] == pytest.approx(360.0)  # filled to the band's top from the surplus
    assert np.all(plan.battery_kw[:10] == 0)
    assert np.all(plan.grid_import_kw[10:14] == 0)


def test_caps_flexible_load_on_peak_unless_the_deadline_needs_it():
    job = {"name": "j", "max_kw": 100.0, "idle_kw": 10.0, "window_start": "12:00", "window_end": "24:00",
           "work_h": 4.0, "throughput": [(0, 0), (1, 1)]}
    _, plan = _plan(jobs=[job], it_kw=100.0)
    assert np.all(plan.job_kw[0][18:22] == 10.0)  # idled at the peak
    assert plan.unmet_h[0] == pytest.approx(0.0)
    tight = {**job, "work_h": 11.0}
    _, plan = _plan(jobs=[tight], it_kw=100.0)
    assert plan.job_kw[0][18:22].max() == 100.0  # must run: the deadline cannot wait
