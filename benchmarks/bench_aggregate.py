"""Campus scale: samples/s of 1 vs 2 consume processes on one topic, and the aggregator's rows/s.

Starts its own Tansu broker and VictoriaMetrics on 127.0.0.1 (as ``bench_consume.py``),
publishes JSON rack snapshots of 4 sites over 4 partitions, then runs ``pueflow consume``
as 1 and as 2 subprocesses of one new group over the same topic: samples/s from the first
record read to the last (summed over the processes' ``/metrics``) and process CPU-seconds
per million readings. Then the aggregate stage in-process over a KPI topic of synthetic
site windows: rows in per second. On a 2-core machine shared with other work, the 2-process
ratio is bounded by the cores, not the design. Run: ``.venv/bin/python
benchmarks/bench_aggregate.py`` (``--quick`` for a smaller run).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_consume import (  # noqa: E402
    FIELDS,
    bench_config,
    publish,
    start_components,
    stop_components,
)
from pueflow.config.load import parse_config  # noqa: E402
from tests.integration.helpers import _toml  # noqa: E402

NS = 10**9
SITES = 4


def _records(port: int) -> float:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return 0.0
    key = b"pueflow_records_in_total{"
    return sum(float(ln.rsplit(b" ", 1)[1]) for ln in body.splitlines() if ln.startswith(key))


def consume_run(doc: dict, n_proc: int, messages: int, tmp: Path) -> tuple[float, float]:
    """Samples/s (first record to last, all processes) and CPU-seconds per million samples."""
    import psutil

    path = tmp / f"c{n_proc}.toml"
    path.write_text(_toml(doc))
    ports, procs = [], []
    for _ in range(n_proc):
        from benchmarks.bench_consume import free_port

        port = free_port()
        ports.append(port)
        procs.append(subprocess.Popen([sys.executable, "-m", "pueflow.cli", "consume", "--config", str(path),
                                       "--metrics-port", str(port), "--session-timeout-ms", "6000"],
                                      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    ps = [psutil.Process(p.pid) for p in procs]
    t_first = t_last = None
    cpu_first = 0.0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        n = sum(_records(p) for p in ports)
        if n and t_first is None:
            t_first, cpu_first, n_first = time.perf_counter(), sum(sum(p.cpu_times()[:2]) for p in ps), n
        if n >= messages:
            t_last = time.perf_counter()
            cpu = sum(sum(p.cpu_times()[:2]) for p in ps) - cpu_first
            break
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)
    if t_first is None or t_last is None:
        return float("nan"), float("nan")
    samples = (messages - n_first) * len(FIELDS)
    return samples / (t_last - t_first), cpu / samples * 1e6


def aggregate_run(bootstrap: str, tag: str, n_sites: int, minutes: int) -> tuple[float, int]:
    """Site windows read per second by the aggregate stage, and the fleet rows it wrote."""
    from kafka import KafkaProducer

    from pueflow.modes.aggregate.service import AggregateService

    topic = f"kpi-{tag}"
    doc = {"pipeline": {"windows": ["1m"], "checkpoint_interval": "10s"},
           "sites": [{"id": f"s{i}", "jurisdiction": "MA", "latitude": 35.0, "longitude": -5.0,
                      "it_capacity_kw": 1e4,
                      "meters": [{"device": "pdu-*", "point": "power_kw", "kind": "power", "role": "it"}]}
                     for i in range(n_sites)],
           "kafka": {"bootstrap_servers": [bootstrap], "kpi_topic": topic, "aggregate_group_id": f"a-{tag}",
                     "dlq_topic": f"dlq-{tag}", "state_topic": f"state-{tag}", "max_poll_records": 5000}}
    cfg = parse_config(doc)
    p = KafkaProducer(bootstrap_servers=[bootstrap], linger_ms=50, batch_size=1 << 20, acks=1)
    t0 = (time.time_ns() // NS - 6 * 3600) // 60 * 60 * NS
    n = 0
    for m in range(minutes):
        for i in range(n_sites):
            rec = {"window": "1m", "time": t0 + m * 60 * NS, "site": f"s{i}", "facility_kwh": 20.0 + i,
                   "it_kwh": 16.0, "renewable_kwh": 1.0, "co2_kg": 3.0, "water_l": 0.0, "run": ""}
            p.send(topic, key=f"s{i}".encode(), value=orjson.dumps(rec))
            n += 1
    p.flush()
    p.close()

    class Count:
        pairs: list = []
        rows = 0

        def write(self, out):
            self.rows += out.fleet.height
            return out.fleet.height

        def flush(self):
            pass

        def close(self):
            pass

    sink = Count()
    svc = AggregateService(cfg, sinks=sink)
    t_first = None
    orig = svc._handle

    def timed(records):
        nonlocal t_first
        if t_first is None:
            t_first = time.perf_counter()
        orig(records)

    svc._handle = timed
    svc.run(max_records=n, max_seconds=120)
    return (svc.records - 0) / (time.perf_counter() - t_first), sink.rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    racks, steps = (250, 30) if args.quick else (500, 40)
    tmp = Path(tempfile.mkdtemp(prefix="bench-agg-"))
    procs, bootstrap, vm_url = start_components(tmp)
    try:
        tag = uuid.uuid4().hex[:8]
        topic = f"bench-{tag}"
        n_msg, n_samples = publish(bootstrap, topic, SITES, racks, steps)
        print(f"published {n_msg:,} messages ({n_samples:,} samples) of {SITES} sites on 4 partitions")
        res = {}
        for k in (1, 2):
            doc = bench_config(bootstrap, vm_url, topic, SITES, f"{tag}-{k}")
            res[k] = consume_run(doc, k, n_msg, tmp)
            print(f"  {k} consume process(es): {res[k][0] / 1e3:,.0f} k samples/s, "
                  f"{res[k][1]:.2f} CPU-s per million samples")
        print(f"2 vs 1 processes: {res[2][0] / res[1][0]:.2f}x samples/s "
              f"(CPU-s per million: {res[2][1] / res[1][1]:.2f}x)")
        rate, rows = aggregate_run(bootstrap, tag, 50, 100 if args.quick else 300)
        print(f"aggregate stage: {rate / 1e3:,.1f} k site windows/s in, {rows:,} fleet rows written")
        per_proc = res[1][0]
        print(f"a 500 MW campus at 3 M readings/s needs {3e6 / per_proc:.1f} consume processes at the "
              f"1-process rate ({3e6 * res[1][1] / 1e6:.1f} CPU cores at its CPU cost)")
    finally:
        stop_components(procs, tmp)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
