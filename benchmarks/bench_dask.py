"""Replay on Dask against the single-process replay, same input, same run.

Input: the 4-country fleet config simulated for ``--days`` days at 60 s steps (Parquet).
Measures, one after another on this machine:

1. ``replay()`` in this process (the reference);
2. ``--dask local:1`` and ``local:2``: wall time of the job on an already running and warm
   cluster (as on a real cluster; the reference is warm too) and including the cluster start; CPU-seconds of the driver and the
   workers;
3. overhead per task: (local:1 job - reference) / tasks;
4. on paper: workers and hours for one year of a 386 MW campus at 0.3 and 3 M readings/s.

Floor (issue 14): local:2 >= 1.6 x the reference readings/s. The machine may be shared:
CPU-seconds say how much of it the run actually got. Run:
``.venv/bin/python benchmarks/bench_dask.py`` (``--days 2`` for a quicker one).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import psutil
from distributed import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pueflow.config.load import load_config  # noqa: E402
from pueflow.modes.distributed import (  # noqa: E402
    extent_ns,
    local_cluster,
    replay_dask,
    site_spans,
)
from pueflow.modes.replay import replay  # noqa: E402
from pueflow.modes.slices import plan_slices  # noqa: E402
from pueflow.sim import simulate_to_file  # noqa: E402

YEAR_S = 365 * 86_400


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_workers(client: Client) -> float:
    def cpu() -> float:
        t = psutil.Process().cpu_times()
        return t.user + t.system
    return sum(client.run(cpu).values())


def _dask(cfg, path: Path, n: int) -> dict[str, float]:
    t0 = time.perf_counter()
    with local_cluster(n) as cluster, Client(cluster) as client:
        started = time.perf_counter() - t0
        # the same job once first, as the reference replay was run once before it is timed:
        # each worker process loads pueflow, its compiled kernels and polars' lazy parts
        # (a cold worker spends ~1.7x the CPU on its first job; a backfill runs thousands)
        replay_dask(cfg, [path], cluster.scheduler_address, run="bench", write=False,
                    progress=False)
        c0, w0 = _cpu_self(), _cpu_workers(client)
        t1 = time.perf_counter()
        res = replay_dask(cfg, [path], cluster.scheduler_address, run="bench", write=False,
                          progress=False)
        job = time.perf_counter() - t1
        driver, workers = _cpu_self() - c0, _cpu_workers(client) - w0
    return {"readings": res.readings, "job_s": job, "with_start_s": started + job,
            "cpu_s": driver + workers, "driver_cpu_s": driver, "tasks": _tasks(cfg, path)}


def _tasks(cfg, path: Path) -> int:
    spans, own = site_spans(cfg, extent_ns(cfg, [path]))
    return len(plan_slices(cfg, spans, 1, own))


def _hive(path: Path) -> Path:
    """Rewrite the simulated file as ``site=<id>/date=<UTC day>/part-0.parquet`` files."""
    root = path.with_suffix(".hive")
    if root.exists():
        return root
    df = pl.read_parquet(path).with_columns(pl.col("time").dt.date().alias("_d"))
    for (site, day), g in df.group_by(["site", "_d"]):
        d = root / f"site={site}" / f"date={day}"
        d.mkdir(parents=True)
        g.drop("_d").sort("time").write_parquet(d / "part-0.parquet", row_group_size=16_384)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=4.0)
    ap.add_argument("--layout", choices=["hive", "file"], default="hive",
                    help="input as site=/date= folders (default) or the one simulated file")
    a = ap.parse_args()
    cfg = load_config(ROOT / "config" / "fleet-4-countries.toml")
    folder = Path(tempfile.gettempdir()) / "pueflow-bench-dask"
    folder.mkdir(exist_ok=True)
    path = folder / f"fleet-{a.days:g}d.parquet"
    if not path.exists():
        simulate_to_file(cfg, datetime(2026, 10, 23, tzinfo=UTC), a.days, path, fmt="parquet",
                         step_s=60, progress=False)
    if a.layout == "hive":  # shared-storage layout: site=<id>/date=<UTC day>/ folders
        path = _hive(path)
    replay(cfg, [path], run="bench", write=False, progress=False)  # compile + warm the cache
    c0, t0 = _cpu_self(), time.perf_counter()
    ref = replay(cfg, [path], run="bench", write=False, progress=False)
    ref_s, ref_cpu = time.perf_counter() - t0, _cpu_self() - c0
    rate0 = ref.readings / ref_s
    print(f"input: {ref.readings:,} readings, {a.days:g} days of 4 sites at 60 s; "
          f"load average {psutil.getloadavg()[0]:.1f} on {psutil.cpu_count()} cores")
    print(f"{'run':<16}{'wall s':>8}{'M rd/s':>8}{'x ref':>7}{'CPU s':>7}{'+start s':>10}")
    print(f"{'single process':<16}{ref_s:8.2f}{rate0 / 1e6:8.2f}{1.0:7.2f}{ref_cpu:7.2f}{'':>10}")
    runs = {}
    for n in (1, 2):
        r = _dask(cfg, path, n)
        assert r["readings"] == ref.readings
        runs[n] = r
        rate = r["readings"] / r["job_s"]
        print(f"{f'dask local:{n}':<16}{r['job_s']:8.2f}{rate / 1e6:8.2f}{rate / rate0:7.2f}"
              f"{r['cpu_s']:7.2f}{r['with_start_s']:10.2f}  (driver+scheduler CPU "
              f"{r['driver_cpu_s']:.2f} s)")
    tasks = runs[1]["tasks"]
    overhead = (runs[1]["job_s"] - ref_s) / tasks
    print(f"tasks: {tasks}; overhead per task (local:1 job - single) / tasks: {overhead * 1e3:.0f} ms"
          f"; CPU overhead per task: {(runs[1]['cpu_s'] - ref_cpu) / tasks * 1e3:.0f} ms")
    # on paper from CPU-seconds (the shared machine's wall times are not this code's):
    # a worker core replays readings / (local:1 worker CPU-s) a second
    per_worker = ref.readings / (runs[1]["cpu_s"] - runs[1]["driver_cpu_s"])
    idle2 = 2 * ref_cpu / (runs[1]["cpu_s"] - runs[1]["driver_cpu_s"])
    print(f"CPU-seconds: worker work / single process = "
          f"{(runs[1]['cpu_s'] - runs[1]['driver_cpu_s']) / ref_cpu:.2f}; on 2 idle cores "
          f"local:2 would reach about {idle2:.2f} x single (2 x single CPU / worker CPU)")
    ratio2 = (runs[2]["readings"] / runs[2]["job_s"]) / rate0
    print(f"floor local:2 >= 1.6 x single: {ratio2:.2f} x -> {'PASS' if ratio2 >= 1.6 else 'FAIL'}")
    for rate_campus in (0.3e6, 3e6):
        n = rate_campus * YEAR_S
        w24 = n / (per_worker * 86_400)
        print(f"386 MW campus at {rate_campus / 1e6:g} M readings/s: one year = {n:.1e} readings; "
              f"{n / per_worker / 3600:,.0f} worker-hours at {per_worker / 1e6:.2f} M/s a worker; "
              f"{w24:,.0f} workers for 24 h, {w24 * 24 / 100:,.0f} h on 100 workers")


if __name__ == "__main__":
    main()
