"""The fast record-batch path against kafka-python's own parser, on a real broker.

Records go to the Tansu broker from plain and gzip producers (null values, null keys,
headers); a consumer with blocks and one without read them from the start, from inside a
batch and with a small ``max_poll_records``, and must see the same (partition, offset, key,
value) sequence; the consume service with ``fast_batches`` on and off must write the same
rows and dead letters.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import polars as pl
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pueflow.config.models import Sink
from pueflow.connectors import kafka_batches
from pueflow.connectors.kafka import ensure_topics
from pueflow.connectors.record_batches import RecordBlock
from pueflow.modes.consume.service import ConsumeService
from pueflow.modes.produce import encode_keyed
from tests.integration.helpers import make_config, recent_start, site_ids, telemetry

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def produce_mixed(bootstrap: str, topic: str, seed: int = 0) -> int:
    """Three rounds of messages (plain, gzip, plain) over 2 partitions; returns the count."""
    rng = random.Random(seed)
    n = 0
    for compression in (None, "gzip", None):
        p = KafkaProducer(bootstrap_servers=[bootstrap], compression_type=compression,
                          linger_ms=20, batch_size=1 << 16, metrics_enabled=False)
        for _ in range(300):
            key = None if rng.random() < 0.2 else f"k{rng.randrange(50)}".encode()
            value = None if rng.random() < 0.1 else rng.randbytes(rng.randrange(0, 120))
            if key is None and value is None:
                value = b""  # the producer refuses a record without both
            headers = [("h", b"v"), ("e", b"")] if rng.random() < 0.2 else []
            p.send(topic, key=key, value=value, headers=headers, partition=rng.randrange(2))
            n += 1
        p.flush()
        p.close()
    return n


def read_all(bootstrap: str, topic: str, fast: bool, start: dict[int, int], want: int,
             max_records: int = 500) -> tuple[list[tuple], tuple[int, int]]:
    """``want`` messages from ``start`` (partition -> offset); and the blocks and records seen.

    (Tansu's ListOffsets does not give the log end, so the count is given.)
    """
    c = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False,
                      metrics_enabled=False, fetch_max_wait_ms=50)
    if fast:
        assert kafka_batches.install(c)
    tps = [TopicPartition(topic, p) for p in sorted(start)]
    c.assign(tps)
    for tp in tps:
        c.seek(tp, start[tp.partition])
    out: list[tuple] = []
    blocks = records = 0
    deadline = time.monotonic() + 60
    try:
        while len(out) < want and time.monotonic() < deadline:
            got = c.poll(timeout_ms=500, max_records=max_records)
            polled = 0
            for tp, items in got.items():
                for it in items:
                    if isinstance(it, RecordBlock):
                        blocks += 1
                        polled += len(it)
                        out += [(tp.partition, int(it.records.offsets[i]), it.key(i), it.value(i))
                                for i in range(len(it))]
                    else:
                        polled += 1
                        records += 1
                        out.append((tp.partition, it.offset, it.key, it.value))
            assert polled <= max_records
        assert not c.poll(timeout_ms=300)  # nothing past the end
    finally:
        c.close()
    return out, (blocks, records)


def test_fast_path_reads_what_kafka_python_reads(broker, names, tmp_path):
    topic = names.topic
    cfg = make_config(tmp_path / "c.toml", bootstrap=broker.bootstrap, names=names, vm_url=None)
    ensure_topics(cfg.kafka, {topic: (2, {})})
    n = produce_mixed(broker.bootstrap, topic)
    start = {0: 0, 1: 0}
    lib, no_blocks = read_all(broker.bootstrap, topic, False, start, n)
    fast, blocks = read_all(broker.bootstrap, topic, True, start, n)
    assert len(lib) == n
    assert no_blocks == (0, n)
    assert blocks == (blocks[0], 0)  # plain and gzip batches alike came as blocks
    assert blocks[0] > 0
    assert fast == lib
    assert any(v is None for *_, v in lib)
    # from inside a batch, with a poll limit that cuts blocks
    mid = {p: 1 + max(o for q, o, *_ in lib if q == p) // 7 for p in (0, 1)}
    rest = [m for m in lib if m[1] >= mid[m[0]]]
    lib2, _ = read_all(broker.bootstrap, topic, False, mid, len(rest), max_records=13)
    fast2, blocks2 = read_all(broker.bootstrap, topic, True, mid, len(rest), max_records=13)
    assert blocks2[0] > 0
    assert fast2 == lib2
    assert sorted(fast2) == sorted(rest)


def _service_cfg(base, names, tag: str, out: Path, fast: bool):
    kafka = base.kafka.model_copy(update={"fast_batches": fast, "group_id": f"{names.group}-{tag}",
                                          "dlq_topic": f"{names.dlq}-{tag}",
                                          "state_topic": f"{names.state}-{tag}"})
    sink = Sink(name="pq", type="parquet", jurisdiction="MA", path=str(out))
    pipe = base.pipeline.model_copy(update={"idle_timeout": "1h"})  # no wall-clock effects
    return base.model_copy(update={"kafka": kafka, "sinks": [sink], "pipeline": pipe})


def _rows(out: Path) -> dict[str, pl.DataFrame]:
    frames = {}
    for d in sorted(out.glob("measurement=*")):
        df = pl.read_parquet(f"{d}/**/*.parquet", hive_partitioning=True)
        frames[d.name] = df.sort(df.columns)
    return frames


def _dead(bootstrap: str, topic: str) -> list[tuple]:
    c = KafkaConsumer(topic, bootstrap_servers=[bootstrap], auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=3000, metrics_enabled=False)
    try:
        return sorted((dict(m.headers)["source_partition"], int(dict(m.headers)["source_offset"]),
                       dict(m.headers)["reason"], m.key, m.value) for m in c)
    finally:
        c.close()


def test_service_rows_equal_with_fast_batches_on_and_off(broker, names, tmp_path):
    base = make_config(tmp_path / "c.toml", bootstrap=broker.bootstrap, names=names,
                       vm_url=None, n_sites=2)
    ensure_topics(base.kafka, {names.topic: (2, {})})
    df = telemetry(site_ids(2), recent_start(6), 30)
    msgs = list(encode_keyed(df, "json", timestamp_unit="ms", per_message=4))
    rng = random.Random(1)
    bad = [(b"tetouan-1", None), (b"tetouan-2", b"not json"), (None, b"{}"),
           (b"tetouan-1", b'{"name": "x", "tags": {"site": "tetouan-1"}, "fields": {"a": "s"}, '
                          b'"timestamp": 1}')]
    for b in bad:
        msgs.insert(rng.randrange(len(msgs)), b)
    half = len(msgs) // 2
    for compression, part in ((None, msgs[:half]), ("gzip", msgs[half:])):
        p = KafkaProducer(bootstrap_servers=[broker.bootstrap], compression_type=compression,
                          linger_ms=20, metrics_enabled=False)
        for key, value in part:
            p.send(names.topic, key=key, value=value)
        p.flush()
        p.close()

    results = {}
    for tag, fast in (("on", True), ("off", False)):
        cfg = _service_cfg(base, names, tag, tmp_path / tag, fast)
        svc = ConsumeService(cfg)
        assert svc.fast_batches is fast
        stats = svc.run(max_records=len(msgs), max_seconds=120)
        assert stats.records == len(msgs)
        results[tag] = (_rows(tmp_path / tag), stats.samples, stats.dlq,
                        _dead(broker.bootstrap, cfg.kafka.dlq_topic))
    on, off = results["on"], results["off"]
    assert on[0].keys() == off[0].keys()
    assert "measurement=kpi" in on[0]
    for m in on[0]:
        assert on[0][m].equals(off[0][m]), m
    assert on[1:] == off[1:]
    assert on[2] == len(bad)
    assert len(on[3]) == len(bad)
