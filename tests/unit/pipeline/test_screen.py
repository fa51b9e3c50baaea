"""``screen.screen`` (lateness, future/unknown/invalid/spike codes, good readings appended),
the order + dedup path of :mod:`pueflow.pipeline.held` and ``close_time`` against
``tests/naive.py``. Runs with and without NUMBA_DISABLE_JIT."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pueflow.pipeline import held
from pueflow.pipeline import screen as sc
from tests import naive
from tests.conftest import NS

NO_TIME = np.iinfo(np.int64).min
# series: 0 power (site 0), 1 register (site 0), 2 battery power (signed, site 0),
# 3 sensor (site 0), 4 power (site 1), 5 unknown role, 6 unknown site
SITE = np.array([0, 0, 0, 0, 1, 0, -1], np.int32)
ROLE = np.array([1, 0, 14, 20, 1, -1, 1], np.int16)
KIND = np.array([1, 0, 1, 2, 1, -1, 1], np.int8)
SIGNED = np.array([False, False, True, False, False, False, False])
MAX_KW = np.array([1000.0, 500.0, 1000.0, math.inf, 1000.0, math.inf, math.inf])
FUTURE_LIMIT = 10**6 * NS


def run_screen(t, s, v, grace_ns=0, max_t=None, wm=None):
    t = np.asarray(t, np.int64)
    s = np.asarray(s, np.int32)
    v = np.asarray(v, np.float64)
    max_t = np.full(2, NO_TIME, np.int64) if max_t is None else max_t
    wm = np.full(2, NO_TIME, np.int64) if wm is None else wm
    codes = np.empty(len(t), np.int8)
    # two readings already held sit in front of the buffer; the good ones follow them
    o_t, o_s, o_v = np.full(len(t) + 2, -1, np.int64), np.zeros(len(t) + 2, np.int32), np.zeros(len(t) + 2)
    o_t[:2] = [7, 8]
    held_min = np.array([5, 2**62], np.int64)
    w = sc.screen(t, s, v, SITE, ROLE, KIND, SIGNED, MAX_KW, max_t, wm, grace_ns, FUTURE_LIMIT,
                  codes, o_t, o_s, o_v, 2, held_min)
    good = np.array(codes) == sc.OK
    assert w == 2 + good.sum()
    for site, first in enumerate((5, 2**62)):  # earliest appended per site, or as it was
        ts = [first] + [int(x) for x, g, k in zip(t, good, s, strict=True) if g and SITE[k] == site]
        assert held_min[site] == min(ts)
    assert o_t[:2].tolist() == [7, 8]
    assert o_t[2:w].tolist() == t[good].tolist()
    assert o_s[2:w].tolist() == s[good].tolist()
    np.testing.assert_array_equal(o_v[2:w], v[good])
    want, want_wm = naive.screen(t, s, v, site_of=SITE, role_of=ROLE, kind_of=KIND,
                                 signed=SIGNED, max_kw=MAX_KW, grace_ns=grace_ns,
                                 future_limit_ns=FUTURE_LIMIT)
    assert codes.tolist() == want
    for site, w in want_wm.items():
        assert wm[site] == w
    return codes.tolist(), max_t, wm


def test_empty():
    codes, max_t, wm = run_screen([], [], [])
    assert codes == []
    assert (wm == NO_TIME).all()
    assert (max_t == NO_TIME).all()


def test_unknown_series():
    codes, *_ = run_screen([0, 0, 0, 0], [5, 6, 7, -1], [1.0, 1.0, 1.0, 1.0])
    assert codes == [sc.UNKNOWN] * 4


def test_future():
    codes, *_ = run_screen([FUTURE_LIMIT, FUTURE_LIMIT + 1], [0, 0], [1.0, 1.0])
    assert codes == [sc.OK, sc.FUTURE]


@pytest.mark.parametrize(("series", "value", "code"), [
    (0, math.nan, sc.INVALID), (0, math.inf, sc.INVALID), (0, -math.inf, sc.INVALID),
    (0, -0.1, sc.INVALID), (1, -1.0, sc.INVALID), (3, math.nan, sc.INVALID),
    (0, 0.0, sc.OK), (0, -0.0, sc.OK),
    (2, -800.0, sc.OK),          # a battery discharging
    (3, -12.5, sc.OK),           # a sensor may read below zero
    (0, 1000.0, sc.OK), (0, 1000.5, sc.SPIKE), (2, -1000.5, sc.SPIKE),
    (1, 1e9, sc.OK),             # register spikes are judged on deltas, not values
])
def test_value_codes(series, value, code):
    codes, *_ = run_screen([10], [series], [value])
    assert codes == [code]


def test_late_beyond_grace_and_watermark_never_decreases():
    g = 30 * NS
    t = [100 * NS, 130 * NS, 99 * NS, 100 * NS, 69 * NS, 70 * NS, 50 * NS]
    codes, max_t, wm = run_screen(t, [0] * 7, [1.0] * 7, grace_ns=g)
    # 99 s and 70 s are within grace of 130 s (watermark 100 s), 69 s and 50 s are not
    assert codes == [sc.OK, sc.OK, sc.LATE, sc.OK, sc.LATE, sc.LATE, sc.LATE]
    assert max_t[0] == 130 * NS
    assert wm[0] == 100 * NS


def test_reading_exactly_at_watermark_is_accepted():
    codes, _, wm = run_screen([100 * NS, 70 * NS, 69 * NS], [0, 0, 0], [1.0] * 3,
                              grace_ns=30 * NS)
    assert codes == [sc.OK, sc.OK, sc.LATE]


def test_rejected_readings_do_not_advance_the_watermark():
    t = [100 * NS, 500 * NS, 500 * NS, 500 * NS, 90 * NS]
    codes, max_t, wm = run_screen(t, [0, 0, 5, 1, 0], [1.0, math.nan, 1.0, -1.0, 1.0])
    assert codes == [sc.OK, sc.INVALID, sc.UNKNOWN, sc.INVALID, sc.LATE]
    assert max_t[0] == 100 * NS


def test_sites_have_their_own_watermark():
    codes, _, wm = run_screen([1000 * NS, 10 * NS, 5 * NS], [0, 4, 0], [1.0] * 3)
    assert codes == [sc.OK, sc.OK, sc.LATE]
    assert wm.tolist() == [1000 * NS, 10 * NS]


def test_state_carries_across_calls():
    max_t = np.full(2, NO_TIME, np.int64)
    wm = np.full(2, NO_TIME, np.int64)
    run_screen([100 * NS], [0], [1.0], grace_ns=10 * NS, max_t=max_t, wm=wm)
    codes = np.empty(2, np.int8)
    o_t, o_s, o_v = np.empty(2, np.int64), np.empty(2, np.int32), np.empty(2)
    w = sc.screen(np.array([89 * NS, 90 * NS]), np.array([0, 0], np.int32), np.ones(2), SITE,
                  ROLE, KIND, SIGNED, MAX_KW, max_t, wm, 10 * NS, FUTURE_LIMIT, codes,
                  o_t, o_s, o_v, 0, np.full(2, 2**62, np.int64))
    assert codes.tolist() == [sc.LATE, sc.OK]
    assert (w, o_t[0]) == (1, 90 * NS)


# --------------------------------------------------------------------------- order + dedup


def order_dedup(s, t, v, n_series=8):
    """Released readings through ``fix_series`` (what the core does with them).

    Returns naive's ``(kept, dropped)`` indices after checking the kernel keeps and drops
    the same readings, and leaves every series strictly increasing in time.
    """
    s = np.asarray(s, np.int32)
    t = np.asarray(t, np.int64)
    v = np.asarray(v, np.float64)
    n = len(s)
    ks, kt, kv = s.copy(), t.copy(), v.copy()
    flag = np.zeros(n_series, np.bool_)
    for a in range(n):  # a series is flagged when it goes back in time or repeats a time
        flag[s[a]] |= any(s[b] == s[a] and t[b] >= t[a] for b in range(a))
    untouched = [i for i in range(n) if not flag[s[i]]]
    ds, dt, dv = np.empty(n, np.int32), np.empty(n, np.int64), np.empty(n)
    d = held.fix_series(kt, ks, kv, flag, np.zeros(n_series, np.int64), ds, dt, dv)
    assert not flag.any()
    assert all((ks[i], kt[i]) == (s[i], t[i]) for i in untouched)  # other series not moved
    kept = ks >= 0
    for k in range(n_series):  # each series strictly increasing now
        assert np.all(np.diff(kt[kept & (ks == k)]) > 0)
    want_kept, want_dup = naive.sort_dedup(s, t, v)

    def rows(a, b, c):  # comparable rows: NaN != NaN, so values compare by repr
        return sorted((int(x), int(y), repr(float(z))) for x, y, z in zip(a, b, c, strict=True))

    assert rows(ks[kept], kt[kept], kv[kept]) == rows(s[want_kept], t[want_kept], v[want_kept])
    assert rows(ds[:d], dt[:d], dv[:d]) == rows(s[want_dup], t[want_dup], v[want_dup])
    return want_kept, want_dup


def dedup(s, t, v, n_series=8):
    """Naive kept/dropped indices, after checking the kernels agree with them."""
    return order_dedup(s, t, v, n_series)


def test_dedup_empty():
    assert dedup([], [], []) == ([], [])


def test_dedup_sorted_input_is_identity():
    assert dedup([0, 0, 1, 1], [1, 2, 1, 5], [1.0, 2.0, 3.0, 4.0]) == ([0, 1, 2, 3], [])


def test_dedup_unsorted():
    s = [2, 0, 1, 0, 2, 1]
    t = [5, 9, 3, 2, 1, 4]
    kept, dup = dedup(s, t, [1.0] * 6)
    assert kept == [3, 1, 2, 5, 4, 0]
    assert dup == []


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 1, 0], [1, 2, 0]])
def test_duplicates_keep_the_smallest_value_whatever_the_arrival_order(order):
    vals = np.array([7.0, 3.0, 5.0])[order]
    kept, dup = dedup([0, 0, 0], [10, 10, 10], vals)
    assert vals[kept].tolist() == [3.0]
    assert sorted(vals[dup].tolist()) == [5.0, 7.0]


def test_equal_duplicates_keep_the_first_arrival():
    assert dedup([1, 1, 1], [4, 4, 4], [2.0, 2.0, 2.0]) == ([0], [1, 2])


def test_duplicates_across_series_are_not_duplicates():
    assert dedup([0, 1], [4, 4], [2.0, 2.0]) == ([0, 1], [])


def test_dedup_inf():
    kept, dup = dedup([0, 0, 0], [1, 1, 0], [math.inf, -math.inf, 1.0])
    assert kept == [2, 1]
    assert dup == [0]


@pytest.mark.parametrize("vals", [[math.nan, 1.0], [1.0, math.nan]])
def test_nan_duplicate_choice_does_not_depend_on_arrival_order(vals):
    """"Among duplicates the smallest value is kept, so the choice does not depend on
    arrival order": a NaN duplicate must not win just because it arrived first."""
    kept, _ = dedup(np.zeros(2, np.int32), np.zeros(2, np.int64), np.array(vals), 1)
    assert np.array(vals)[kept].tolist() == [1.0]


# --------------------------------------------------------------------------- close_time


def close(last_t, max_gap, wm):
    last_t = np.asarray(last_t, np.int64)
    max_gap = np.asarray(max_gap, np.int64)
    ss = np.arange(len(last_t), dtype=np.int32)
    got = int(sc.close_time(ss, last_t, max_gap, wm))
    want = naive.close_time({int(s): (None if last_t[s] == NO_TIME else int(last_t[s]))
                             for s in ss}, dict(enumerate(max_gap.tolist())), wm)
    assert got == want
    return got


def test_close_time_without_series_is_the_watermark():
    assert close([], [], 500) == 500


def test_close_time_ignores_series_that_never_reported():
    assert close([NO_TIME], [100], 500) == 500


def test_close_time_held_by_a_series_that_can_still_fill():
    assert close([450, 300, 420], [100, 100, 100], 500) == 420


def test_close_time_ignores_a_series_already_past_its_gap():
    assert close([300], [100], 500) == 500


def test_close_time_held_when_next_reading_at_watermark_would_fill():
    """A reading at exactly the watermark is accepted (screen: late only if t < wm), and an
    interval of exactly max_gap is filled (integrate: dt <= max_gap), so a series whose
    last reading is max_gap before the watermark can still add energy after last_t."""
    assert close([400], [100], 500) == 400


def test_close_time_subset_of_series():
    last_t = np.array([10, 450, NO_TIME], np.int64)
    got = sc.close_time(np.array([0, 2], np.int32), last_t, np.array([500, 100, 1]), 500)
    assert got == 10


@pytest.mark.parametrize("shape", ["nearly", "reversed", "shuffled"])
def test_order_dedup_of_long_series_nearly_ordered_or_not(shape):
    """Nearly ordered series are put in order by moving the few late readings; far from
    ordered ones (more moves than a few per reading) by a full sort: same result."""
    rng = np.random.default_rng(5)
    n = 400
    t = np.repeat(np.arange(n // 2), 2)[:n] * 10  # each time twice: repeats to drop
    if shape == "nearly":
        t = t.copy()
        late = rng.choice(n - 20, 15, replace=False)
        t[late + 20], t[late] = t[late], t[late + 20]  # a reading 20 places late
    elif shape == "reversed":
        t = t[::-1]
    else:
        t = rng.permutation(t)
    s = np.r_[np.zeros(n, np.int32), np.ones(50, np.int32)]  # series 1 stays in order
    t = np.r_[t, np.arange(50) * 10]
    v = rng.integers(0, 5, len(t)).astype(np.float64)
    kept, dup = dedup(s, t, v, n_series=2)
    assert len(kept) == n // 2 + 50
    assert len(dup) == n // 2
