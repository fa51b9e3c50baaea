"""Dispatcher state in the checkpoint: a restored dispatcher publishes what an uninterrupted one does.

The reference is a dispatcher that never stopped, fed the same KPI rows; the restored one is
a fresh object in the same process given only the snapshot bytes (as a restarted consumer
is), and a fresh dispatcher without the snapshot shows the test can fail.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from pueflow.connectors import kafka_state as ks
from pueflow.exceptions import StateError
from pueflow.modes.consume.service import ConsumeService
from pueflow.modes.produce import encode_keyed
from pueflow.optimizers.assets import site_model
from pueflow.optimizers.dispatcher import Dispatcher
from pueflow.optimizers.synthetic import synthetic_history
from pueflow.optimizers.testing import kpi_rows, tiny_config, tiny_dispatch
from pueflow.pipeline.core import Pipeline
from pueflow.schema.batch import Batch
from tests.unit import fake_kafka

START = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
NS = 10**9


def _cfg(**extra):
    d = tiny_dispatch(**{"step": "15m", "horizon": "6h", "redispatch": "30m", "input_window": "15m",
                         "battery": {"energy_kwh": 400.0, "charge_kw": 100.0, "discharge_kw": 100.0},
                         "jobs": [{"name": "train", "max_kw": 200.0, "work_h": 6.0, "idle_kw": 20.0}],
                         "cooling": [{"name": "liquid"}],
                         "tariff": {"demand_charge_per_kw": 5.0}, **extra})
    return tiny_config([{"id": "a", "dispatch": d}, {"id": "b", "dispatch": d}])


def _rows(cfg, hours: float, site: str, seed: int) -> pl.DataFrame:
    h = synthetic_history(site_model(cfg.site(site)), START, hours / 24, seed=seed)
    rows = kpi_rows(h, site, "15m", run="r")
    n = rows.height
    # measured SoC and import feed the carried state: vary them so the state matters
    return rows.with_columns(pl.Series("battery_soc", 30 + 40 * np.abs(np.sin(np.arange(n) / 5))),
                             pl.Series("grid_import_kwh", 20 + 30 * np.abs(np.cos(np.arange(n) / 3))))


def _all_rows(cfg, hours=8.0) -> pl.DataFrame:
    return pl.concat([_rows(cfg, hours, "a", 1), _rows(cfg, hours, "b", 2)]).sort("time", "site")


def test_a_restored_dispatcher_publishes_the_uninterrupted_setpoints():
    cfg = _cfg()
    rows = _all_rows(cfg)
    cut = rows["time"].unique().sort()[rows["time"].n_unique() // 2]
    head, tail = rows.filter(pl.col("time") < cut), rows.filter(pl.col("time") >= cut)
    whole = Dispatcher(cfg)
    want_h, _ = whole.on_kpi(head)
    want_t, want_q = whole.on_kpi(tail)

    first = Dispatcher(cfg)
    got_h, _ = first.on_kpi(head)
    assert got_h.equals(want_h)
    blob = first.snapshot(["a", "b"])
    second = Dispatcher(cfg)
    assert sorted(second.restore(blob)) == ["a", "b"]
    got_t, got_q = second.on_kpi(tail)
    assert got_t.height > 0
    assert got_t.equals(want_t)
    assert got_q.equals(want_q)

    # without the snapshot the next dispatcher plans from an empty history and initial state
    fresh_t, _ = Dispatcher(cfg).on_kpi(tail)
    assert not fresh_t.equals(want_t)


def test_sites_restore_independently_into_other_processes():
    """Each partition's record holds its own sites; two records rebuild a dispatcher of both."""
    cfg = _cfg()
    rows = _all_rows(cfg)
    cut = rows["time"].unique().sort()[rows["time"].n_unique() // 2]
    head, tail = rows.filter(pl.col("time") < cut), rows.filter(pl.col("time") >= cut)
    whole = Dispatcher(cfg)
    whole.on_kpi(head)
    want, _ = whole.on_kpi(tail)
    d = Dispatcher(cfg)
    d.on_kpi(head)
    blobs = [d.snapshot(["a"]), d.snapshot(["b", "not-a-site"])]
    back = Dispatcher(cfg)
    assert [back.restore(b) for b in blobs] == [["a"], ["b"]]
    got, _ = back.on_kpi(tail)
    assert got.equals(want)
    assert Dispatcher(cfg).snapshot(["not-a-site"]) == b""
    assert Dispatcher(cfg).restore(b"") == []


def test_an_unreadable_or_mismatched_dispatch_state_is_a_clear_error():
    cfg = _cfg()
    d = Dispatcher(cfg)
    d.on_kpi(_rows(cfg, 3.0, "a", 1))
    blob = d.snapshot(["a"])
    with pytest.raises(StateError, match="unreadable"):
        Dispatcher(cfg).restore(blob[:-40])
    other = _cfg(jobs=[])  # the config lost the site's job: the saved job progress does not fit
    with pytest.raises(StateError, match="other jobs or cooling loops"):
        Dispatcher(other).restore(blob)


def test_state_record_carries_the_dispatch_bytes():
    rec = ks.StateRecord("tel", 1, 77, ["a"], b"core" * 100, dispatch=b"disp" * 50)
    back = ks.StateRecord.decode(rec.encode("g"))
    assert (back.state, back.dispatch, back.offset) == (rec.state, rec.dispatch, 77)
    plain = ks.StateRecord.decode(ks.StateRecord("tel", 1, 5, ["a"], b"core").encode("g"))
    assert (plain.state, plain.dispatch) == (b"core", b"")


# --------------------------------------------------------------------------- through the service

def _telemetry(hours: float) -> pl.DataFrame:
    """IT power of both sites at 60 s steps, varying so the plans differ from hour to hour."""
    t0 = int(START.timestamp()) * NS
    n = int(hours * 60)
    t = t0 + np.arange(n, dtype=np.int64) * 60 * NS
    parts = [pl.DataFrame({"time": t, "site": s, "device": "pdu-1", "point": "power_kw",
                           "value": np.round(300 + 150 * np.sin(np.arange(n) / (40 + 13 * k)), 3)})
             for k, s in enumerate(("a", "b"))]
    return (pl.concat(parts).with_columns(pl.col("time").cast(pl.Datetime("ns", "UTC")))
            .sort("time", "site"))


class SetpointSinks:
    """Keeps setpoint rows by (time, site, asset); the last write wins, as in an idempotent store."""

    def __init__(self):
        self.buffer: list[pl.DataFrame] = []
        self.rows: dict[tuple, dict] = {}
        self.pairs: list = []

    def write(self, out) -> int:
        if out.setpoint is not None and out.setpoint.height:
            self.buffer.append(out.setpoint)
            return out.setpoint.height
        return 0

    def flush(self) -> None:
        for df in self.buffer:
            for r in df.iter_rows(named=True):
                self.rows[(r["time"], r["site"], r["asset"])] = r
        self.buffer.clear()

    def close(self) -> None:
        pass


def _replayed_setpoints(cfg, df: pl.DataFrame) -> dict[tuple, dict]:
    p = Pipeline(cfg, dispatcher=Dispatcher(cfg), clock_ns=lambda: 4 * 10**18)
    ser = np.array([p.registry.id(s, d, q) for s, d, q in
                    zip(df["site"], df["device"], df["point"], strict=True)], np.int32)
    out = p.process(Batch(df["time"].dt.epoch("ns").to_numpy(), ser, df["value"].to_numpy()))
    return {(r["time"], r["site"], r["asset"]): r for r in out.setpoint.iter_rows(named=True)}


def test_a_restarted_consumer_publishes_the_setpoints_of_an_uninterrupted_run(monkeypatch):
    cfg = _cfg().model_copy(deep=True)
    cfg.kafka.topics, cfg.kafka.group_id = ["tel"], "g"
    cfg.kafka.timestamp_unit, cfg.kafka.max_poll_records = "ms", 40
    cfg.pipeline.checkpoint_records = 60
    broker = fake_kafka.FakeBroker()
    broker.create("tel", 2)
    fake_kafka.install(monkeypatch, broker)
    df = _telemetry(7.0)
    n = 0
    for key, payload in encode_keyed(df, "json", timestamp_unit="ms", per_message=1):
        broker.append("tel", payload, key)
        n += 1
    sinks = SetpointSinks()
    stats = []
    for share in (0.3, 0.35, 1.0):  # two restarts, each from the last state records
        svc = ConsumeService(cfg, sinks=sinks, dispatch="mpc")
        svc.pipeline.clock_ns = lambda: 4 * 10**18
        done = sum(broker.committed.get("g", {}).values())  # where the restart resumes
        stats.append(svc.run(max_records=min(int(share * n), n - done)))
    assert sum(s.restores for s in stats[1:]) >= 2
    want = _replayed_setpoints(cfg, df)
    assert len(want) > 20
    # the service holds back the last windows (no finalize): every row it wrote is the replay's
    assert len(sinks.rows) >= len(want) - 12
    for key, row in sinks.rows.items():
        assert row == want[key], key
