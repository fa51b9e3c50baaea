"""Faults: kill -9 mid-stream, a store outage, a second process taking over partitions.

Each test publishes telemetry at a steady rate while the service (a subprocess) consumes
it, injects the fault, and checks the store against a replay of the same data: every window
that must have closed is there, every value equals the replay, and a row written twice
(at-least-once) has the same value both times, so a store with InfluxDB's identity
semantics holds exactly the replay's rows.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from pueflow.connectors.kafka import ensure_topics
from pueflow.modes.produce import produce_frame
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


class Publisher(threading.Thread):
    """Produce a frame at ``rate`` messages/s in the background."""

    def __init__(self, cfg, df, rate: float):
        super().__init__(daemon=True)
        self.cfg, self.df, self.rate = cfg, df, rate
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            produce_frame(self.cfg, self.df, rate=self.rate)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def finish(self, timeout_s: float = 120) -> None:
        self.join(timeout_s)
        assert not self.is_alive(), "publisher did not finish"
        assert self.error is None, self.error


def scenario(broker, names, tmp_path, vm, *, n_sites=4, minutes=60, partitions=4):
    cfg = make_config(tmp_path / "c.toml", bootstrap=broker.bootstrap, names=names,
                      vm_url=vm.url, n_sites=n_sites, checkpoint_interval="1s")
    ensure_topics(cfg.kafka, {names.topic: (partitions, {})})
    df = telemetry(site_ids(n_sites), recent_start(8), minutes, seed=7)
    want = kpi_points(replay_kpi(cfg, df))
    max_t_ms = int(df["time"].max().timestamp() * 1000)
    return cfg, df, want, expected_closed(want, max_t_ms)


def check_store(vm, want, must) -> None:
    wait_for(lambda: must <= windows_of(store_points(vm.export())[0]), 120,
             what="every closable 1m window in the store")
    store, dups = store_points(vm.export())
    problems = compare(store, want)
    assert not problems, problems[:10]
    differing = [(k, v) for k, v in dups if len(set(v)) > 1]
    assert not differing, differing[:5]


def test_kill9_at_random_points_loses_and_duplicates_nothing(broker, vm, names, tmp_path,
                                                             service_factory):
    cfg, df, want, must = scenario(broker, names, tmp_path, vm)
    rng = random.Random(int(time.time()))
    pub = Publisher(cfg, df, rate=400)  # ~47 s of stream; a restart takes ~10 s (session timeout)
    svc = service_factory(tmp_path / "c.toml").start()
    pub.start()
    kills = 0
    for _ in range(3):
        wait_for(lambda s=svc: s.metrics().get("pueflow_assigned_partitions", 0) > 0, 60, 0.2,
                 "the service to own partitions")
        time.sleep(rng.uniform(0.5, 4.0))
        if not pub.is_alive():
            break
        svc.kill9()
        kills += 1
        svc = service_factory(tmp_path / "c.toml").start()
    pub.finish()
    assert kills >= 2, "the stream ended before the service could be killed mid-stream"
    check_store(vm, want, must)
    m = svc.metrics()
    assert m.get('pueflow_state_restores_total{source="state_topic"}', 0) >= 1, m
    assert svc.stop() == 0


def committed(cfg, group: str) -> dict:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=cfg.kafka.bootstrap_servers)
    try:
        offs = admin.list_group_offsets({group: None})[group]
    finally:
        admin.close()
    return {(tp.topic, tp.partition): om.offset for tp, om in offs.items()}


def test_store_outage_pauses_and_resumes_without_loss(broker, vm, names, tmp_path,
                                                      service_factory):
    cfg, df, want, must = scenario(broker, names, tmp_path, vm, n_sites=2, minutes=60,
                                   partitions=2)
    svc = service_factory(tmp_path / "c.toml").start()
    pub = Publisher(cfg, df, rate=500)
    pub.start()
    topic_key = f'pueflow_records_in_total{{topic="{names.topic}"}}'
    wait_for(lambda: svc.metrics().get(topic_key, 0) > 500, 60, 0.2, "consumption")
    vm.stop()
    wait_for(lambda: svc.metrics().get("pueflow_backpressure") == 1.0, 30, 0.2,
             "the service to pause")
    before = committed(cfg, names.group)
    read_before = svc.metrics().get(topic_key)
    time.sleep(8)
    m = svc.metrics()
    assert m.get("pueflow_backpressure") == 1.0
    assert m.get(topic_key) == read_before, "input was read while paused"
    assert committed(cfg, names.group) == before, "offsets committed while the store was down"
    assert sum(v for k, v in m.items() if k.startswith("pueflow_sink_retries_total")) > 0
    status, health = svc.health()
    assert status == 200
    assert health["paused"] is True
    assert health["fast_batches"] is True  # the numba record parser is in use (the default)
    vm.start()
    wait_for(lambda: svc.metrics().get("pueflow_backpressure") == 0.0, 60, 0.2, "resume")
    pub.finish()
    check_store(vm, want, must)
    after = committed(cfg, names.group)
    assert any(after[k] > before.get(k, -1) for k in after)
    assert svc.stop() == 0


def test_two_processes_split_partitions_and_take_over(broker, vm, names, tmp_path,
                                                       service_factory):
    cfg, df, want, must = scenario(broker, names, tmp_path, vm)
    a = service_factory(tmp_path / "c.toml").start()
    b = service_factory(tmp_path / "c.toml").start()

    def both_assigned():
        ma, mb = a.metrics(), b.metrics()
        return ma.get("pueflow_assigned_partitions", 0) > 0 and mb.get(
            "pueflow_assigned_partitions", 0) > 0 and ma["pueflow_assigned_partitions"] + mb[
            "pueflow_assigned_partitions"] == 4

    wait_for(both_assigned, 90, 0.5, "both processes to own partitions")
    pub = Publisher(cfg, df, rate=1200)
    pub.start()
    topic_key = f'pueflow_records_in_total{{topic="{names.topic}"}}'
    wait_for(lambda: a.metrics().get(topic_key, 0) > 0 and b.metrics().get(topic_key, 0) > 0,
             60, 0.2, "both to consume")
    time.sleep(2)
    a.kill9()
    wait_for(lambda: b.metrics().get("pueflow_assigned_partitions", 0) == 4, 60, 0.5,
             "the survivor to own every partition")
    pub.finish()
    check_store(vm, want, must)
    assert b.stop() == 0
