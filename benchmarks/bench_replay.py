"""Replay throughput: Parquet telemetry -> KPIs -> Parquet store, against reading the file alone.

Simulates the 40 MW hall (572 series at 10 s, with the simulator's faults: late and
duplicate readings, gaps, spikes) for ``--hours`` (default 48: ~9.9 M readings, so what
a run costs once (registering 573 keys, writing the store's partition files) weighs as
little as in the history replays are for; ``--hours 12`` shows it), then measures in one
run, best of ``--repeat`` (wall time, and CPU time of all threads):

- read alone: ``polars.read_parquet`` of the five columns (the reference);
- source: ``iter_file`` turning the file into Batches (read + key -> series id);
- replay, no sink: source + the shared core (screen, integrate, windows, KPIs);
- replay to the Parquet store (what ``pueflow replay`` does);
- the same replay of the file rewritten series-major (each meter's whole history in
  turn, as historian exports list it): replay puts it in event-time order itself;

and, in child processes, the peak RSS of the time-ordered and the series-major replay.

Targets (issue 11): replay into the store >= 20 M samples/s (aim 50 M) and >= 0.6x of
reading the file alone; series-major >= 0.5x of time-ordered, RSS <= 1.5x of it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
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
CONFIG = ROOT / "config" / "dakhla-40mw-gb200.toml"
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the forking parent (this
# benchmark, holding the simulated frames), while VmHWM belongs to the child's own memory
CHILD = """
import sys
from pueflow.config.load import load_config
from pueflow.modes.replay import replay
res = replay(load_config(sys.argv[1]), [sys.argv[2]], progress=False, write=False)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(int(hwm.split()[1]) * 1024, int(res.spilled))
"""


def best(fn, repeat: int) -> tuple[float, float]:
    """Shortest wall time [s] of ``repeat`` calls, and the CPU time [s] of that call."""
    runs = []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - t, time.process_time() - c))
    return min(runs)


def peak_rss(path: Path) -> int:
    """Peak resident memory [bytes] of a fresh process replaying ``path``."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(CONFIG), str(path)], check=True,
                         capture_output=True, text=True, cwd=ROOT)
    return int(out.stdout.split()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hours", type=float, default=48.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cfg = load_config(CONFIG)
    tmp = Path(tempfile.mkdtemp(prefix="pueflow-bench-"))
    try:
        path = tmp / "hall.parquet"
        simulate_to_file(cfg, datetime(2026, 7, 1, tzinfo=UTC), args.hours / 24, path,
                         fmt="parquet", seed=1, step_s=10.0, faults=True, progress=False)
        smaj = tmp / "series-major.parquet"
        pl.read_parquet(path).sort("site", "device", "point", "time",
                                   maintain_order=True).write_parquet(smaj)
        n = pl.scan_parquet(path).select(pl.len()).collect().item()
        replay(cfg, [path], progress=False, write=False)  # compile every kernel once
        replay(cfg, [smaj], progress=False, write=False)

        def read_alone():
            pl.read_parquet(path, columns=["time", "site", "device", "point", "value"])

        def source():
            reg = Registry(cfg)
            for _ in iter_file(path, reg):
                pass

        def core():
            replay(cfg, [path], progress=False, write=False)

        def to_store(src=path):
            out = tmp / "store"
            shutil.rmtree(out, ignore_errors=True)
            replay(cfg, [src], out_dir=out, progress=False)

        print(f"{n:,} readings of the 40 MW hall ({args.hours:g} h at 10 s); best of {args.repeat}")
        rates = {}
        for name, fn in (("read alone (polars)", read_alone), ("source -> Batches", source),
                         ("replay, no sink", core), ("replay -> Parquet store", to_store),
                         ("series-major -> store", lambda: to_store(smaj))):
            s, cpu = best(fn, args.repeat)
            rates[name] = rate = n / s
            print(f"  {name:<24} {s:7.3f} s  {rate / 1e6:7.2f} M samples/s  "
                  f"{rate / rates['read alone (polars)']:6.2f}x read-alone   "
                  f"CPU {cpu:6.3f} s = {1e9 * cpu / n:5.1f} ns a reading")
        ratio = rates["series-major -> store"] / rates["replay -> Parquet store"]
        print(f"  series-major / time-ordered replay: {ratio:.2f}x (target >= 0.5x)")
        ordered, smajor = peak_rss(path), peak_rss(smaj)
        print(f"  peak RSS: time-ordered {ordered / 2**20:.0f} MiB, series-major "
              f"{smajor / 2**20:.0f} MiB = {smajor / ordered:.2f}x (target <= 1.5x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
