"""Hostile input: thousands of bad messages interleaved with good ones.

Every bad message reaches the dead-letter topic with a reason and its source
topic/partition/offset and raw bytes; the service stays up; the good data's KPI rows equal
a replay of the good data alone.
"""

from __future__ import annotations

import random
import threading
import time

import orjson
import pytest

from pueflow.connectors.kafka import build_producer, ensure_topics
from pueflow.modes.consume.service import ConsumeService
from pueflow.modes.produce import encode_keyed
from tests.integration.helpers import (
    compare,
    kpi_points,
    make_config,
    recent_start,
    replay_kpi,
    site_ids,
    store_points,
    telemetry,
    wait_for,
    windows_of,
)
from tests.integration.test_consume import expected_closed

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MAX_BYTES = 100_000


def hostile_messages(rng: random.Random, sites: list[str], t0_ms: int, n: int
                     ) -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, payload, kind) of ``n`` messages, none of which holds a usable reading."""
    now_ms = int(time.time() * 1000)

    def metric(fields, ts, site=None, device="pdu-01", **extra):
        m = {"name": "telemetry", "tags": {"site": site or rng.choice(sites), "device": device},
             "fields": fields, "timestamp": ts}
        m.update(extra)
        return orjson.dumps(m)

    def good_ts():
        return t0_ms + rng.randrange(0, 30 * 60_000, 10_000)

    makers = {
        "malformed": lambda: rng.choice([
            b'{"name": "telemetry", "tags": {', b"not json at all", b"\xff\xfe\x00garbage",
            b"[1, 2,", b'{"metrics": [{"name": "x"}', b"",
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))]),
        "mistyped": lambda: rng.choice([
            metric({"power_kw": "six hundred"}, good_ts()),
            metric({"power_kw": True}, good_ts()),
            metric({"power_kw": None}, good_ts()),
            metric({"power_kw": [1, 2]}, good_ts()),
            metric({"power_kw": {"v": 1}}, good_ts()),
            metric({"power_kw": 600.0}, str(good_ts())),
            orjson.dumps({"name": "t", "tags": {"site": 7, "device": "pdu-01"},
                          "fields": {"power_kw": 1.0}, "timestamp": good_ts()}),
            orjson.dumps({"tags": {"device": "pdu-01"}, "fields": {"power_kw": 1.0},
                          "timestamp": good_ts()}),
            orjson.dumps({"metrics": "not a list"}),
            metric({}, good_ts()),
            metric({"power_kw": float("inf")}, good_ts()),
        ]),
        "nan": lambda: rng.choice([
            b'{"name":"telemetry","tags":{"site":"%s","device":"pdu-01"},"fields":{"power_kw":NaN},"timestamp":%d}'
            % (rng.choice(sites).encode(), good_ts()),
            b'{"name":"telemetry","tags":{"site":"%s","device":"pdu-02"},"fields":{"power_kw":1e400},"timestamp":%d}'
            % (rng.choice(sites).encode(), good_ts()),
            b'{"name":"telemetry","tags":{"site":"%s","device":"pdu-03"},"fields":{"power_kw":-Infinity},"timestamp":%d}'
            % (rng.choice(sites).encode(), good_ts()),
        ]),
        "future": lambda: metric({"power_kw": 600.0},
                                 rng.choice([now_ms + 400 * 86400_000, 7_258_118_400_000])),
        "out_of_range": lambda: b'{"name":"telemetry","tags":{"site":"%s","device":"pdu-01"},"fields":{"power_kw":600.0},"timestamp":1000000000000000000000000000000}' % rng.choice(sites).encode(),
        "unknown": lambda: rng.choice([
            metric({"power_kw": 600.0}, good_ts(), device=f"mystery-{rng.randrange(9)}"),
            metric({"power_kw": 600.0}, good_ts(), site="atlantis-1"),
            metric({"frobs": 1.0}, good_ts(), device="pdu-01"),
        ]),
        "late": lambda: metric({"power_kw": 600.0}, t0_ms - 2 * 86400_000),
        "invalid": lambda: metric({"power_kw": -50.0}, good_ts()),
        "spike": lambda: metric({"power_kw": 1e9}, good_ts()),
    }
    kinds = list(makers)
    out = []
    for _ in range(n):
        kind = rng.choice(kinds)
        payload = makers[kind]()
        # keyed like the collector keys: by the site the message names (else anything)
        try:
            key = orjson.loads(payload)["tags"]["site"].encode()
        except Exception:  # noqa: BLE001 - the message names no site
            key = rng.choice([*[s.encode() for s in sites], None])
        out.append((key, payload, kind))
    big = b'{"metrics": [' + b",".join([metric({"power_kw": 1.0}, good_ts())] * 2000) + b"]}"
    assert len(big) > MAX_BYTES
    out += [(sites[0].encode(), big, "oversized") for _ in range(3)]
    out += [(sites[1].encode(), None, "tombstone") for _ in range(3)]
    rng.shuffle(out)
    return out


def read_dlq(cfg, topic: str, want: int, timeout_s: float = 60) -> list:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=cfg.kafka.bootstrap_servers, enable_auto_commit=False,
                      auto_offset_reset="earliest", fetch_max_bytes=50 << 20)
    parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [0])]
    c.assign(parts)
    c.seek_to_beginning(*parts)
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            got.extend(recs)
    c.close()
    return got


def test_hostile_input_reaches_the_dlq_and_good_kpis_are_unaffected(broker, vm, names,
                                                                     tmp_path):
    sites = site_ids(2)
    cfg = make_config(tmp_path / "c.toml", bootstrap=broker.bootstrap, names=names,
                      vm_url=vm.url, n_sites=2)
    ensure_topics(cfg.kafka, {names.topic: (2, {})})
    t0 = recent_start(6)
    df = telemetry(sites, t0, 30, seed=3)
    want = kpi_points(replay_kpi(cfg, df))
    must = expected_closed(want, int(df["time"].max().timestamp() * 1000))

    rng = random.Random(42)
    good = list(encode_keyed(df, "json", timestamp_unit="ms"))
    bad = hostile_messages(rng, sites, t0 // 10**6, 3000)
    # bad messages only after each site's first readings, so 'late' is late
    head = len(good) // 10
    stream = [(k, v, None) for k, v in good[:head]]
    rest = [(k, v, None) for k, v in good[head:]] + bad
    rng.shuffle(rest)
    # keep the good messages in their original order among themselves
    it = iter(good[head:])
    stream += [(next(it) + (None,)) if kind is None else (k, v, kind) for k, v, kind in rest]

    producer = build_producer(cfg.kafka, max_request_size=4 << 20)
    futures = [(producer.send(names.topic, key=k, value=v), kind) for k, v, kind in stream]
    producer.flush()
    producer.close()
    bad_at = {(f.value.partition, f.value.offset): kind for f, kind in futures if kind}
    assert len(bad_at) == len(bad)

    svc = ConsumeService(cfg, max_message_bytes=MAX_BYTES)
    stop = threading.Event()
    thread = threading.Thread(target=svc.run, kwargs={"stop_event": stop}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: must <= windows_of(store_points(vm.export())[0]), 120,
                 what="every closable 1m window in the store")
        wait_for(lambda: svc.stats.dlq >= len(bad), 30, what="every bad message dead-lettered")
        assert thread.is_alive(), "the service died"
    finally:
        stop.set()
        thread.join(60)
    assert svc.health.error is None
    store, _ = store_points(vm.export())
    problems = compare(store, want)
    assert not problems, problems[:10]

    dead = read_dlq(cfg, names.dlq, len(bad))
    seen = {}
    for r in dead:
        h = {k: v.decode() for k, v in r.headers}
        assert h["source_topic"] == names.topic
        assert h["reason"], h
        seen[(int(h["source_partition"]), int(h["source_offset"]))] = (h, r.value)
    missing = set(bad_at) - set(seen)
    assert not missing, [bad_at[m] for m in list(missing)[:10]]
    extra = set(seen) - set(bad_at)
    assert not extra, [seen[e][0]["reason"] for e in list(extra)[:5]]
    kinds = {}
    for at, kind in bad_at.items():
        kinds.setdefault(kind, []).append(seen[at][0]["reason"])
    assert any("late" in r for r in kinds["late"])
    assert all("future" in r or "out of range" in r for r in kinds["future"] + kinds["out_of_range"])
    assert all("exceeds max_message_bytes" in r for r in kinds["oversized"])
    assert all("unknown_series" in r for r in kinds["unknown"]), kinds["unknown"][:3]
    # the raw bytes travel with the reason
    for at, kind in bad_at.items():
        h, raw = seen[at]
        if kind not in ("oversized", "tombstone"):
            assert raw is not None
