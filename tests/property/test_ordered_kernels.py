"""The kernels of a time-ordered input against independent references.

``integrate_ordered`` takes readings interleaved across series as a time-ordered file
delivers them; its accumulators must equal the naive reference (``tests/naive.py``) on
the same readings, and its events name the same readings. Releasing held readings, putting each series in time
order and dropping repeats (:mod:`pueflow.pipeline.held`) are checked step by step against
plain-Python definitions.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pueflow.pipeline import energy as en
from pueflow.pipeline import held
from pueflow.pipeline.screen import DISORDERED, ORDERED, REPEATS
from tests import naive
from tests.conftest import NS
from tests.property.test_kernels_props import SETTINGS, M, kernel_input, rig_for

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


@SETTINGS
@given(kernel_input(), st.sampled_from([M, 15 * M, 7 * NS]), st.randoms(use_true_random=False))
def test_integrate_ordered_equals_naive_in_time_major_order(inp, base_ns, rnd):
    specs, rows, _ = inp
    # time-major arrival: by time, ties in random series order (each series stays in order)
    keyed = sorted(rows, key=lambda r: (r[1], rnd.random()))
    s = np.array([r[0] for r in keyed], np.int32)
    t = np.array([r[1] for r in keyed], np.int64)
    v = np.array([r[2] for r in keyed], np.float64)
    rig = rig_for(specs, base_ns, rows)
    n = len(t)
    ev_idx, ev_code, ev_val = np.empty(2 * n, np.int64), np.empty(2 * n, np.int8), np.empty(2 * n)
    k = en.integrate_ordered(t, s, v, rig.kind, rig.register_max, rig.jitter, rig.max_gap_ns,
                             rig.max_kw, np.zeros(len(rig.kind), np.int32),
                             np.array([rig.b0], np.int64), base_ns, rig.last_t, rig.last_v,
                             rig.spike_run, rig.acc_e, rig.acc_cov, rig.acc_sum, rig.acc_n,
                             ev_idx, ev_code, ev_val)
    # the reference takes the readings sorted by (series, time); map its event indices
    order = sorted(range(n), key=lambda i: (s[i], t[i]))
    ref = naive.integrate(t[order], s[order], v[order], rig.params(), base_ns)
    exp = rig.expected(ref)
    for name, want in exp.items():
        np.testing.assert_allclose(getattr(rig, name), want, rtol=1e-9, atol=1e-6,
                                   equal_nan=True, err_msg=name)
    got = sorted((int(s[ev_idx[j]]), int(t[ev_idx[j]]), int(ev_code[j])) for j in range(k))
    want = sorted((int(s[order[i]]), int(t[order[i]]), c) for i, c, _ in ref.events)
    assert got == want


def _order_by_definition(series, times) -> int:
    last: dict[int, int] = {}
    out = ORDERED
    for s, t in zip(series, times, strict=True):
        if s in last and t < last[s]:
            return DISORDERED
        if s in last and t == last[s]:
            out = REPEATS
        last[s] = max(t, last.get(s, t))
    return out


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 9), st.integers(-3, 3)),
                max_size=40),
       st.tuples(st.integers(0, 10), st.integers(0, 10)))
def test_release_then_order_then_dedup(rows, wm_s):
    """What the core does with its held readings, step by step against definitions."""
    site_of = np.array([0, 1, 0, 1], np.int32)
    wm = np.array(wm_s, np.int64) * NS
    s = np.array([r[0] for r in rows], np.int32)
    t = np.array([r[1] for r in rows], np.int64) * NS
    v = np.array([r[2] for r in rows], np.float64)
    S, T, V = s.tolist(), t.tolist(), v.tolist()
    out = [i for i in range(len(S)) if T[i] < wm[site_of[S[i]]]]
    stay = [i for i in range(len(S)) if i not in out]
    seen = np.full(4, en.NO_TIME, np.int64)
    flag = np.zeros(4, np.bool_)
    lo, hi, held_min = np.empty(2, np.int64), np.empty(2, np.int64), np.empty(2, np.int64)
    w, ht, hs, hv, state = held.release_in_place(t, s, v, site_of, wm, seen, flag, lo, hi,
                                                 held_min)
    assert (seen == en.NO_TIME).all()
    # released: compacted to the front in arrival order; held: the rest, in arrival order
    assert w == len(out)
    assert list(zip(t[:w].tolist(), s[:w].tolist(), v[:w].tolist(), strict=True)) == [
        (T[i], S[i], V[i]) for i in out]
    assert list(zip(ht.tolist(), hs.tolist(), hv.tolist(), strict=True)) == [
        (T[i], S[i], V[i]) for i in stay]
    for k in range(2):
        ts = [T[i] for i in out if site_of[S[i]] == k]
        assert (lo[k], hi[k]) == ((min(ts), max(ts)) if ts else (np.iinfo(np.int64).max, en.NO_TIME))
        kept = [T[i] for i in stay if site_of[S[i]] == k]
        assert held_min[k] == (min(kept) if kept else np.iinfo(np.int64).max)
    if not w:
        return
    assert state == _order_by_definition([S[i] for i in out], [T[i] for i in out])
    # flagged: each series that goes back in time or repeats a time among the released
    back = {S[i] for j, i in enumerate(out) for i2 in out[:j] if S[i2] == S[i] and T[i2] >= T[i]}
    assert set(np.flatnonzero(flag).tolist()) == back
    rt, rs, rv = t[:w], s[:w], v[:w]
    ds, dt, dv = np.empty(w, np.int32), np.empty(w, np.int64), np.empty(w)
    kd = held.fix_series(rt, rs, rv, flag, np.zeros(4, np.int64), ds, dt, dv)
    assert not flag.any()
    for j, i in enumerate(out):  # series not flagged stay where they were
        if S[i] not in back:
            assert (rs[j], rt[j], rv[j]) == (S[i], T[i], V[i])
    # by definition: one reading per (series, time), the smallest value; the rest dropped
    groups: dict[tuple[int, int], list[float]] = {}
    for i in out:
        groups.setdefault((S[i], T[i]), []).append(V[i])
    kept = rs >= 0
    got = sorted(zip(rs[kept].tolist(), rt[kept].tolist(), rv[kept].tolist(), strict=True))
    assert got == sorted((a, b, min(vs)) for (a, b), vs in groups.items())
    dropped = sorted(zip(ds[:kd].tolist(), dt[:kd].tolist(), dv[:kd].tolist(), strict=True))
    assert dropped == sorted((a, b, x) for (a, b), vs in groups.items() for x in sorted(vs)[1:])
    assert kd == int((~kept).sum())
    for k in range(4):  # each series strictly increasing now: what integrate_ordered needs
        assert np.all(np.diff(rt[kept & (rs == k)]) > 0)
