"""Simulator numba kernels against plain-Python references, plus the GPU load's behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from pueflow.config.plant import BatterySpec, LoadSpec
from pueflow.sim.battery import Battery
from pueflow.sim.load import RackLoad
from pueflow.sim.meters import GAP, GAP_CONT, NONE, _plan, _registers


def _intended_kw(spec: BatterySpec, net: float, hr: float) -> float:
    """What the battery's operating rule asks for before limits (+ charge, - discharge) [kW]."""
    if net < 0:
        return min(-net, spec.power_kw)
    if spec.discharge_hours_local[0] <= hr < spec.discharge_hours_local[1]:
        return -min(net, spec.power_kw)
    if spec.charge_hours_local[0] <= hr < spec.charge_hours_local[1]:
        return spec.grid_charge_fraction * spec.power_kw
    return 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_battery_kernel_keeps_physics_and_intent_across_chunks(seed):
    """Checked from outside, not against a copy of the kernel.

    Every step keeps the state of charge inside its bounds and the power inside its rating,
    the energy ledger with the one-way efficiency sqrt(round trip) balances, each step does
    what the rule asks (same direction) and falls short of it only when the battery ends the
    step at a bound; splitting the run into chunks changes nothing.
    """
    rng = np.random.default_rng(seed)
    spec = BatterySpec(capacity_kwh=4000, power_kw=2000, round_trip_efficiency=0.88)
    n, dt_s = 3000, 60.0
    h = dt_s / 3600
    net = rng.normal(1000, 2500, n)
    hour = (np.arange(n) * dt_s / 3600) % 24
    p_all, soc_all = Battery(spec).step(dt_s, net, hour)
    b = Battery(spec)
    p1, s1 = b.step(dt_s, net[:1000], hour[:1000])
    p2, s2 = b.step(dt_s, net[1000:], hour[1000:])
    np.testing.assert_array_equal(np.concatenate([p1, p2]), p_all)
    np.testing.assert_array_equal(np.concatenate([s1, s2]), soc_all)
    eta = spec.round_trip_efficiency ** 0.5
    cap = spec.capacity_kwh
    e_min, e_max = spec.soc_min * cap, spec.soc_max * cap
    e = spec.soc_initial * cap
    tol = 1e-6
    for k in range(n):
        assert soc_all[k] == pytest.approx(100 * e / cap, abs=1e-9)  # reported before the step
        p = p_all[k]
        want = _intended_kw(spec, net[k], hour[k])
        assert abs(p) <= spec.power_kw + tol
        assert p * want >= 0
        assert abs(p) <= abs(want) + tol
        e += p * eta * h if p > 0 else p / eta * h
        assert e_min - tol <= e <= e_max + tol
        if abs(p) < abs(want) - tol:  # short of the rule only at a bound
            assert (e >= e_max - tol) if want > 0 else (e <= e_min + tol)
    assert b.energy_kwh == pytest.approx(e)
    assert (p_all > 0).any()
    assert (p_all < 0).any()  # the data exercises both directions


def naive_plan(u, u2, cum_p, gap_min, gap_max, g0, n_total):
    n, s = u.shape
    codes = np.zeros((n, s), np.int8)
    left = [0] * s
    for k in range(n):
        for j in range(s):
            if left[j] > 0:
                codes[k, j] = GAP_CONT
                left[j] -= 1
                continue
            g = g0 + k
            if g == 0 or g >= n_total - 1 or u[k, j] >= cum_p[j, -1]:
                continue
            code = 1 + int(np.searchsorted(cum_p[j], u[k, j], side="right"))
            if code == GAP:
                length = min(gap_min + int(u2[k, j] * (gap_max - gap_min + 1)), n_total - 1 - g)
                left[j] = length - 1
            codes[k, j] = code
    return codes


def test_fault_plan_kernel_matches_reference():
    rng = np.random.default_rng(3)
    n, s = 400, 6
    u, u2 = rng.random((n, s)), rng.random((n, s))
    cum_p = np.cumsum(np.full((s, 8), 0.01), axis=1)
    want = naive_plan(u, u2, cum_p, 2, 9, 0, n)
    got = np.zeros((n, s), np.int8)
    _plan(u, u2, cum_p, 2, 9, np.zeros(s, np.int64), 0, n, got)
    np.testing.assert_array_equal(got, want)
    assert (got[0] == NONE).all()
    assert (got[-1] == NONE).all()
    assert (got == GAP).any()
    assert (got == GAP_CONT).any()


def test_register_kernel_matches_cumulative_trapezoid_with_wrap():
    rng = np.random.default_rng(4)
    p = rng.uniform(0, 5000, (500, 3))
    scale = np.full(3, 10 / 3600)
    reg_max = np.array([1e9, 3000.0, 777.0])
    base = np.array([10.0, 2900.0, 0.0])
    out = np.empty_like(p)
    wrapped = np.zeros(p.shape, bool)
    _registers(p, False, np.zeros(3), scale, np.zeros(3), base.copy(), np.floor(base / reg_max),
               reg_max, np.zeros(3), np.zeros(p.shape, bool), out, wrapped)
    inc = np.vstack([np.zeros(3), 0.5 * (p[1:] + p[:-1]) * scale])
    raw = base + np.cumsum(inc, axis=0)
    np.testing.assert_allclose(out, np.mod(raw, reg_max), rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(wrapped[1:], np.diff(np.floor(raw / reg_max), axis=0) > 0)


def test_training_load_has_checkpoint_dips_and_failures():
    spec = LoadSpec(training_fraction=1.0, job_racks_min=10, job_racks_max=10, job_hours_mean=1e4,
                    checkpoint_interval_minutes=30, checkpoint_seconds=120, checkpoint_level=0.4,
                    failures_per_rack_day=0.0, ripple=0.0)
    load = RackLoad.build(spec, np.full(10, 100.0), np.random.default_rng(1))
    load.phase[:] = 2  # training
    kw = load.step(10.0, np.zeros(6 * 360))[:, 0]  # six hours at 10 s
    dips = kw < 50
    assert 11 <= np.count_nonzero(np.diff(dips.astype(int)) == 1) <= 13  # every 30 min
    assert np.count_nonzero(dips) / len(kw) == pytest.approx(120 / 1800, abs=0.02)
    assert kw[~dips].min() > 100 * spec.train_level_min * 0.97

    failing = spec.model_copy(update={"failures_per_rack_day": 20.0})
    load = RackLoad.build(failing, np.full(10, 100.0), np.random.default_rng(1))
    kw = load.step(10.0, np.zeros(6 * 360)).sum(axis=1)
    idle = kw < 10 * 100 * (spec.idle_level + 0.02)
    assert idle.any()
    assert (~idle).any()
