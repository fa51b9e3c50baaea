"""A checkpoint written before the ``ppa`` role existed restores by role name: the water and
sensor columns after it keep their energy (a positional restore would shift them)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from pueflow.pipeline.core import Pipeline
from pueflow.roles import ROLE_INDEX
from pueflow.schema.batch import Batch
from tests.conftest import FAR_CLOCK, build_config

T0 = 1_782_864_000 * 10**9
MIN = 60 * 10**9
METERS = [{"device": "fac", "point": "kw", "kind": "power", "role": "facility"},
          {"device": "it", "point": "kw", "kind": "power", "role": "it"},
          {"device": "water", "point": "l", "kind": "register", "role": "water_l"},
          {"device": "amb", "point": "c", "kind": "sensor", "role": "ambient_temp_c"}]
KEYS = [("s1", "fac", "kw"), ("s1", "it", "kw"), ("s1", "water", "l"), ("s1", "amb", "c")]


def batch(p: Pipeline, minutes: range) -> Batch:
    t, s, v = [], [], []
    for m in minutes:
        for k, val in zip(KEYS, (120.0, 100.0, 7.0 * m, 20.0 + m / 10), strict=True):
            t.append(T0 + m * MIN)
            s.append(p.registry.id(*k))
            v.append(val)
    return Batch(np.array(t, np.int64), np.array(s, np.int32), np.array(v))


def hour_row(outs):
    rows = [o.kpi.filter(o.kpi["window"] == "1h") for o in outs if o.kpi is not None]
    rows = [r for r in rows if r.height]
    return rows[0].row(0, named=True)


def as_pre_ppa(blob: bytes) -> bytes:
    """The same snapshot as a pueflow without the ``ppa`` role would have written it."""
    z = np.load(io.BytesIO(blob), allow_pickle=False)
    header = json.loads(z["header"].tobytes())
    assert header.pop("roles")[ROLE_INDEX["ppa"]] == "ppa"
    arrays = {}
    for k in z.files:
        if k == "header":
            continue
        a = z[k]
        if k.rsplit("/", 1)[-1] in ("h_e", "h_ssum", "h_sn"):
            a = np.delete(a, ROLE_INDEX["ppa"], axis=1)
        arrays[k] = a
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    return buf.getvalue()


def test_pre_ppa_checkpoint_restores_by_role_name():
    cfg = build_config(METERS, windows=("1m", "1h"))
    whole = Pipeline(cfg, clock_ns=FAR_CLOCK)
    want = hour_row([whole.process(batch(whole, range(0, 61))), whole.finalize()])

    first = Pipeline(cfg, clock_ns=FAR_CLOCK)
    first.process(batch(first, range(0, 31)))
    blob = as_pre_ppa(first.snapshot(["s1"]))
    second = Pipeline(cfg, clock_ns=FAR_CLOCK)
    second.restore(blob)
    got = hour_row([second.process(batch(second, range(31, 61))), second.finalize()])
    assert got["water_l"] == pytest.approx(7.0 * 60, rel=1e-12)
    for col in ("facility_kwh", "it_kwh", "water_l", "ambient_temp_c", "pue", "coverage"):
        assert got[col] == pytest.approx(want[col], rel=1e-12), col
    assert got["ppa_kwh"] is None
