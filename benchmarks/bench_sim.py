"""Simulator speed: a 40 MW GB200 hall for one day at 10 s, faults on, streamed to Parquet.

Target (issue 3): under 60 s on the 2-core reference machine. The reference in the same run
is writing the same rows to Parquet with polars alone (the I/O floor of the simulator).

    .venv/bin/python benchmarks/bench_sim.py [--days 1] [--step 10] [--config PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from pueflow.config.load import load_config
from pueflow.sim import simulate, simulate_to_file

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "config" / "dakhla-40mw-gb200.toml"))
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--step", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    cfg = load_config(args.config)
    start = datetime(2025, 7, 14, tzinfo=UTC)

    # warm-up: compile (or load cached) numba kernels and pvlib tables outside the timing
    simulate(cfg, start, 1 / 24, seed=args.seed, step_s=60)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "telemetry.parquet"
        t0 = time.perf_counter()
        res = simulate_to_file(cfg, start, args.days, out, seed=args.seed, step_s=args.step,
                               faults=True, progress=False)
        sim_s = time.perf_counter() - t0
        df = pl.read_parquet(out)
        t1 = time.perf_counter()
        df.write_parquet(Path(tmp) / "reference.parquet", compression="zstd")
        ref_s = time.perf_counter() - t1

    budget = 60.0 * args.days
    print(f"config        {Path(args.config).name}: {res.series} series, {args.days:g} d at {args.step:g} s")
    print(f"simulated     {res.rows:,} rows in {sim_s:.1f} s = {res.rows / sim_s / 1e6:.2f} M rows/s")
    print(f"target        < {budget:.0f} s  -> {'PASS' if sim_s < budget else 'FAIL'} "
          f"({sim_s / budget:.2f} of the budget)")
    print(f"reference     polars write_parquet of the same rows: {ref_s:.1f} s "
          f"(simulator / reference = {sim_s / ref_s:.1f}x)")
    print(f"truth rows    {res.truth.height:,}; faults recorded {res.faults.height:,}")


if __name__ == "__main__":
    main()
