"""Replay throughput: Parquet telemetry -> KPIs -> Parquet store, against reading the file alone.

Simulates the 40 MW hall (572 series at 10 s) for ``--hours`` (default 12: ~2.5 M readings),
then measures in one run, best of ``--repeat``:

- read alone: ``polars.read_parquet`` of the five columns (the reference);
- source: ``iter_file`` turning the file into Batches (read + key -> series id);
- replay, no sink: source + the shared core (screen, integrate, windows, KPIs);
- replay to the Parquet store (what ``pueflow replay`` does).

Targets (issue 2): replay >= 20 M samples/s; DESIGN aim 50 M/s.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from pueflow.config.load import load_config
from pueflow.connectors.files import iter_file
from pueflow.modes.replay import replay
from pueflow.schema.registry import Registry
from pueflow.sim import simulate_to_file

ROOT = Path(__file__).resolve().parents[1]


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hours", type=float, default=12.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cfg = load_config(ROOT / "config" / "dakhla-40mw-gb200.toml")
    tmp = Path(tempfile.mkdtemp(prefix="pueflow-bench-"))
    try:
        path = tmp / "hall.parquet"
        simulate_to_file(cfg, datetime(2026, 7, 1, tzinfo=UTC), args.hours / 24, path,
                         fmt="parquet", seed=1, step_s=10.0, faults=True, progress=False)
        n = pl.scan_parquet(path).select(pl.len()).collect().item()
        replay(cfg, [path], progress=False, write=False)  # compile every kernel once

        def read_alone():
            pl.read_parquet(path, columns=["time", "site", "device", "point", "value"])

        def source():
            reg = Registry(cfg)
            for _ in iter_file(path, reg):
                pass

        def core():
            replay(cfg, [path], progress=False, write=False)

        def to_store():
            out = tmp / "store"
            shutil.rmtree(out, ignore_errors=True)
            replay(cfg, [path], out_dir=out, progress=False)

        print(f"{n:,} readings of the 40 MW hall ({args.hours:g} h at 10 s); best of {args.repeat}")
        ref = None
        for name, fn in (("read alone (polars)", read_alone), ("source -> Batches", source),
                         ("replay, no sink", core), ("replay -> Parquet store", to_store)):
            s = best(fn, args.repeat)
            rate = n / s
            ref = ref or rate
            print(f"  {name:<24} {s:7.3f} s  {rate / 1e6:7.2f} M samples/s  "
                  f"{rate / ref:6.2f}x read-alone")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
