"""Shared helpers for the kernel and core tests: configs, kernel rigs, pipeline runs."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from pueflow.config.load import parse_config
from pueflow.config.models import Config
from pueflow.pipeline import energy as en
from pueflow.pipeline.core import Pipeline
from pueflow.schema.batch import Batch

NS = 10**9
#: 2024-03-30 22:00 UTC: a few hours before Europe/Madrid's spring-forward.
T0 = 1_711_836_000 * NS
#: A wall clock far ahead of every test's data, so nothing is "from the future".
FAR_CLOCK = lambda: T0 + 36_500 * 86400 * NS  # noqa: E731


def examples(n: int) -> int:
    """Hypothesis ``max_examples``: ``n``, times ``PUEFLOW_PROPERTY_SCALE`` for a deeper run."""
    return max(1, int(n * float(os.environ.get("PUEFLOW_PROPERTY_SCALE", "1"))))


def build_config(meters: list[dict], *, windows=("1m", "15m", "1h", "1d"), grace="0s",
                 tz="UTC", it_capacity_kw=10_000.0, co2=0.0, sites: list[dict] | None = None
                 ) -> Config:
    """A config with one site ``s1`` (or the given ``sites``) and the given meter rules."""
    if sites is None:
        sites = [{"id": "s1", "jurisdiction": "MA", "timezone": tz, "latitude": 35.0,
                  "longitude": -5.0, "it_capacity_kw": it_capacity_kw,
                  "grid_co2_kg_per_kwh": co2, "meters": meters}]
    return parse_config({"pipeline": {"windows": list(windows), "grace": grace},
                         "sites": sites})


def run(cfg: Config, batches: list[tuple], keys=None, *, finalize=True, clock_ns=FAR_CLOCK,
        defer=False):
    """Feed ``batches`` of ``(time_ns, keys, value)`` rows to a fresh pipeline.

    ``keys`` (site, device, point) are registered first, in the given order, so series ids
    do not depend on arrival order; ``defer`` sets the pipeline's ``defer_rows`` (what
    replay does). Returns ``(pipeline, outputs)``.
    """
    p = Pipeline(cfg, clock_ns=clock_ns)
    p.defer_rows = defer
    for k in keys or ():
        p.registry.id(*k)
    outs = []
    for rows in batches:
        t = np.array([r[0] for r in rows], np.int64)
        s = np.array([p.registry.id(*r[1]) for r in rows], np.int32)
        v = np.array([r[2] for r in rows], np.float64)
        outs.append(p.process(Batch(t, s, v)))
    if finalize:
        outs.append(p.finalize())
    return p, outs


def frames(outs, name: str) -> pl.DataFrame | None:
    dfs = [getattr(o, name) for o in outs if getattr(o, name) is not None]
    return pl.concat(dfs, how="diagonal_relaxed") if dfs else None


def kpi_sorted(outs) -> pl.DataFrame:
    df = frames(outs, "kpi")
    assert df is not None, "no kpi rows at all"
    return df.sort("site", "window", "time")


@dataclass
class Rig:
    """Arrays ``energy.integrate`` needs for a handful of series on one site."""

    kind: list
    register_max: list = field(default_factory=list)
    jitter: list = field(default_factory=list)
    max_gap_ns: list = field(default_factory=list)
    max_kw: list = field(default_factory=list)
    base_ns: int = 60 * NS
    b0: int = 0
    width: int = 64

    def __post_init__(self):
        n = len(self.kind)
        self.kind = np.asarray(self.kind, np.int8)
        self.register_max = np.asarray(self.register_max or [1e12] * n, np.float64)
        self.jitter = np.asarray(self.jitter or [0.0] * n, np.float64)
        self.max_gap_ns = np.asarray(self.max_gap_ns or [60 * NS] * n, np.int64)
        self.max_kw = np.asarray(self.max_kw or [math.inf] * n, np.float64)
        self.last_t = np.full(n, en.NO_TIME, np.int64)
        self.last_v = np.zeros(n)
        self.spike_run = np.zeros(n, np.int64)
        self.acc_e = np.zeros((n, self.width))
        self.acc_cov = np.zeros((n, self.width))
        self.acc_sum = np.zeros((n, self.width))
        self.acc_n = np.zeros((n, self.width), np.int64)
        self.events: list[tuple[int, int, float]] = []
        self.offset = 0

    def feed(self, time_ns, series, value):
        """Integrate one call's readings; events get indices into all readings fed so far."""
        time_ns = np.asarray(time_ns, np.int64)
        series = np.asarray(series, np.int32)
        value = np.asarray(value, np.float64)
        n = len(time_ns)
        # the documented room (two events a reading: a reset or rollover after a gap) as
        # views into larger buffers, so a write past it is caught instead of corrupting memory
        bufs = [np.full(2 * n + 2, -7, dt) for dt in (np.int64, np.int8, np.float64)]
        ev_idx, ev_code, ev_val = (b[: 2 * n] for b in bufs)
        k = en.integrate(time_ns, series, value, self.kind, self.register_max, self.jitter,
                         self.max_gap_ns, self.max_kw, np.zeros(len(self.kind), np.int32),
                         np.array([self.b0], np.int64), self.base_ns, self.last_t, self.last_v,
                         self.spike_run, self.acc_e, self.acc_cov, self.acc_sum, self.acc_n,
                         ev_idx, ev_code, ev_val)
        assert k <= 2 * n, "more events than the documented 2 * len(time_ns)"
        assert (bufs[0][2 * n:] == -7).all(), "integrate wrote past 2 * len(time_ns)"
        self.events += [(int(ev_idx[j]) + self.offset, int(ev_code[j]), float(ev_val[j]))
                        for j in range(k)]
        self.offset += n
        return self

    def params(self):
        from tests import naive

        return {s: naive.SeriesParams(int(self.kind[s]), float(self.register_max[s]),
                                      float(self.jitter[s]), int(self.max_gap_ns[s]),
                                      float(self.max_kw[s]))
                for s in range(len(self.kind))}

    def expected(self, buckets) -> dict[str, np.ndarray]:
        """The naive ``Buckets`` laid out like the rig's accumulators (slot = bucket - b0)."""
        exp = {name: np.zeros_like(getattr(self, name))
               for name in ("acc_e", "acc_cov", "acc_sum", "acc_n")}
        for name, src in (("acc_e", buckets.energy), ("acc_cov", buckets.covered),
                          ("acc_sum", buckets.ssum), ("acc_n", buckets.scount)):
            for (s, b), val in src.items():
                exp[name][s, b - self.b0] += val
        return exp

    def check(self, buckets, rel=1e-9) -> None:
        """Assert the accumulators and events equal the naive reference's."""
        exp = self.expected(buckets)
        for name, want in exp.items():
            got = getattr(self, name)
            finite = want[np.isfinite(want)]
            atol = rel * (1.0 + (np.abs(finite).max() if finite.size else 0.0))
            np.testing.assert_allclose(got, want, rtol=rel, atol=atol, equal_nan=True,
                                       err_msg=name)
        assert [(i, c) for i, c, _ in self.events] == [(i, c) for i, c, _ in buckets.events]
        np.testing.assert_allclose([v for *_, v in self.events],
                                   [v for *_, v in buckets.events], rtol=rel, equal_nan=True)


# --------------------------------------------------------------------------- end to end

_NS_UNIT = {"s": NS, "m": 60 * NS, "h": 3600 * NS}


def meter_rules(specs: dict[str, dict]):
    """``{device: {role, kind, ...}}`` -> (config meter rules, naive meters, series keys).

    One series per device, point ``v``; ``max_gap`` in seconds.
    """
    from tests import naive

    rules, meters, keys = [], {}, []
    for dev, sp in specs.items():
        rule = {"device": dev, "point": "v", "kind": sp["kind"], "role": sp["role"]}
        if sp["kind"] != "sensor":
            rule["max_gap"] = f"{sp.get('max_gap', 60)}s"
            rule["max_kw"] = sp.get("max_kw", 1e6)
        for k in ("register_max", "jitter_kwh"):
            if k in sp:
                rule[k] = sp[k]
        rules.append(rule)
        meters[dev] = naive.Meter(sp["role"], sp["kind"], sp.get("register_max", 1e12),
                                  sp.get("jitter_kwh", 0.0), int(sp.get("max_gap", 60) * NS),
                                  sp.get("max_kw", 1e6) if sp["kind"] != "sensor" else math.inf,
                                  signed=sp["role"] == "battery")
        keys.append(("s1", dev, "v"))
    return rules, meters, keys


def assert_matches_naive(kpi: pl.DataFrame, want: dict, rel: float = 1e-9) -> None:
    """Every kpi row equals the naive reference row of the same (window, start)."""
    starts = kpi["time"].dt.epoch("ns").to_list()
    got = {(r["window"], t): r for r, t in zip(kpi.iter_rows(named=True), starts, strict=True)}
    assert len(got) == kpi.height, "a (window, start) emitted twice"
    assert sorted(got) == sorted(want), (sorted(set(got) ^ set(want)))
    for key, w in want.items():
        g = got[key]
        scale = 1.0 + max((abs(v) for v in w.values() if isinstance(v, float)
                           and math.isfinite(v)), default=0.0)
        for col, wv in w.items():
            if col.startswith("_"):
                continue
            gv = g[col]
            if wv is None:
                assert gv is None, (key, col, gv)
            elif isinstance(wv, int) and not isinstance(wv, bool):
                assert gv == wv, (key, col, gv, wv)
            else:
                assert gv is not None, (key, col, wv)
                assert math.isclose(gv, wv, rel_tol=rel, abs_tol=rel * scale), (key, col, gv, wv)
