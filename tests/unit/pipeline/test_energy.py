"""``energy.integrate`` (registers, trapezoid, buckets) and the window kernels against
``tests/naive.py``, including NaN/inf/empty inputs. Runs with and without NUMBA_DISABLE_JIT."""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from pueflow.pipeline import energy as en
from pueflow.pipeline import windows as wn
from tests import naive
from tests.conftest import NS, T0, Rig

# NaN/inf inputs are deliberate; without the JIT numpy scalars warn about them
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
M = 60 * NS
H = 3600 * NS
R, P, S = en.KIND_REGISTER, en.KIND_POWER, en.KIND_SENSOR


def both(rig: Rig, t, s, v):
    """Feed the kernel and the naive reference the same readings; compare."""
    rig.feed(t, s, v)
    rig.check(naive.integrate(t, s, v, rig.params(), rig.base_ns, out=None))
    return rig


# --------------------------------------------------------------------------- basics


def test_empty_input_changes_nothing():
    rig = Rig([P, R, S])
    rig.feed(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0))
    assert not rig.acc_e.any()
    assert not rig.acc_cov.any()
    assert not rig.acc_n.any()
    assert (rig.last_t == en.NO_TIME).all()
    assert rig.events == []


def test_first_reading_only_sets_state():
    rig = Rig([P, R])
    rig.feed([10 * NS, 20 * NS], [0, 1], [500.0, 1234.0])
    assert not rig.acc_e.any()
    assert not rig.acc_cov.any()
    assert rig.last_t.tolist() == [10 * NS, 20 * NS]
    assert rig.last_v.tolist() == [500.0, 1234.0]


def test_sensor_sums_and_counts_per_bucket():
    rig = Rig([S])
    both(rig, [0, 30 * NS, 60 * NS, 61 * NS], [0] * 4, [20.0, 22.0, -5.0, 7.0])
    assert rig.acc_sum[0, :2].tolist() == [42.0, 2.0]
    assert rig.acc_n[0, :2].tolist() == [2, 2]


# --------------------------------------------------------------------------- power


def test_power_split_exactly_at_bucket_boundaries():
    # 0 -> 120 kW linearly from 30 s to 150 s: buckets [30,60) [60,120) [120,150)
    rig = both(Rig([P], max_gap_ns=[H]), [30 * NS, 150 * NS], [0, 0], [0.0, 120.0])
    want = [(0 + 30) / 2 * 30 / 3600, (30 + 90) / 2 * 60 / 3600, (90 + 120) / 2 * 30 / 3600]
    assert rig.acc_e[0, :3] == pytest.approx(want, rel=1e-12)
    assert rig.acc_cov[0, :3].tolist() == [30 * NS, 60 * NS, 30 * NS]
    assert rig.acc_e[0].sum() == pytest.approx((0 + 120) / 2 * 120 / 3600, rel=1e-12)


def test_power_interval_ending_on_boundary_stays_in_its_bucket():
    rig = both(Rig([P]), [0, M], [0, 0], [100.0, 100.0])
    assert rig.acc_e[0, 0] == pytest.approx(100 / 60, rel=1e-12)
    assert not rig.acc_e[0, 1:].any()


def test_power_interval_of_exactly_max_gap_is_filled():
    rig = both(Rig([P], max_gap_ns=[M]), [0, M, 2 * M + 1], [0, 0, 0], [60.0, 60.0, 60.0])
    assert rig.acc_e[0, 0] == pytest.approx(1.0, rel=1e-12)
    assert [(i, c) for i, c, _ in rig.events] == [(2, en.EV_GAP)]
    assert rig.events[0][2] == pytest.approx(60.000000001, rel=1e-12)


def test_power_signed_values_integrate_through_zero():
    rig = both(Rig([P], max_gap_ns=[H]), [0, 2 * M], [0, 0], [-60.0, 60.0])
    assert rig.acc_e[0, 0] == pytest.approx(-0.5, rel=1e-12)   # -60 -> 0 kW over 1 min
    assert rig.acc_e[0, :2].sum() == pytest.approx(0.0, abs=1e-12)


def test_power_ns_offsets_split_exactly():
    t = [M - 7, 3 * M + 11, 3 * M + 12]
    rig = both(Rig([P], max_gap_ns=[H]), t, [0] * 3, [10.0, 1000.0, 3.0])
    assert rig.acc_cov[0, :4].sum() == 3 * M + 12 - (M - 7)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_power_nan_inf_propagate_like_the_reference(bad):
    """The core screens non-finite readings out; the kernel itself must still not crash
    and must agree with plain arithmetic."""
    t = [0, 30 * NS, 150 * NS, 200 * NS]
    both(Rig([P], max_gap_ns=[H]), t, [0] * 4, [100.0, bad, 50.0, 60.0])


# --------------------------------------------------------------------------- registers


def reg(**kw):
    kw.setdefault("max_gap_ns", [H])
    return Rig([R], **kw)


def test_register_delta_spread_uniformly_over_its_interval():
    rig = both(reg(), [30 * NS, 150 * NS], [0, 0], [100.0, 112.0])
    assert rig.acc_e[0, :3] == pytest.approx([3.0, 6.0, 3.0], rel=1e-12)
    assert rig.acc_cov[0, :3].tolist() == [30 * NS, 60 * NS, 30 * NS]


def test_register_beyond_max_gap_booked_at_later_reading():
    rig = both(reg(max_gap_ns=[5 * M]), [0, 10 * M + 5 * NS], [0, 0], [100.0, 130.0])
    assert rig.acc_e[0, 10] == 30.0
    assert rig.acc_e[0].sum() == 30.0
    assert not rig.acc_cov.any()
    assert rig.events == [(1, en.EV_GAP, 605.0)]


def test_register_jitter_adds_nothing_and_keeps_max_so_far():
    rig = both(reg(jitter=[0.5]), [0, M, 2 * M], [0] * 3, [100.0, 99.6, 100.2])
    assert rig.acc_e[0, 0] == 0.0                       # 100 -> 99.6: jitter
    assert rig.acc_e[0, 1] == pytest.approx(0.2, rel=1e-9)   # from the max 100, not 99.6
    assert rig.events == []
    assert rig.last_v[0] == 100.2


def test_register_jitter_tolerance_is_inclusive():
    rig = both(reg(jitter=[0.5]), [0, M], [0, 0], [100.0, 99.5])
    assert rig.events == []
    assert rig.last_v[0] == 100.0


def test_register_decrease_beyond_jitter_is_reset():
    rig = both(reg(jitter=[0.5]), [0, M], [0, 0], [100.0, 99.0])
    assert rig.events == [(1, en.EV_RESET, 99.0)]


@pytest.mark.parametrize(("prev", "code", "delta"), [
    (900.0, en.EV_ROLLOVER, 1000 - 900 + 5),    # exactly at the 90 % zone: rollover
    (899.0, en.EV_RESET, 5.0),                   # just below: a reset
])
def test_rollover_zone_boundary(prev, code, delta):
    rig = both(reg(register_max=[1000.0]), [0, M], [0, 0], [prev, 5.0])
    assert rig.events == [(1, code, delta)]
    assert rig.acc_e[0].sum() == pytest.approx(delta, rel=1e-12)


def test_register_spike_excluded_state_unchanged():
    # 60 kW max over 1 min = 1 kWh at most
    rig = both(reg(max_kw=[60.0]), [0, M, 2 * M], [0] * 3, [100.0, 150.0, 101.5])
    assert rig.events == [(1, en.EV_SPIKE, 50.0)]
    # the good reading is measured from the last accepted one (100 at t=0): 1.5 kWh over 2 min
    assert rig.acc_e[0, :2] == pytest.approx([0.75, 0.75], rel=1e-12)


def test_three_spikes_in_a_row_rebase():
    t = [0, M, 2 * M, 3 * M, 4 * M]
    v = [100.0, 5000.0, 5001.0, 5002.0, 5002.5]
    rig = both(reg(max_kw=[60.0]), t, [0] * 5, v)
    assert [c for _, c, _ in rig.events] == [en.EV_SPIKE, en.EV_SPIKE, en.EV_REBASE]
    # energy only from the reading after the re-base, over its own interval
    assert rig.acc_e[0].sum() == pytest.approx(0.5, rel=1e-12)
    assert rig.acc_e[0, 3] == pytest.approx(0.5, rel=1e-12)


def test_spike_run_broken_by_a_good_reading():
    t = [0, M, 2 * M, 3 * M, 4 * M, 5 * M]
    v = [100.0, 900.0, 100.5, 900.0, 900.0, 101.0]
    rig = both(reg(max_kw=[60.0]), t, [0] * 6, v)
    assert [c for _, c, _ in rig.events] == [en.EV_SPIKE, en.EV_SPIKE, en.EV_SPIKE]


def test_rollover_that_implies_too_much_power_is_a_spike():
    rig = both(reg(register_max=[1000.0], max_kw=[60.0]), [0, M], [0, 0], [950.0, 500.0])
    assert [c for _, c, _ in rig.events] == [en.EV_SPIKE]


def test_reset_that_implies_too_much_power_is_a_spike():
    """energy.py: "A delta whose implied power exceeds max_kw is a spike" -- a reset's delta
    (the new reading) included: a register that drops from 5000 to 4000 in a minute did not
    deliver 4000 kWh (240 MW) in that minute."""
    rig = Rig([R], max_gap_ns=[H], max_kw=[60.0])
    rig.feed([0, M, 2 * M], [0, 0, 0], [5000.0, 4000.0, 5000.5])
    assert [c for _, c, _ in rig.events] == [en.EV_SPIKE]
    assert rig.acc_e[0].sum() == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize(("prev", "cur"), [(5000.0, 10.0), (999_990.0, 10.0)])
def test_event_arrays_of_documented_length_hold_every_event(prev, cur):
    """integrate's docstring: event arrays of "length >= 2 * len(time_ns)". A reset or
    rollover after a gap longer than max_gap is two events for one reading; both must be
    reported and nothing written past the documented length.

    The arrays handed over are views of len(time_ns) into larger buffers, so a write past
    their end is seen (sentinel) instead of corrupting memory.
    """
    st = (np.array([0], np.int64), np.array([prev]), np.zeros(1, np.int64))
    acc = [np.zeros((1, 100)), np.zeros((1, 100)), np.zeros((1, 100)),
           np.zeros((1, 100), np.int64)]
    bufs = [np.full(4, -7, np.int64), np.full(4, -7, np.int8), np.full(4, -7.0)]
    views = [b[:2] for b in bufs]
    try:
        k = en.integrate(np.array([H], np.int64), np.zeros(1, np.int32), np.array([cur]),
                         np.array([R], np.int8), np.array([1e6]), np.zeros(1),
                         np.array([15 * M], np.int64), np.array([math.inf]),
                         np.zeros(1, np.int32), np.zeros(1, np.int64), M, *st, *acc, *views)
    except IndexError:       # NUMBA_DISABLE_JIT: numpy checks the bound itself
        k = 3
    assert k == 2, f"{k} events for one reading after a gap (expected reset/rollover + gap)"
    assert bufs[0][2] == -7, "integrate wrote past the end of ev_idx"


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_register_nan_inf_like_the_reference(bad):
    both(reg(), [0, M, 2 * M], [0] * 3, [100.0, bad, 110.0])


# --------------------------------------------------------------------------- many series, calls


def mixed_stream():
    rng = np.random.default_rng(7)
    rows = []
    for s, kind in enumerate([P, R, S, P]):
        t = np.cumsum(rng.integers(1, 90, 40)) * NS + rng.integers(0, 10**6)
        if kind == R:
            v = np.cumsum(rng.uniform(0, 2, 40)) + 1000
            v[20:] += 0.01 - v[20]      # a reset to (nearly) zero
        else:
            v = rng.uniform(0, 500, 40)
        rows += [(s, int(ti), float(vi)) for ti, vi in zip(t, v, strict=True)]
    rows.sort()
    s, t, v = (np.array(c) for c in zip(*rows, strict=True))
    return t.astype(np.int64), s.astype(np.int32), v


def new_rig():
    return Rig([P, R, S, P], register_max=[1e12, 5000.0, 1e12, 1e12],
               jitter=[0.0, 0.3, 0.0, 0.0], max_gap_ns=[60 * NS, 120 * NS, 0, 45 * NS],
               max_kw=[math.inf, 2000.0, math.inf, math.inf])


def test_many_series_against_reference():
    t, s, v = mixed_stream()
    both(new_rig(), t, s, v)


@pytest.mark.parametrize("cuts", [[1], [17, 18, 19], [40, 80, 120], list(range(0, 160, 7))])
def test_split_across_calls_is_bit_identical(cuts):
    """Per-series state carries across calls: any cut gives the same accumulators."""
    t, s, v = mixed_stream()
    one = new_rig().feed(t, s, v)
    many = new_rig()
    # a call holds any subset of consecutive readings; per series they stay in time order
    order = np.lexsort((s, t))      # time order across series, as released by the core
    pieces = np.split(order, cuts)
    for idx in pieces:
        idx = idx[np.lexsort((t[idx], s[idx]))]
        many.feed(t[idx], s[idx], v[idx])
    for name in ("acc_e", "acc_cov", "acc_sum", "acc_n", "last_t", "last_v", "spike_run"):
        np.testing.assert_array_equal(getattr(many, name), getattr(one, name), err_msg=name)
    assert sorted((c, val) for _, c, val in many.events) == \
        sorted((c, val) for _, c, val in one.events)


def test_b0_offsets_slots():
    rig = Rig([P], max_gap_ns=[H], b0=1000)
    t = [1000 * M + 30 * NS, 1001 * M + 30 * NS]
    rig.feed(t, [0, 0], [60.0, 60.0])
    assert rig.acc_e[0, :2] == pytest.approx([0.5, 0.5], rel=1e-12)
    rig.check(naive.integrate(t, [0, 0], [60.0, 60.0], rig.params(), M))


# --------------------------------------------------------------------------- window kernels


def test_rollup_against_reference():
    rng = np.random.default_rng(3)
    n_series, width, n_roles = 6, 10, 4
    acc_e = rng.uniform(0, 10, (n_series, width))
    acc_cov = rng.integers(0, M, (n_series, width)).astype(float)
    acc_sum = rng.uniform(-5, 30, (n_series, width))
    acc_n = rng.integers(0, 5, (n_series, width))
    role = np.array([0, 1, 1, 2, 3, 0], np.int16)
    kind = np.array([R, P, P, S, P, P], np.int8)
    first_t = np.array([0, 3 * M + 1, en.NO_TIME, 0, 9 * M, 2 * M], np.int64)
    site_series = np.array([5, 0, 2, 1, 3], np.int32)       # series 4 belongs elsewhere
    b0, nb = 0, 8
    out = [np.empty((nb, n_roles)), np.empty(nb), np.empty(nb, np.int64),
           np.empty((nb, n_roles)), np.empty((nb, n_roles), np.int64)]
    wn.rollup(site_series, role, kind, first_t, M, b0, nb, acc_e, acc_cov, acc_sum, acc_n,
              n_roles, *out)
    want = naive.rollup(site_series, role, kind, first_t, M, b0, nb, acc_e, acc_cov, acc_sum,
                        acc_n, n_roles)
    np.testing.assert_allclose(out[0], [w["e"] for w in want], rtol=1e-12)
    np.testing.assert_allclose(out[1], [w["cov"] for w in want], rtol=1e-12)
    assert out[2].tolist() == [w["den"] for w in want]
    np.testing.assert_allclose(out[3], [w["ssum"] for w in want], rtol=1e-12)
    assert out[4].tolist() == [w["sn"] for w in want]
    assert out[2].tolist() == [1, 1, 2, 3, 3, 3, 3, 3]


def test_rollup_empty_site():
    out = [np.full((3, 2), 9.0), np.full(3, 9.0), np.full(3, 9, np.int64),
           np.full((3, 2), 9.0), np.full((3, 2), 9, np.int64)]
    z = np.zeros((1, 3))
    wn.rollup(np.empty(0, np.int32), np.zeros(1, np.int16), np.zeros(1, np.int8),
              np.zeros(1, np.int64), M, 0, 3, z, z, z, z.astype(np.int64), 2, *out)
    assert all(not o.any() for o in out)


def test_shift_rows_drops_closed_slots_and_zeroes_tail():
    e = np.arange(12.0).reshape(2, 6)
    cov, ssum, n = e.copy(), e.copy(), np.arange(12).reshape(2, 6)
    wn.shift_rows(np.array([1], np.int32), 4, e, cov, ssum, n)
    assert e[1].tolist() == [10.0, 11.0, 0, 0, 0, 0]
    assert n[1].tolist() == [10, 11, 0, 0, 0, 0]
    assert e[0].tolist() == [0.0, 1, 2, 3, 4, 5]        # other sites untouched
    wn.shift_rows(np.array([0], np.int32), 9, e, cov, ssum, n)
    assert not e[0].any()
    assert not cov[0].any()


@pytest.mark.parametrize("tz", ["UTC", "Africa/Casablanca", "Europe/Madrid",
                                "America/Chicago", "America/Santiago", "Asia/Kolkata"])
@pytest.mark.parametrize("window", ["1m", "15m", "1h", "1d"])
def test_window_bounds_against_reference(tz, window):
    z = ZoneInfo(tz)
    rng = np.random.default_rng(11)
    times = [T0, T0 - 1, 0, -1, *rng.integers(T0 - 400 * 86400 * NS, T0 + 400 * 86400 * NS, 60)]
    for t in times:
        t = int(t)
        start, end = naive.window_bounds(window, t, z)
        assert start <= t < end
        assert wn.window_start(window, t, z) == start, (tz, t)
        assert wn.window_end(window, start, z) == end, (tz, t)


def test_day_window_starts_at_local_midnight():
    z = ZoneInfo("Africa/Casablanca")        # UTC+1 outside Ramadan
    t = 1_719_792_000 * NS                    # 2024-07-01 00:00 UTC = 01:00 local
    assert wn.window_start("1d", t, z) == t - H
    assert wn.window_end("1d", t - H, z) == t - H + 24 * H
    # the spring-forward day in Madrid is 23 h long
    m = ZoneInfo("Europe/Madrid")
    s = wn.window_start("1d", T0 + 3 * H, m)
    assert wn.window_end("1d", s, m) - s == 23 * H
