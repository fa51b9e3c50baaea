"""``produce`` (a telemetry file into a topic, either wire format, keyed by site, paced) and
the Kafka sink, against the real broker."""

from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest

from pueflow.connectors.kafka import ensure_topics
from pueflow.connectors.telemetry_writer import write_telemetry
from pueflow.connectors.wire import decode_json, decode_line
from pueflow.modes.produce import run_produce
from pueflow.schema.registry import Registry
from tests.integration.helpers import make_config, recent_start, site_ids, telemetry

pytestmark = [pytest.mark.integration]


def read_topic(bootstrap: str, topic: str, want: int, timeout_s: float = 30) -> list:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=300).values():
            got.extend(recs)
    c.close()
    return got


@pytest.mark.parametrize(("fmt", "ext"), [("json", "parquet"), ("line", "jsonl")])
def test_produce_publishes_every_reading_keyed_by_site(broker, names, tmp_path, fmt, ext):
    cfg = make_config(tmp_path / "c.toml", bootstrap=broker.bootstrap, names=names, vm_url=None,
                      n_sites=2)
    ensure_topics(cfg.kafka, {names.topic: (2, {})})
    df = telemetry(site_ids(2), recent_start(3), 5)
    path = write_telemetry(df, tmp_path / f"t.{ext}", timestamp_unit="ms") if ext == "jsonl" \
        else write_telemetry(df, tmp_path / f"t.{ext}")
    if ext == "jsonl":
        cfg.kafka.timestamp_unit = "ms"
    st = run_produce(cfg, path, fmt=fmt, per_message=3)
    assert st.readings == df.height
    recs = read_topic(broker.bootstrap, names.topic, st.messages)
    assert len(recs) == st.messages
    reg = Registry(cfg)
    dec = (decode_json([r.value for r in recs], reg, cfg.kafka.timestamp_unit) if fmt == "json"
           else decode_line([r.value for r in recs], reg))
    assert not dec.errors
    keys = reg.keys
    got = pl.DataFrame({
        "time": dec.batch.time_ns, "site": [keys[s][0] for s in dec.batch.series.tolist()],
        "device": [keys[s][1] for s in dec.batch.series.tolist()],
        "point": [keys[s][2] for s in dec.batch.series.tolist()], "value": dec.batch.value})
    want = df.with_columns(pl.col("time").dt.epoch("ns"))
    cols = ["time", "site", "device", "point"]
    assert got.sort(cols).equals(want.sort(cols).select(got.columns))
    # keyed by site: a partition never mixes in a site that lives elsewhere
    site_part = {}
    for r, o in zip(recs, range(len(recs)), strict=True):
        del o
        assert site_part.setdefault(r.key, r.partition) == r.partition


def test_produce_rate_limit(broker, names, tmp_path):
    cfg = make_config(tmp_path / "c.toml", bootstrap=broker.bootstrap, names=names, vm_url=None,
                      n_sites=1)
    df = telemetry(site_ids(1), recent_start(3), 1, n_pdu=2, n_cdu=1)
    path = write_telemetry(df, tmp_path / "t.parquet")
    t0 = time.monotonic()
    st = run_produce(cfg, path, rate=100)
    assert st.messages > 30
    assert time.monotonic() - t0 >= (st.messages - 1) / 100 * 0.9


def test_kafka_sink_round_trip(broker, names, tmp_path):
    from pueflow.config.models import Sink
    from pueflow.connectors.kafka_sink import KafkaSink

    cfg = make_config(tmp_path / "c.toml", bootstrap=broker.bootstrap, names=names, vm_url=None)
    t = recent_start(1)
    sp = pl.DataFrame({"time": [t, t + 300 * 10**9], "site": ["tetouan-1", "tetouan-2"],
                       "asset": ["site", "site"], "run": ["", ""],
                       "battery_kw": [250.0, -125.5], "cooling_supply_c": [32.0, np.nan]}
                      ).with_columns(pl.col("time").cast(pl.Datetime("ns", "UTC")))
    sink = KafkaSink(Sink(name="sp", type="kafka", topic=names.topic + "-sp", jurisdiction="MA"),
                     cfg.kafka)
    sink.write("setpoint", sp)
    sink.flush()
    sink.close()
    recs = read_topic(broker.bootstrap, names.topic + "-sp", 2)
    assert sorted(r.key for r in recs) == [b"tetouan-1", b"tetouan-2"]
    import orjson

    docs = sorted((orjson.loads(r.value) for r in recs), key=lambda d: d["timestamp"])
    assert docs[0]["fields"] == {"battery_kw": 250.0, "cooling_supply_c": 32.0}
    assert docs[1]["fields"] == {"battery_kw": -125.5}
    assert docs[1]["timestamp"] == t + 300 * 10**9
