"""Cooling plant model: the numba kernels against plain-numpy references, planes, chip limit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pueflow.optimizers import plant

# --------------------------------------------------------------------------- references


def naive_cooling_kw(heat, supply, ambient, p):
    """Plain-numpy reference of ``plant._cooling_kw`` (vectorised with np.where)."""
    heat, supply, ambient = np.broadcast_arrays(*(np.asarray(v, float) for v in (heat, supply, ambient)))
    qd, dtd, app, fan, pump, chiller, carnot, lift = p
    with np.errstate(all="ignore"):
        x = heat / qd
        pump_kw = pump * x**3
        itd = supply + dtd - ambient
        cap = np.where(itd > 0, qd * itd / (dtd + app), 0.0)
        free = cap >= heat
        fan_free = fan * np.where(free, heat / np.where(cap > 0, cap, 1.0), 0.0) ** 3
        rest = heat - cap
        lift_k = ambient + lift - supply
        cop = np.where(lift_k > 0, np.clip(carnot * (supply + 273.15) / np.where(lift_k > 0, lift_k, 1.0),
                                           plant.COP_MIN, plant.COP_MAX), plant.COP_MAX)
        trim = np.where(chiller > 0, rest / cop, 0.0)
        out = np.where(free, pump_kw + fan_free, pump_kw + fan + trim)
    return np.where((heat > 0) & (qd > 0), out, 0.0)


def naive_lsq(q, t, f):
    """Least-squares plane clipped to a >= 0, g <= 0 (reference of ``plant._plane_lsq``); None
    when the samples do not span a plane (then the plane is kept)."""
    qc, tc, fc = q - q.mean(), t - t.mean(), f - f.mean()
    m = np.array([[qc @ qc, qc @ tc], [qc @ tc, tc @ tc]])
    det = m[0, 0] * m[1, 1] - m[0, 1] ** 2
    if det <= 1e-9 * m[0, 0] * m[1, 1]:
        return None
    a, g = np.linalg.solve(m, [qc @ fc, tc @ fc])
    a, g = max(a, 0.0), min(g, 0.0)
    return a, g, f.mean() - a * q.mean() - g * t.mean()


def naive_planes(ambient, p, q_range, t_range):
    """Reference of ``plant._fit_planes``: tangents at the anchors, then max-affine refits."""
    dq, dt = max(1e-3 * p[0], 1e-6), 0.05
    span_q, span_t = q_range[1] - q_range[0], t_range[1] - t_range[0]
    qs = q_range[0] + np.array(plant.SAMPLE_Q) * span_q
    ts = t_range[0] + np.array(plant.SAMPLE_T) * span_t
    sq, stt = (m.ravel() for m in np.meshgrid(qs, ts, indexing="ij"))
    out = []
    for amb in ambient:
        planes = []
        for qa in plant.PLANE_Q:
            for ta in plant.PLANE_T:
                q0, t0 = q_range[0] + qa * span_q, t_range[0] + ta * span_t
                f0 = naive_cooling_kw(q0, t0, amb, p)
                lo = max(q0 - dq, 0.0)
                fq = (naive_cooling_kw(q0 + dq, t0, amb, p) - naive_cooling_kw(lo, t0, amb, p)) / (q0 + dq - lo)
                ft = (naive_cooling_kw(q0, t0 + dt, amb, p) - naive_cooling_kw(q0, t0 - dt, amb, p)) / (2 * dt)
                fq, ft = max(float(fq), 0.0), min(float(ft), 0.0)
                planes.append([fq, ft, float(f0) - fq * q0 - ft * t0])
        planes = np.array(planes)
        f = naive_cooling_kw(sq, stt, amb, p)
        for _ in range(plant.REFINE_ITERS):
            lab = np.argmax(sq[:, None] * planes[:, 0] + stt[:, None] * planes[:, 1] + planes[:, 2], axis=1)
            for k in range(len(planes)):
                m = lab == k
                fit = naive_lsq(sq[m], stt[m], f[m]) if m.sum() >= 4 else None
                if fit is not None:
                    planes[k] = fit
        out.append(planes)
    out = np.array(out)
    return out[..., 0], out[..., 1], out[..., 2]


def liquid(chiller: bool = True) -> np.ndarray:
    return plant.loop_params(34_000.0, 10.0, 6.0, 408.0, 340.0, chiller, 0.5, 8.0)


# --------------------------------------------------------------------------- kernel vs reference


def test_matches_reference_on_a_grid():
    p = liquid()
    q, t, a = np.meshgrid(np.linspace(0, 40_000, 21), np.linspace(20, 45, 11), np.linspace(-5, 45, 11))
    np.testing.assert_allclose(plant.cooling_power_kw(q, t, a, p), naive_cooling_kw(q, t, a, p), rtol=1e-12)


@settings(max_examples=200, deadline=None)
@given(heat=st.floats(-1e3, 6e4, allow_nan=False), supply=st.floats(10, 60), ambient=st.floats(-20, 55),
       chiller=st.booleans())
def test_kernel_equals_reference(heat, supply, ambient, chiller):
    p = liquid(chiller)
    got = plant.cooling_power_kw(heat, supply, ambient, p)
    np.testing.assert_allclose(got, naive_cooling_kw(heat, supply, ambient, p), rtol=1e-12, atol=1e-9)


def test_edge_inputs():
    p = liquid()
    out = plant.cooling_power_kw([np.nan, 0.0, -5.0, np.inf], 30.0, 25.0, p)
    assert out[0] == 0.0
    assert out[1] == 0.0
    assert out[2] == 0.0
    assert plant.cooling_power_kw(np.zeros(0), 30.0, 25.0, p).shape == (0,)
    assert plant.cooling_power_kw(1000.0, 30.0, 25.0, plant.loop_params(0, 10, 6, 1, 1, True, 0.5, 8)) == 0.0


def test_physics_directions():
    """More heat or warmer air costs more power; a warmer supply costs less."""
    p = liquid()
    base = plant.cooling_power_kw(30_000, 32, 30, p)
    assert plant.cooling_power_kw(33_000, 32, 30, p) > base
    assert plant.cooling_power_kw(30_000, 32, 34, p) > base
    assert plant.cooling_power_kw(30_000, 35, 30, p) < base
    # cool air: dry coolers alone, well below the trim-chiller regime
    assert plant.cooling_power_kw(30_000, 32, 10, p) < 0.5 * base


def test_design_point_is_plausible():
    """A liquid loop at design heat and mild air draws a few percent of the heat (pPUE ~1.01-1.05)."""
    p = liquid()
    kw = float(plant.cooling_power_kw(34_000, 32, 22, p))
    assert 0.005 * 34_000 < kw < 0.05 * 34_000


def test_no_chiller_loop_and_min_supply():
    p = liquid(chiller=False)
    floor = float(plant.min_supply_c(34_000, 35.0, p))
    assert floor == pytest.approx(35.0 + 16.0 - 10.0)
    # at the floor the dry coolers exactly carry the heat: pumps + full fans
    assert plant.cooling_power_kw(34_000, floor, 35.0, p) == pytest.approx(340 + 408)


def test_chip_limit():
    assert plant.max_supply_c(34_000, 85.0, 45.0 / 34_000) == pytest.approx(40.0)
    assert plant.max_supply_c(-1.0, 85.0, 0.001) == pytest.approx(85.0)


# --------------------------------------------------------------------------- planes


@settings(max_examples=40, deadline=None)
@given(amb=st.lists(st.floats(-10, 48), min_size=1, max_size=6), chiller=st.booleans())
def test_fit_planes_equals_reference(amb, chiller):
    """The kernel's planes fit the plant model as well as the reference's do.

    Compared as functions. Where the refits meet a tie (a sample equally high on two planes,
    so floating-point order decides its label) the two can part ways into different max-affine
    fits of equal quality; then the kernel's must be no worse than the reference's on the
    samples both were fitted to.
    """
    p = liquid(chiller)
    amb = np.array(amb)
    a, g, h = plant.fit_planes(amb, p, (0.0, 34_000.0), (20.0, 45.0))
    ra, rg, rh = naive_planes(amb, p, (0.0, 34_000.0), (20.0, 45.0))
    q, t = np.meshgrid(np.linspace(0, 36_000, 13), np.linspace(18, 47, 9))
    sq, stt = (m.ravel() for m in np.meshgrid(0.0 + np.array(plant.SAMPLE_Q) * 34_000.0,
                                             20.0 + np.array(plant.SAMPLE_T) * 25.0, indexing="ij"))
    for s in range(len(amb)):
        got = plant.planes_kw(q, t, a[s], g[s], h[s])
        want = plant.planes_kw(q, t, ra[s], rg[s], rh[s])
        if np.allclose(got, want, rtol=1e-7, atol=1e-6 * 34_000):
            continue
        f = naive_cooling_kw(sq, stt, amb[s], p)
        err = np.sqrt(np.mean((plant.planes_kw(sq, stt, a[s], g[s], h[s]) - f) ** 2))
        ref = np.sqrt(np.mean((plant.planes_kw(sq, stt, ra[s], rg[s], rh[s]) - f) ** 2))
        assert err <= ref * 1.05 + 1e-6 * 34_000, (amb[s], err, ref)


def test_planes_signs_and_accuracy():
    """Planes slope the right way and track the model over the operating region."""
    p = liquid()
    amb = np.array([5.0, 20.0, 28.0, 32.0])
    a, g, h = plant.fit_planes(amb, p, (0.0, 34_000.0), (20.0, 45.0))
    assert (a >= 0).all()
    assert (g <= 0).all()
    q, t = np.meshgrid(np.linspace(12_000, 34_000, 12), np.linspace(25, 45, 9))
    for s in range(len(amb)):
        model = plant.cooling_power_kw(q, t, amb[s], p)
        approx = plant.planes_kw(q, t, a[s], g[s], h[s])
        # within 1 % of design heat over the region, in the climates the example sites see
        assert np.max(np.abs(approx - model)) < 0.01 * 34_000


def test_plane_table_is_the_fit_at_the_rounded_ambient():
    p = liquid()
    amb = np.array([-40.0, 12.34, 12.36, 29.95, np.nan, 70.0])
    got = plant.planes_for(amb, p, (0.0, 34_000.0), (20.0, 45.0))
    ref = plant.fit_planes(np.array([-30.0, 12.3, 12.4, 30.0, 20.0, 60.0]), p, (0.0, 34_000.0), (20.0, 45.0))
    for x, y in zip(got, ref, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9)
