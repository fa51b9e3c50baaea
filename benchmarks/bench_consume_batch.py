"""Consume end to end with many readings a message: Telegraf's batch JSON vs line protocol.

Starts its own Tansu broker and VictoriaMetrics on 127.0.0.1 and publishes the same
readings twice: as Telegraf's batch form (``{"metrics": [...]}``, 100 metrics of 10 fields a
message) and as line protocol (the same 100 metrics as 100 lines a message). One
:class:`ConsumeService` per topic (decode -> core -> sink -> checkpoints), rounds
alternated; samples/s are timed from 10 % of the topic to its last record, in wall and in
process CPU time. A bare kafka-python poll + ``orjson.loads`` loop over the JSON topic is
measured in the same run, for scale.

Targets (issue 12): the batch form >= 2 M samples/s in one process; line protocol within
10 % of JSON. Run: ``.venv/bin/python benchmarks/bench_consume_batch.py [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_consume import (  # noqa: E402
    FIELDS,
    NS,
    WARM,
    bench_config,
    service_run,
    start_components,
    stop_components,
)

PER_MESSAGE = 100


def publish(bootstrap: str, topics: tuple[str, str], racks: int, steps: int,
            partitions: int = 4) -> tuple[int, int]:
    """Publish ``steps`` snapshots of ``racks`` racks on two sites to the JSON and the line
    topic, 100 metrics a message; returns (messages a topic, samples a topic)."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    admin.close()
    p = KafkaProducer(bootstrap_servers=[bootstrap], linger_ms=50, batch_size=1 << 20,
                      max_request_size=8 << 20, acks=1, metrics_enabled=False)
    rng = np.random.default_rng(0)
    t0_ms = (time.time_ns() // NS - 6 * 3600) // 3600 * 3600 * 1000
    n = 0
    for site in ("hall-0", "hall-1"):
        for k in range(steps):
            ts = t0_ms + k * 10_000
            vals = rng.uniform(10, 20, (racks, 8)).round(3)
            for lo in range(0, racks, PER_MESSAGE):
                metrics, lines = [], []
                for r in range(lo, min(lo + PER_MESSAGE, racks)):
                    fields = dict(zip(FIELDS, [*vals[r].tolist(), 24.5, 37.25], strict=True))
                    dev = f"rack-{r:05d}"
                    metrics.append({"name": "rack", "tags": {"site": site, "device": dev},
                                    "fields": fields, "timestamp": ts})
                    lines.append(f"rack,device={dev},site={site} "
                                 + ",".join(f"{f}={v}" for f, v in fields.items())
                                 + f" {ts * 10**6}")
                p.send(topics[0], key=site.encode(), value=orjson.dumps({"metrics": metrics}))
                p.send(topics[1], key=site.encode(), value="\n".join(lines).encode())
                n += 1
    p.flush()
    p.close()
    return n, n * PER_MESSAGE * len(FIELDS)


def bare_batch_loop(bootstrap: str, topic: str, messages: int) -> tuple[float, float]:
    """Samples/s (wall, CPU) of kafka-python poll + ``orjson.loads`` over the batch topic."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False,
                      max_poll_records=500, metrics_enabled=False, fetch_max_wait_ms=100)
    tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    loads = orjson.loads
    seen = samples = s0 = 0
    t0 = cpu0 = None
    while seen < messages:
        for recs in c.poll(timeout_ms=500, max_records=500).values():
            for r in recs:
                samples += sum(len(m["fields"]) for m in loads(r.value)["metrics"])
            seen += len(recs)
            if t0 is None and seen >= WARM * messages:
                t0, s0, cpu0 = time.perf_counter(), samples, time.process_time()
    dt, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    c.close()
    return (samples - s0) / dt, (samples - s0) / cpu


def config(bootstrap: str, vm_url: str, topic: str, tag: str, fmt: str) -> dict:
    """The consume benchmark's config, reading ``topic`` in ``fmt``, 500 messages a poll."""
    doc = bench_config(bootstrap, vm_url, topic, 2, tag)
    doc["kafka"].update(format=fmt, max_poll_records=500)
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--racks", type=int, default=2000, help="racks a site (10 fields each)")
    ap.add_argument("--steps", type=int, default=60, help="10 s snapshots of every rack")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-consume-batch-"))
    procs, bootstrap, vm_url = start_components(tmp)
    try:
        tag = uuid.uuid4().hex[:8]
        topics = (f"batch-json-{tag}", f"batch-line-{tag}")
        t0 = time.perf_counter()
        n_msg, n_samples = publish(bootstrap, topics, args.racks, args.steps)
        print(f"published {n_msg:,} messages a topic ({n_samples:,} samples, "
              f"{2 * args.racks * len(FIELDS):,} series) in {time.perf_counter() - t0:.1f} s")
        res: dict[str, list[tuple[float, float]]] = {"bare": [], "json": [], "line": []}
        for r in range(args.rounds):
            res["bare"].append(bare_batch_loop(bootstrap, topics[0], n_msg))
            for fmt, topic in zip(("json", "line"), topics, strict=True):
                wall, cpu, _, info = service_run(config(bootstrap, vm_url, topic,
                                                        f"{tag}-{fmt}-{r}", fmt), n_msg)
                res[fmt].append((wall, cpu))
                print(f"  round {r + 1} {fmt}: {wall / 1e6:.2f} M samples/s, "
                      f"{cpu / 1e6:.2f} M per CPU-second; {info}")
            print(f"  round {r + 1} bare poll + orjson: {res['bare'][-1][0] / 1e6:.2f} M/s, "
                  f"{res['bare'][-1][1] / 1e6:.2f} M per CPU-second")
        med = {k: tuple(float(np.median([x[i] for x in v])) for i in (0, 1))
               for k, v in res.items()}
        for k, label in (("bare", "bare kafka-python poll + orjson (batch JSON)"),
                         ("json", "consume, Telegraf batch JSON"),
                         ("line", "consume, line protocol")):
            w, c = med[k]
            print(f"{label}: median {w / 1e6:.2f} M samples/s, {c / 1e6:.2f} M per CPU-second")
        print(f"batch JSON: {med['json'][0] / 1e6:.2f} M samples/s in one process "
              f"(target >= 2 M); line protocol / JSON: {med['line'][0] / med['json'][0]:.2f} wall, "
              f"{med['line'][1] / med['json'][1]:.2f} per CPU-second (target >= 0.90)")
    finally:
        stop_components(procs, tmp)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
