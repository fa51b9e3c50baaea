"""The kernels of a time-ordered input against independent references.

``integrate_ordered`` takes readings interleaved across series as a time-ordered file
delivers them; its accumulators must equal the naive reference (``tests/naive.py``) on
the same readings, and its events name the same readings. ``series_order`` and
``dedup_ordered`` are checked against plain-Python definitions.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pueflow.pipeline import energy as en
from pueflow.pipeline import screen as sc
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
    out = sc.ORDERED
    for s, t in zip(series, times, strict=True):
        if s in last and t < last[s]:
            return sc.DISORDERED
        if s in last and t == last[s]:
            out = sc.REPEATS
        last[s] = t
    return out


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 6), st.integers(-3, 3)),
                max_size=40))
def test_series_order_and_dedup_ordered(rows):
    s = np.array([r[0] for r in rows], np.int32)
    t = T = np.array([r[1] for r in rows], np.int64) * NS
    v = np.array([r[2] for r in rows], np.float64)
    scratch = np.full(4, en.NO_TIME, np.int64)
    got = sc.series_order(s, t, scratch)
    assert got == _order_by_definition(s.tolist(), T.tolist())
    assert (scratch == en.NO_TIME).all()
    if got != sc.REPEATS:
        return
    ks, kt, kv, ds, dt, dv = sc.dedup_ordered(s, t, v, scratch, np.zeros(4, np.int64))
    assert (scratch == en.NO_TIME).all()
    # by definition: one reading per (series, time), the smallest value; the rest dropped
    groups: dict[tuple[int, int], list[float]] = {}
    for a, b, c in zip(s.tolist(), t.tolist(), v.tolist(), strict=True):
        groups.setdefault((a, b), []).append(c)
    kept = sorted(zip(ks.tolist(), kt.tolist(), kv.tolist(), strict=True))
    assert kept == sorted((a, b, min(vs)) for (a, b), vs in groups.items())
    dropped = sorted(zip(ds.tolist(), dt.tolist(), dv.tolist(), strict=True))
    assert dropped == sorted((a, b, x) for (a, b), vs in groups.items()
                             for x in sorted(vs)[1:])
    # kept readings stay in arrival order
    first = {}
    for i, key in enumerate(zip(s.tolist(), t.tolist(), strict=True)):
        first.setdefault(key, i)
    assert list(zip(ks.tolist(), kt.tolist(), strict=True)) == sorted(first, key=first.get)
