"""Consume end to end: telemetry -> Kafka -> service -> VictoriaMetrics equals a replay."""

from __future__ import annotations

import threading

import pytest

from pueflow.connectors.kafka import ensure_topics
from pueflow.modes.consume.service import ConsumeService
from pueflow.modes.produce import produce_frame
from tests.integration.conftest import http_get
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

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NS = 10**9


def expected_closed(want: dict, max_t_ms: int, grace_s: float = 30.0) -> set[tuple]:
    """1m windows that every run must have closed: those ending before max_t - grace."""
    return {w for w in windows_of(want)
            if w[1] == "1m" and w[2] + 60_000 <= max_t_ms - grace_s * 1000}


def run_in_thread(svc: ConsumeService) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    t = threading.Thread(target=svc.run, kwargs={"stop_event": stop}, daemon=True)
    t.start()
    return t, stop


@pytest.mark.parametrize("fmt", ["json", "line"])
def test_consume_rows_equal_replay(broker, vm, names, tmp_path, fmt):
    cfg = make_config(tmp_path / "c.toml", bootstrap=broker.bootstrap, names=names,
                      vm_url=vm.url, n_sites=2, fmt=fmt)
    ensure_topics(cfg.kafka, {names.topic: (2, {})})
    df = telemetry(site_ids(2), recent_start(6), 40)
    produce_frame(cfg, df, per_message=4 if fmt == "json" else 8)
    want = kpi_points(replay_kpi(cfg, df))
    max_t_ms = int(df["time"].max().timestamp() * 1000)
    must = expected_closed(want, max_t_ms)

    svc = ConsumeService(cfg, metrics_port=0)
    port = svc._http.server_address[1]
    thread, stop = run_in_thread(svc)
    try:
        wait_for(lambda: must <= windows_of(store_points(vm.export())[0]), 90,
                 what="every closable 1m window in the store")
        status, body = http_get(f"http://127.0.0.1:{port}/health")
        assert status == 200
        assert b'"running"' in body
        status, body = http_get(f"http://127.0.0.1:{port}/metrics")
        text = body.decode()
        for name in ("pueflow_records_in_total", "pueflow_rows_out_total",
                     "pueflow_window_close_latency_seconds_bucket", "pueflow_partition_lag",
                     "pueflow_dlq_records", "pueflow_sink_retries"):
            assert name in text, name
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    store, dups = store_points(vm.export())
    assert not compare(store, want), compare(store, want)[:10]
    assert all(len(set(v)) == 1 for _, v in dups), dups[:5]
    assert svc.stats.dlq == 0
    assert svc.stats.samples == df.height
    assert svc.stats.checkpoints >= 1
