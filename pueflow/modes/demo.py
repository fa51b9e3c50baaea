"""``pueflow demo``: a week of the 7.5 MW Moroccan site, simulated, replayed, summarised, charted."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from pueflow.config.load import load_config
from pueflow.modes.replay import replay
from pueflow.modes.summary import render, summarise

DEMO_DATE = (2026, 7, 20)  # a July week: hot afternoons, the season of desert-wind spells


def run_demo(config: str = "config/tetouan-7.5mw.toml", out: str = "pueflow-out",
             days: float = 7.0, seed: int = 42) -> dict[str, Path]:
    """Simulate, replay into the Parquet store under ``out``, print the daily table, chart.

    Returns the paths written (telemetry, store, chart).
    """
    from pueflow.sim import simulate_to_file
    from pueflow.sim.chart import write_chart

    cfg = load_config(config)
    # start at the site's local midnight so the daily table has whole local days
    start = datetime(*DEMO_DATE, tzinfo=ZoneInfo(cfg.sites[0].timezone)).astimezone(UTC)
    out_dir = Path(out)
    sim_dir = out_dir / "sim"
    sim_dir.mkdir(parents=True, exist_ok=True)
    telemetry = sim_dir / "telemetry.parquet"
    t0 = time.perf_counter()
    print(f"1/3 simulating {days:g} days of {', '.join(s.id for s in cfg.sites)} "
          f"from {start:%Y-%m-%d} (seed {seed}) -> {telemetry}")
    simulate_to_file(cfg, start, days, telemetry, fmt="parquet", seed=seed, step_s=10.0,
                     faults=True, progress=True)
    t1 = time.perf_counter()
    store = out_dir / "store"
    print(f"2/3 replaying through the pipeline -> Parquet store {store}/")
    res = replay(cfg, [telemetry], out_dir=store, run="demo", progress=True)
    t2 = time.perf_counter()
    daily = summarise(res.kpi, res.quality, by_day=True,
                      timezones={s.id: s.timezone for s in cfg.sites})
    render(daily, title="pueflow demo: per-day KPIs (local days)")
    truth_path = sim_dir / "truth.parquet"
    truth = pl.read_parquet(truth_path) if truth_path.exists() else None
    if truth is not None:
        _compare_with_truth(res.kpi, truth)
    chart = out_dir / "demo-week.png"
    hourly = res.kpi.filter(pl.col("window") == "1h").sort("time")
    write_chart(hourly, truth, chart)
    print(f"3/3 chart -> {chart}")
    print(f"simulated in {t1 - t0:.1f} s; replayed {res.readings:,} readings in {t2 - t1:.1f} s "
          f"({res.samples_per_s / 1e6:.2f} M/s); {res.kpi.height:,} KPI rows, "
          f"{res.quality['count'].sum() if res.quality.height else 0:,} quality events")
    print(f"read it back: polars.scan_parquet('{store}/measurement=kpi/**/*.parquet', "
          "hive_partitioning=True)")
    return {"telemetry": telemetry, "store": store, "chart": chart}


def _compare_with_truth(kpi: pl.DataFrame, truth: pl.DataFrame) -> None:
    """Print how close the pipeline's daily PUE is to the simulator's truth, under faults."""
    key = ["site", "window", "time"]
    got = kpi.filter(pl.col("window") == "1d").select(*key, pl.col("pue").alias("pue_pipeline"))
    want = truth.filter(pl.col("window") == "1d").select(*key, pl.col("pue").alias("pue_truth"))
    both = got.join(want, on=key, how="inner")
    if both.height == 0:
        return
    err = ((both["pue_pipeline"] - both["pue_truth"]).abs() / both["pue_truth"]).max()
    if not isinstance(err, float):  # every day had a null PUE (no IT energy): nothing to say
        return
    print(f"daily PUE vs simulator truth (meter faults on): worst relative error {err:.3%}")
