"""Hypothesis: every kernel equals its naive reference (rel 1e-9) on random series with gaps,
resets, rollovers, jitter and spikes, and integrating in random pieces is bit-identical to
integrating in one call. Runs with and without NUMBA_DISABLE_JIT."""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pueflow.pipeline import energy as en
from pueflow.pipeline import kpi as kp
from pueflow.pipeline import screen as sc
from pueflow.pipeline import windows as wn
from pueflow.roles import ALL_ROLES, ROLE_INDEX
from tests import naive
from tests.conftest import NS, T0, Rig, examples
from tests.unit.pipeline.test_screen import order_dedup

SETTINGS = settings(max_examples=examples(100), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# NaN/inf inputs are deliberate; without the JIT numpy scalars warn about them
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
M = 60 * NS
R, P, S = en.KIND_REGISTER, en.KIND_POWER, en.KIND_SENSOR
DTS = [1, 5, 10, 30, 59, 60, 61, 90, 120, 200, 900]


@st.composite
def series_spec(draw):
    """Kind and meter parameters of one series."""
    kind = draw(st.sampled_from([R, R, P, P, S]))
    return {
        "kind": kind,
        "register_max": draw(st.sampled_from([1000.0, 1e5, 1e12])),
        "jitter": draw(st.sampled_from([0.0, 0.5, 2.0])),
        "max_gap_ns": draw(st.sampled_from([30, 60, 120, 600])) * NS,
        "max_kw": draw(st.sampled_from([math.inf, 500.0, 5000.0])),
        "signed": draw(st.booleans()),
    }


@st.composite
def readings_of(draw, spec, n_max=40):
    """Times and values of one series: gaps, and for registers increments, jitter, resets,
    rollovers and spikes; rarely a NaN or inf (the core screens those out)."""
    n = draw(st.integers(0, n_max))
    t = T0 + draw(st.integers(-3 * M, 3 * M))
    times, values = [], []
    rmax = spec["register_max"]
    cur = draw(st.floats(0, rmax * 0.999))
    for _ in range(n):
        t += draw(st.sampled_from(DTS)) * NS + draw(st.sampled_from([0, 0, 1, 999_999, 7]))
        times.append(t)
        if spec["kind"] == R:
            op = draw(st.sampled_from(["inc"] * 6 + ["jitter", "reset", "near_max", "spike",
                                                     "drop", "weird"]))
            if op == "inc":
                cur += draw(st.floats(0, 3))
                if cur >= rmax:
                    cur -= rmax
                v = cur
            elif op == "jitter":
                v = cur - draw(st.floats(0, spec["jitter"]))
            elif op == "reset":
                cur = draw(st.floats(0, 0.01))
                v = cur
            elif op == "near_max":
                cur = rmax - draw(st.floats(0, 5))
                v = cur
            elif op == "spike":
                v = cur + draw(st.sampled_from([1e4, 1e6]))
            elif op == "drop":                      # a reset to anything lower
                cur = draw(st.floats(0, max(cur, 0.0)))
                v = cur
            elif op == "weird":
                v = draw(st.sampled_from([math.nan, math.inf, rmax * 0.9, 0.0]))
            else:
                v = cur
        elif spec["kind"] == P:
            lo = -2000.0 if spec["signed"] else 0.0
            v = draw(st.one_of(st.floats(lo, 2000.0), st.just(0.0),
                               st.sampled_from([math.nan, math.inf, 1e9])
                               if draw(st.integers(0, 30)) == 0 else st.just(1.0)))
        else:
            v = draw(st.floats(-50, 50))
        values.append(float(v))
    return times, values


@st.composite
def kernel_input(draw):
    """Several series, sorted by (series, time), and cut points for the calls."""
    specs = draw(st.lists(series_spec(), min_size=1, max_size=4))
    rows = []
    for s, spec in enumerate(specs):
        times, values = draw(readings_of(spec))
        rows += [(s, t, v) for t, v in zip(times, values, strict=True)]
    rows.sort(key=lambda r: (r[0], r[1]))
    n = len(rows)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    return specs, rows, cuts


def rig_for(specs, base_ns, rows):
    times = [r[1] for r in rows] or [T0]
    b0 = min(times) // base_ns
    width = max(times) // base_ns - b0 + 2
    return Rig([sp["kind"] for sp in specs],
               register_max=[sp["register_max"] for sp in specs],
               jitter=[sp["jitter"] for sp in specs],
               max_gap_ns=[sp["max_gap_ns"] for sp in specs],
               max_kw=[sp["max_kw"] for sp in specs], base_ns=base_ns, b0=b0, width=width)


@SETTINGS
@given(kernel_input(), st.sampled_from([M, 15 * M, 7 * NS]))
def test_integrate_equals_naive_and_any_split(inp, base_ns):
    specs, rows, cuts = inp
    s = np.array([r[0] for r in rows], np.int32)
    t = np.array([r[1] for r in rows], np.int64)
    v = np.array([r[2] for r in rows], np.float64)
    one = rig_for(specs, base_ns, rows).feed(t, s, v)
    one.check(naive.integrate(t, s, v, one.params(), base_ns))
    # the same readings in pieces (each piece keeps (series, time) order)
    many = rig_for(specs, base_ns, rows)
    for lo, hi in zip([0, *cuts], [*cuts, len(rows)], strict=True):
        many.feed(t[lo:hi], s[lo:hi], v[lo:hi])
    for name in ("acc_e", "acc_cov", "acc_sum", "acc_n", "last_t", "last_v", "spike_run"):
        np.testing.assert_array_equal(getattr(many, name), getattr(one, name), err_msg=name)
    assert [e[:2] for e in many.events] == [e[:2] for e in one.events]


@SETTINGS
@given(st.integers(-10**13, 10**13), st.integers(1, 10**13), st.floats(-5e3, 5e3),
       st.floats(-5e3, 5e3), st.sampled_from([M, 15 * M, 7 * NS, 3600 * NS]))
def test_spread_equals_naive_split(t0, dt, v0, v1, base_ns):
    t0 += T0
    t1 = t0 + dt
    b0 = t0 // base_ns
    width = (t1 - 1) // base_ns - b0 + 1
    if width > 2000:
        t1 = t0 + 1999 * base_ns // 2
        width = (t1 - 1) // base_ns - b0 + 1
    e = np.zeros((1, width))
    cov = np.zeros((1, width))
    en._spread_linear(e, cov, 0, b0, base_ns, t0, v0, t1, v1)
    want = naive.split_linear(t0, v0, t1, v1, base_ns)
    scale = 1 + max(abs(v0), abs(v1)) * (t1 - t0) / naive.NS_PER_HOUR
    for b, (we, wc) in want.items():
        assert math.isclose(e[0, b - b0], we, rel_tol=1e-9, abs_tol=1e-12 * scale)
        assert cov[0, b - b0] == wc
    assert cov.sum() == t1 - t0
    e[:] = 0
    cov[:] = 0
    en._spread_uniform(e, cov, 0, b0, base_ns, t0, t1, v0, True)
    for b, (we, wc) in naive.split_uniform(t0, t1, v0, base_ns).items():
        assert math.isclose(e[0, b - b0], we, rel_tol=1e-9, abs_tol=1e-12 * abs(v0))
        assert cov[0, b - b0] == wc


# --------------------------------------------------------------------------- screen


SITE = np.array([0, 0, 0, 1, 1, -1, 0], np.int32)
ROLE = np.array([0, 1, 14, 1, 20, 1, -1], np.int16)
KIND = np.array([R, P, P, P, S, P, P], np.int8)
SIGNED = np.array([False, False, True, False, False, False, False])
MAX_KW = np.array([math.inf, 1000.0, 500.0, 1000.0, math.inf, math.inf, math.inf])


@st.composite
def arrivals(draw):
    n = draw(st.integers(0, 80))
    t = T0
    rows = []
    for _ in range(n):
        t += draw(st.integers(-120, 60)) * NS
        s = draw(st.integers(-1, len(SITE)))
        v = draw(st.one_of(st.floats(-10, 1200), st.sampled_from([math.nan, math.inf, -1e9])))
        rows.append((t, s, v))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    return rows, cuts


@SETTINGS
@given(arrivals(), st.sampled_from([0, 1, 30 * NS, 120 * NS]),
       st.sampled_from([T0, T0 + 3600 * NS]))
def test_screen_equals_naive_in_any_pieces(inp, grace, future):
    rows, cuts = inp
    t = np.array([r[0] for r in rows], np.int64)
    s = np.array([r[1] for r in rows], np.int32)
    v = np.array([r[2] for r in rows], np.float64)
    max_t = np.full(2, en.NO_TIME, np.int64)
    wm = np.full(2, en.NO_TIME, np.int64)
    codes = np.empty(len(rows), np.int8)
    o_t, o_s, o_v = np.empty(len(rows), np.int64), np.empty(len(rows), np.int32), np.empty(len(rows))
    w = 0
    for lo, hi in zip([0, *cuts], [*cuts, len(rows)], strict=True):
        w = sc.screen(t[lo:hi], s[lo:hi], v[lo:hi], SITE, ROLE, KIND, SIGNED, MAX_KW, max_t,
                      wm, grace, future, codes[lo:hi], o_t, o_s, o_v, w,
                      np.full(2, 2**62, np.int64))
    want, want_wm = naive.screen(t, s, v, site_of=SITE, role_of=ROLE, kind_of=KIND,
                                 signed=SIGNED, max_kw=MAX_KW, grace_ns=grace,
                                 future_limit_ns=future)
    assert codes.tolist() == want
    assert {i: int(wm[i]) for i in range(2) if wm[i] != en.NO_TIME} == want_wm
    good = [i for i, c in enumerate(want) if c == sc.OK]
    assert o_t[:w].tolist() == t[good].tolist()
    assert o_s[:w].tolist() == s[good].tolist()


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6),
                          st.one_of(st.floats(-3, 3), st.sampled_from([math.inf, -math.inf]))),
                max_size=60))
def test_order_and_dedup_equal_naive(rows):
    s = np.array([r[0] for r in rows], np.int32)
    t = T0 + np.array([r[1] for r in rows], np.int64)
    v = np.array([r[2] for r in rows], np.float64)
    order_dedup(s, t, v, 5)  # asserts the kernels' kept and dropped readings equal naive's


@SETTINGS
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 1000)), st.integers(0, 300)),
                max_size=8),
       st.integers(0, 1200))
def test_close_time_equals_naive(series, wm):
    last_t = np.array([en.NO_TIME if t is None else T0 + t * NS for t, _ in series], np.int64)
    gap = np.array([g * NS for _, g in series], np.int64)
    got = sc.close_time(np.arange(len(series), dtype=np.int32), last_t, gap, T0 + wm * NS)
    want = naive.close_time({i: (None if t is None else T0 + t * NS)
                             for i, (t, _) in enumerate(series)},
                            dict(enumerate(gap.tolist())), T0 + wm * NS)
    assert got == want


# --------------------------------------------------------------------------- KPIs, windows

ENERGY_ROLES = [r for r in ALL_ROLES if not r.endswith(("_c", "_lpm", "_soc"))]


@SETTINGS
@given(st.lists(st.dictionaries(st.sampled_from(ENERGY_ROLES),
                                st.one_of(st.floats(-10, 1e4), st.just(0.0),
                                          st.sampled_from([math.nan, math.inf]))),
                max_size=6),
       st.sets(st.sampled_from(ENERGY_ROLES)), st.floats(0, 2))
def test_kpis_equal_naive(rows, metered, co2):
    e = np.zeros((len(rows), kp.N_ROLES))
    for i, r in enumerate(rows):
        for role, val in r.items():
            e[i, ROLE_INDEX[role]] = val
    m = np.zeros(kp.N_ROLES, bool)
    m[[ROLE_INDEX[r] for r in metered]] = True
    out, flags = kp.compute(e, m, co2)
    names = {0: None, kp.FLAG_NON_POSITIVE_IT: "non_positive_it",
             kp.FLAG_BETTER_THAN_PERFECT: "better_than_perfect"}
    for i, r in enumerate(rows):
        want, flag = naive.kpis(r, metered, co2)
        assert names[int(flags[i])] == flag
        for j, name in enumerate(kp.KPI_FIELDS):
            w = want[name]
            if w is None:
                assert math.isnan(out[i, j]), name
            elif math.isnan(w):
                assert math.isnan(out[i, j]), name
            else:
                assert math.isclose(out[i, j], w, rel_tol=1e-9, abs_tol=1e-12), name


@SETTINGS
@given(st.integers(2, 12), st.integers(1, 10), st.integers(0, 2**32 - 1))
def test_rollup_equals_naive(n_series, nb, seed):
    rng = np.random.default_rng(seed)
    width = nb + 2
    acc_e = rng.uniform(0, 100, (n_series, width))
    acc_cov = rng.integers(0, M, (n_series, width)).astype(float)
    acc_sum = rng.uniform(-5, 30, (n_series, width))
    acc_n = rng.integers(0, 5, (n_series, width))
    role = rng.integers(0, 5, n_series).astype(np.int16)
    kind = rng.integers(0, 3, n_series).astype(np.int8)
    b0 = 1000
    first_t = np.where(rng.random(n_series) < 0.2, en.NO_TIME,
                       (b0 + rng.integers(-2, nb + 2, n_series)) * M + rng.integers(0, M, n_series))
    site_series = rng.permutation(n_series)[: rng.integers(0, n_series + 1)].astype(np.int32)
    out = [np.empty((nb, 5)), np.empty(nb), np.empty(nb, np.int64), np.empty((nb, 5)),
           np.empty((nb, 5), np.int64)]
    wn.rollup(site_series, role, kind, first_t.astype(np.int64), M, b0, nb, acc_e, acc_cov,
              acc_sum, acc_n, 5, *out)
    want = naive.rollup(site_series, role, kind, first_t, M, b0, nb, acc_e, acc_cov, acc_sum,
                        acc_n, 5)
    np.testing.assert_allclose(out[0], [w["e"] for w in want], rtol=1e-9)
    np.testing.assert_allclose(out[1], [w["cov"] for w in want], rtol=1e-9)
    assert out[2].tolist() == [w["den"] for w in want]
    np.testing.assert_allclose(out[3], [w["ssum"] for w in want], rtol=1e-9, atol=1e-12)
    assert out[4].tolist() == [w["sn"] for w in want]


ZONES = ["UTC", "Africa/Casablanca", "Europe/Madrid", "America/Chicago", "America/Santiago",
         "Africa/Dakar", "Asia/Kolkata", "Australia/Lord_Howe"]


@SETTINGS
@given(st.integers(-10**18, 4 * 10**18), st.sampled_from(ZONES),
       st.sampled_from(["1m", "15m", "1h", "1d", "16m"]))
def test_window_bounds_equal_naive(t, zone, window):
    z = ZoneInfo(zone)
    start, end = naive.window_bounds(window, t, z)
    assert start <= t < end
    assert wn.window_start(window, t, z) == start
    assert wn.window_end(window, start, z) == end
