"""The consume service's logic against an in-memory broker (no network).

Covers: rows equal a replay, the checkpoint order (sinks flushed -> state written -> offsets
committed), restore from the state topic in a new process, pausing on sink backpressure
without committing, quiet feeds closing windows, dead letters, and the wire helpers.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest

from pueflow.config.load import parse_config
from pueflow.connectors import kafka as kc
from pueflow.connectors import kafka_state as ks
from pueflow.exceptions import ConfigError, SinkBackpressure, StateError
from pueflow.modes.consume.records import _fold, _kind
from pueflow.modes.consume.service import ConsumeService
from pueflow.modes.produce import encode_keyed
from pueflow.pipeline.core import Pipeline
from pueflow.schema.batch import Batch
from tests.unit import fake_kafka

ROOT = Path(__file__).resolve().parents[3]
NS = 10**9
T0 = 1_714_564_800 * NS  # 2024-05-01T12:00:00Z


def config(idle: str = "60s", sites=("s-a", "s-b")) -> object:
    meters = [
        {"device": "incomer-*", "point": "energy_kwh", "kind": "register", "role": "facility"},
        {"device": "pdu-*", "point": "power_kw", "kind": "power", "role": "it"},
    ]
    return parse_config({
        "pipeline": {"windows": ["1m", "15m"], "grace": "10s", "idle_timeout": idle,
                     "checkpoint_interval": "1h", "checkpoint_records": 50},
        "sites": [{"id": s, "jurisdiction": "MA", "latitude": 35.0, "longitude": -5.0,
                   "it_capacity_kw": 5000, "meters": meters} for s in sites],
        "kafka": {"topics": ["tel"], "group_id": "g", "timestamp_unit": "ms",
                  "dlq_topic": "dlq", "state_topic": "state", "max_poll_records": 40},
    })


def telemetry(sites=("s-a", "s-b"), minutes=20, step_s=10) -> pl.DataFrame:
    n = minutes * 60 // step_s
    t = T0 + np.arange(n, dtype=np.int64) * step_s * NS
    parts = []
    for k, s in enumerate(sites):
        pdu = 1000.0 + 10 * np.sin(np.arange(n) / 7 + k)
        energy = 5_000.0 + np.cumsum(np.full(n, 1300.0 * step_s / 3600))
        for dev, point, v in (("pdu-1", "power_kw", pdu), ("incomer-1", "energy_kwh", energy)):
            parts.append(pl.DataFrame({"time": t, "site": s, "device": dev, "point": point,
                                       "value": np.round(v, 3)}))
    return (pl.concat(parts).with_columns(pl.col("time").cast(pl.Datetime("ns", "UTC")))
            .sort("time", "site", "device"))


def replay(cfg, df: pl.DataFrame) -> pl.DataFrame:
    p = Pipeline(cfg, clock_ns=lambda: T0 + 10 * 86400 * NS)
    ser = np.array([p.registry.id(s, d, q) for s, d, q in
                    zip(df["site"], df["device"], df["point"], strict=True)], np.int32)
    outs = [p.process(Batch(df["time"].dt.epoch("ns").to_numpy(), ser, df["value"].to_numpy())),
            p.finalize()]
    return pl.concat([o.kpi for o in outs if o.kpi is not None], how="diagonal_relaxed")


class MemorySinks:
    """A SinkSet stand-in: keeps KPI rows by identity; can refuse to flush."""

    def __init__(self, events: list, fail_flushes: int = 0):
        self.events = events
        self.fail_flushes = fail_flushes
        self.buffer: list[pl.DataFrame] = []
        self.rows: dict[tuple, dict] = {}
        self.writes = 0
        self.pairs: list = []

    def write(self, out) -> int:
        n = 0
        if out.kpi is not None:
            self.buffer.append(out.kpi)
            n = out.kpi.height
        return n

    def flush(self) -> None:
        if self.fail_flushes > 0:
            self.fail_flushes -= 1
            raise SinkBackpressure("store says 503", retry_after=0.05)
        for df in self.buffer:
            for r in df.iter_rows(named=True):
                self.rows[(r["site"], r["window"], r["time"])] = r
                self.writes += 1
        self.buffer.clear()
        self.events.append(("flush",))

    def close(self) -> None:
        pass


@pytest.fixture
def broker(monkeypatch):
    b = fake_kafka.FakeBroker()
    b.create("tel", 2)
    fake_kafka.install(monkeypatch, b)
    return b


def publish(broker, df: pl.DataFrame) -> int:
    n = 0
    for key, payload in encode_keyed(df, "json", timestamp_unit="ms", per_message=1):
        broker.append("tel", payload, key)
        n += 1
    return n


def service(cfg, sinks, **kw) -> ConsumeService:
    svc = ConsumeService(cfg, sinks=sinks, **kw)
    svc.pipeline.clock_ns = lambda: T0 + 10 * 86400 * NS
    svc._new_pipeline_orig = svc._new_pipeline

    def fresh():
        p = svc._new_pipeline_orig()
        p.clock_ns = lambda: T0 + 10 * 86400 * NS
        return p

    svc._new_pipeline = fresh
    return svc


def assert_rows_match(sinks: MemorySinks, want: pl.DataFrame) -> None:
    exp = {(r["site"], r["window"], r["time"]): r for r in want.iter_rows(named=True)}
    assert sinks.rows, "no rows written"
    for key, row in sinks.rows.items():
        assert key in exp, key
        for col, v in exp[key].items():
            assert row[col] == v or (v != v and row[col] != row[col]), (key, col, row[col], v)


# --------------------------------------------------------------------------- the loop


def test_rows_equal_replay_and_checkpoints_flush_before_state_before_commit(broker):
    cfg = config()
    df = telemetry()
    n = publish(broker, df)
    sinks = MemorySinks(broker.events)
    svc = service(cfg, sinks)
    stats = svc.run(max_records=n)
    assert stats.records == n
    assert stats.samples == df.height
    assert stats.dlq == 0
    assert_rows_match(sinks, replay(cfg, df))
    # all 1m windows that data closed (every one ending before max_t - grace) are there
    assert len([k for k in sinks.rows if k[1] == "1m"]) >= 2 * (20 - 1)
    # order inside every checkpoint: flush, then state records, then the commit
    seq = [e[0] if e[0] != "produce" else e[1] for e in broker.events]
    commits = [i for i, e in enumerate(seq) if e == "commit"]
    assert len(commits) >= 3
    for i in commits:
        before = seq[:i]
        last_flush = max(j for j, e in enumerate(before) if e == "flush")
        last_state = max(j for j, e in enumerate(before) if e == "state")
        assert last_flush < last_state < i
    # each state record names the offset it belongs to, and that offset was committed
    recs = [ks.StateRecord.decode(r.value) for tp, rs in broker.log.items()
            if tp.topic == "state" for r in rs]
    last = {}
    for r in recs:
        last[(r.topic, r.partition)] = r.offset
    assert {(tp.topic, tp.partition): o for tp, o in broker.committed["g"].items()} == last


def test_a_new_process_restores_state_and_continues_exactly(broker):
    cfg = config()
    df = telemetry()
    n = publish(broker, df)
    sinks = MemorySinks(broker.events)
    first = service(cfg, sinks)
    first.run(max_records=n // 3)
    second = service(cfg, sinks)
    stats = second.run(max_records=n - n // 3)
    assert stats.restores >= 1
    assert_rows_match(sinks, replay(cfg, df))
    assert len([k for k in sinks.rows if k[1] == "1m"]) >= 2 * (20 - 1)


def test_backpressure_pauses_input_and_commits_nothing_until_the_sink_recovers(broker):
    cfg = config()
    df = telemetry()
    n = publish(broker, df)
    sinks = MemorySinks(broker.events, fail_flushes=4)
    svc = service(cfg, sinks)
    stop = threading.Event()
    paused_seen = []

    real_step = svc._step

    def step(now):
        if svc.paused:
            paused_seen.append((set(svc.consumer.paused), dict(broker.committed.get("g", {}))))
        real_step(now)
        if svc.stats.records >= n and not svc.paused and sinks.fail_flushes == 0:
            stop.set()

    svc._step = step
    stats = svc.run(stop_event=stop, max_seconds=30)
    assert stats.backpressure_events >= 1
    assert paused_seen, "never paused"
    assert all(p == set(svc.consumer.assigned) or not svc.consumer.assigned
               for p, _ in paused_seen[:1])
    assert all(c == paused_seen[0][1] for _, c in paused_seen), "committed while paused"
    assert_rows_match(sinks, replay(cfg, df))


def test_a_quiet_feed_closes_its_windows_after_the_idle_timeout(broker):
    cfg = config(idle="5s")
    df = telemetry(minutes=5)
    n = publish(broker, df)
    sinks = MemorySinks(broker.events)
    clock = {"t": 0.0}
    svc = service(cfg, sinks, idle_clock=lambda: clock["t"])
    stop = threading.Event()
    real_step = svc._step
    steps = {"n": 0}

    def step(now):
        real_step(now)
        if svc.stats.records >= n:
            steps["n"] += 1
            clock["t"] += 60.0  # a quiet minute per loop once everything is read (a register
            # can still spread energy back over its 15 min max_gap, so it takes a while)
            if steps["n"] > 60:
                stop.set()

    svc._step = step
    svc.run(stop_event=stop, max_seconds=60)
    assert svc.stats.records == n
    # the last minute of data closed though no later reading arrived
    last = df["time"].max().replace(second=0, microsecond=0)
    assert all((s, "1m", last) in sinks.rows for s in ("s-a", "s-b"))
    # windows after the data are empty: the live service emits them as time passes, a
    # replay does not (it stops at the data); every window with data equals the replay
    want = replay(cfg, df)
    data_rows = {k: r for k, r in sinks.rows.items() if k[2] <= last}
    sinks.rows = data_rows
    assert_rows_match(sinks, want)


def test_a_feed_that_is_behind_or_paused_is_not_quiet(broker):
    cfg = config(idle="5s")
    df = telemetry(minutes=5)
    publish(broker, df)
    clock = {"t": 0.0}
    svc = service(cfg, MemorySinks(broker.events), idle_clock=lambda: clock["t"])
    svc.consumer.subscribe(["tel"], None)
    svc._on_assigned({fake_kafka.TopicPartition("tel", 0), fake_kafka.TopicPartition("tel", 1)})
    svc.consumer.listener = None
    records = svc.consumer.poll(max_records=40)  # far from the end of the partitions
    svc._handle(records, time.monotonic())
    wm = svc.pipeline.site_wm.copy()
    for _ in range(20):
        clock["t"] += 100.0
        svc._idle(clock["t"])
    assert (svc.pipeline.site_wm == wm).all(), "a backlog was taken for a quiet feed"


def test_bad_records_go_to_the_dead_letter_topic_with_reason_and_source(broker):
    cfg = config()
    df = telemetry(minutes=3)
    publish(broker, df)
    bad = [b"{not json", orjson.dumps({"name": "t", "tags": {"site": "s-a", "device": "x-1"},
                                       "fields": {"power_kw": 1.0}, "timestamp": T0 // 10**6}),
           orjson.dumps({"name": "t", "tags": {"site": "s-a", "device": "pdu-1"},
                         "fields": {"power_kw": 5.0}, "timestamp": (T0 - 86400 * NS) // 10**6}),
           None, b"x" * 3000]
    at = [broker.append("tel", v, b"s-a") for v in bad]
    sinks = MemorySinks(broker.events)
    svc = ConsumeService(cfg, sinks=sinks, max_message_bytes=2000)
    svc._new_pipeline = lambda: Pipeline(cfg, run="", clock_ns=lambda: T0 + 86400 * NS)
    total = sum(len(v) for k, v in broker.log.items() if k.topic == "tel")
    svc.run(max_records=total)
    dead = broker.log[fake_kafka.TopicPartition("dlq", 0)]
    assert len(dead) == len(bad)
    by_offset = {int(dict(r.headers)["source_offset"]): r for r in dead}
    for rec, raw in zip(at, bad, strict=True):
        d = by_offset[rec.offset]
        h = {k: v.decode() for k, v in d.headers}
        assert h["source_topic"] == "tel"
        assert int(h["source_partition"]) == rec.partition
        assert d.value == (raw or b"")[:2000]
    reasons = [dict(by_offset[r.offset].headers)["reason"].decode() for r in at]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1].startswith("unknown_series")
    assert reasons[2].startswith("late")
    assert reasons[3].startswith("empty record")
    assert "exceeds max_message_bytes" in reasons[4]


# --------------------------------------------------------------------------- pieces


def test_state_record_round_trip_and_corruption():
    rec = ks.StateRecord("tel", 3, 1234, ["s-a"], b"\x00" * 10_000 + b"state")
    value = rec.encode("g")
    assert len(value) < 1000  # compressed
    back = ks.StateRecord.decode(value)
    assert (back.topic, back.partition, back.offset, back.sites, back.state) == (
        "tel", 3, 1234, ["s-a"], rec.state)
    with pytest.raises(StateError, match="corrupt"):
        ks.StateRecord.decode(value[:-5])


def test_security_options():
    base = {"sites": config().model_dump()["sites"]}

    def kcfg(**k):
        return parse_config({**base, "kafka": k}).kafka

    assert kc.security_options(kcfg(), {}) == {"security_protocol": "PLAINTEXT"}
    env = {"U": "alice", "P": "s3cret"}
    o = kc.security_options(kcfg(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                                 sasl_username_env="U", sasl_password_env="P"), env)
    assert o["sasl_mechanism"] == "SCRAM-SHA-512"
    assert o["sasl_plain_username"] == "alice"
    assert o["sasl_plain_password"] == "s3cret"
    assert o["ssl_check_hostname"] is True
    with pytest.raises(ConfigError) as ei:
        kc.security_options(kcfg(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                                 sasl_username_env="U", sasl_password_env="NOPE"), env)
    assert "NOPE" in str(ei.value)
    assert "s3cret" not in str(ei.value)
    with pytest.raises(ConfigError, match="sasl_mechanism"):
        kc.security_options(kcfg(security_protocol="SASL_SSL"), env)
    with pytest.raises(ConfigError, match="not SASL"):
        kc.security_options(kcfg(sasl_mechanism="PLAIN"), env)
    with pytest.raises(ConfigError, match="file not found"):
        kc.security_options(kcfg(security_protocol="SSL", ssl_cafile="/no/such.pem"), env)


def test_dead_letters_resend_failures_and_raise_backpressure():
    b = fake_kafka.FakeBroker()
    dl = kc.DeadLetters(fake_kafka.FakeProducer(b), "dlq", max_bytes=10)
    b.fail_sends = 1
    dl.send(b"0123456789abc", "bad", "tel", 1, 7, key=b"k")
    with pytest.raises(SinkBackpressure):
        dl.flush()
    dl.flush()  # the re-send succeeded
    (rec,) = b.log[fake_kafka.TopicPartition("dlq", 0)]
    h = dict(rec.headers)
    assert rec.value == b"0123456789"
    assert h["truncated"] == b"13"
    assert h["reason"] == b"bad"
    assert h["source_offset"] == b"7"


def test_kafka_sink_messages_and_retry():
    from pueflow.config.models import Sink
    from pueflow.connectors.kafka_sink import KafkaSink, to_messages
    from pueflow.connectors.wire import decode_json
    from pueflow.schema.registry import Registry

    df = pl.DataFrame({"time": [T0, T0 + 60 * NS], "site": ["s-a", "s-b"], "asset": ["bess", ""],
                       "run": ["", ""], "battery_kw": [100.0, None],
                       "grid_import_kw": [5.0, float("nan")]}).with_columns(
        pl.col("time").cast(pl.Datetime("ns", "UTC")))
    msgs = to_messages("setpoint", df)
    assert [k for k, _ in msgs] == [b"s-a"]  # the second row has no finite field
    doc = orjson.loads(msgs[0][1])
    assert doc == {"name": "setpoint", "tags": {"site": "s-a", "asset": "bess"},
                   "fields": {"battery_kw": 100.0, "grid_import_kw": 5.0}, "timestamp": T0}
    cfg = config()
    d = decode_json([msgs[0][1]], Registry(cfg), "ns")
    assert d.errors == []
    assert len(d.batch) == 2
    b = fake_kafka.FakeBroker()
    sink = KafkaSink(Sink(name="k", type="kafka", topic="sp", jurisdiction="MA"), cfg.kafka,
                     producer=fake_kafka.FakeProducer(b))
    b.fail_sends = 1
    sink.write("setpoint", df)
    with pytest.raises(SinkBackpressure):
        sink.flush()
    sink.flush()
    assert len(b.log[fake_kafka.TopicPartition("sp", 0)]) == 1
    assert sink.rows_written == 1


def test_encode_keyed_keys_by_site_and_round_trips():
    from pueflow.connectors.wire import decode_json
    from pueflow.schema.registry import Registry

    df = telemetry(minutes=2)
    pairs = list(encode_keyed(df, "json", timestamp_unit="ms", per_message=3))
    reg = Registry(config())
    for key, payload in pairs:
        d = decode_json([payload], reg, "ms")
        assert not d.errors
        assert {reg.keys[s][0] for s in d.batch.series.tolist()} == {key.decode()}
    d = decode_json([p for _, p in pairs], reg, "ms")
    assert len(d.batch) == df.height


def test_reason_helpers():
    assert _kind("late: s/d/p at 5 ns") == "late"
    assert _kind("invalid JSON at char 3") == "decode"
    assert _fold([str(i) for i in range(30)], 5)[-1] == "... and 25 more"


def test_health_and_metrics_endpoint(broker):
    from tests.integration.conftest import http_get

    cfg = config()
    svc = ConsumeService(cfg, sinks=MemorySinks([]), metrics_port=0)
    try:
        port = svc._http.server_address[1]
        status, body = http_get(f"http://127.0.0.1:{port}/health")
        assert status == 200
        assert orjson.loads(body)["state"] == "starting"
        svc.health.last_beat = time.monotonic() - 120
        status, _ = http_get(f"http://127.0.0.1:{port}/health")
        assert status == 503
        status, body = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert b"pueflow_records_in" in body
    finally:
        svc.close_http()


def test_a_failure_mid_poll_checkpoints_nothing_after_it(broker):
    cfg = config()
    df = telemetry()
    n = publish(broker, df)
    sinks = MemorySinks(broker.events)
    svc = service(cfg, sinks)
    done: dict = {}
    calls = {"n": 0}
    real_handle = svc._handle

    def handle(records, now):
        calls["n"] += 1
        if calls["n"] == 6:
            svc.pipeline.process = lambda batch: (_ for _ in ()).throw(RuntimeError("bug"))
        real_handle(records, now)
        for tp, rs in records.items():
            done[tp] = rs[-1].offset + 1

    svc._handle = handle
    with pytest.raises(RuntimeError, match="bug"):
        svc.run(max_records=n)
    committed = broker.committed.get("g", {})
    assert committed, "checkpoints before the failure should stand"
    assert all(off <= done.get(tp, 0) for tp, off in committed.items())
    states = [ks.StateRecord.decode(r.value) for tp, rs in broker.log.items()
              if tp.topic == "state" for r in rs]
    assert all(s.offset <= done.get(fake_kafka.TopicPartition(s.topic, s.partition), 0)
               for s in states)
    assert svc.health.error is not None
