"""Tuning throughput: trials per minute of 30-day closed-loop backtests, 1 and 2 worker processes.

1. History: the simulator's truth for ``config/tetouan-7.5mw.toml`` (``--days`` + 1 warm-up day,
   fault-free, 60 s samples), at the dispatch step of 15 min.
2. Reference, measured in the same run: one MPC backtest of the train period with the
   configured settings (hourly re-dispatch, 24 h horizon): what one trial costs if nothing is
   pruned and the horizon stays at 24 h. ``jobs x 60 / reference`` is the ideal rate.
3. The example ``[tune]`` space (minus ``redispatch``, fixed at 1 h here) with TPE, median
   pruning and the example's constraints: ``--trials`` trials with ``--jobs 1``, then with
   ``--jobs 2`` (a fresh study each, SQLite storage, seeded). Target: 50 trials in <= 5 min
   with 2 jobs on this 2-core machine.
4. ``--stress``: many very short trials (rule policy, 2-day history) from 2 workers against
   SQLite and against Optuna's journal file, to see whether SQLite's locking bites.

Run: ``.venv/bin/python benchmarks/bench_tune.py [--trials 50] [--days 30] [--jobs 1,2] [--stress]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import optuna

from pueflow.config.load import load_config
from pueflow.modes.tune.history import load_history, split_periods
from pueflow.modes.tune.objective import Evaluator, resolve_space
from pueflow.modes.tune.run import run_tune
from pueflow.modes.tune.study import open_storage, storage_url
from pueflow.optimizers.assets import apply_overrides, site_model

CONFIG = Path(__file__).resolve().parents[1] / "config" / "tetouan-7.5mw.toml"
START = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def bench_config(days: float):
    """The example config with hourly re-dispatch and a train-only [tune] of ``days``."""
    cfg = load_config(CONFIG)
    site = cfg.sites[0]
    site.dispatch = apply_overrides(site.dispatch, {"redispatch": "1h"})
    space = [p for p in cfg.tune.space if p.key != "redispatch"]
    cfg.tune = cfg.tune.model_copy(update={"space": space, "validation_days": 0.0, "warmup_days": 1.0})
    return cfg


def history(cfg, days: float, folder: Path) -> Path:
    from pueflow.sim import simulate_to_file

    t = time.perf_counter()
    simulate_to_file(cfg, START, days + 1, folder / "telemetry.parquet", seed=11, step_s=60.0, faults=False,
                     progress=False)
    print(f"history: {days + 1:g} simulated days of {cfg.sites[0].id} in {time.perf_counter() - t:.1f} s")
    return folder / "truth.parquet"


def reference(cfg, truth: Path) -> float:
    site = cfg.sites[0]
    m = site_model(site)
    periods = split_periods(load_history(cfg, site, m, truth).frame, cfg.tune, m)
    ev = Evaluator(site, cfg.tune, resolve_space(site, cfg.tune))
    ev.run(periods.train.head(3 * 96), None)  # load the numba kernels, build the LP once
    t = time.perf_counter()
    res, met = ev.run(periods.train, None)
    s = time.perf_counter() - t
    print(f"reference: one MPC backtest, {periods.train_days:g} d at 15 min, hourly re-dispatch: {s:.1f} s "
          f"({res.solves} LP solves, p50 {1e3 * float(sorted(res.solve_s)[len(res.solve_s) // 2]):.1f} ms); "
          f"cost {met['cost']:,.0f}")
    return s


def bench_jobs(cfg, truth: Path, trials: int, jobs: int, ref_s: float, folder: Path) -> None:
    out = folder / f"jobs-{jobs}"
    t = time.perf_counter()
    res = run_tune(cfg, truth, trials=trials, jobs=jobs, out=out, seed=1, progress=False, report=False)
    wall = time.perf_counter() - t
    st = optuna.load_study(study_name=res.study, storage=open_storage(storage_url(None, out)))
    tr = st.get_trials(deepcopy=False)
    first = min(x.datetime_start for x in tr if x.datetime_start)
    last = max(x.datetime_complete for x in tr if x.datetime_complete)
    span = (last - first).total_seconds()
    states = {s: sum(x.state.name == s for x in tr) for s in ("COMPLETE", "PRUNED", "FAIL")}
    rate = len(tr) / span * 60
    ideal = jobs * 60 / ref_s
    print(f"jobs={jobs}: {len(tr)} trials in {span:.0f} s of trials ({wall:.0f} s with start-up) = "
          f"{rate:.1f} trials/min (reference rate {ideal:.1f}/min, ratio {rate / ideal:.2f}); "
          f"{states['COMPLETE']} complete, {states['PRUNED']} pruned, {states['FAIL']} failed; "
          f"50 trials -> {50 / rate:.1f} min {'OK' if 50 / rate <= 5 else 'over'} the 5 min target; "
          f"best {res.best_value:,.0f}" if res.best_value is not None else "no feasible trial")


def stress(folder: Path) -> None:
    """Many short trials from 2 workers: does SQLite's locking bite, against a journal file?"""
    from pueflow.config.load import parse_config
    from pueflow.optimizers.synthetic import synthetic_history
    from pueflow.optimizers.testing import tiny_dispatch

    site = {"id": "s1", "jurisdiction": "MA", "timezone": "UTC", "latitude": 35.0, "longitude": -5.0,
            "it_capacity_kw": 1000.0, "dispatch": tiny_dispatch(battery={"energy_kwh": 400.0}),
            "meters": [{"device": "pdu-*", "point": "power_kw", "kind": "power", "role": "it"}]}
    tune = {"policy": "rule", "validation_days": 0, "warmup_days": 0.25,
            "space": [{"key": "battery.soc_min_pct", "low": 5.0, "high": 50.0}]}
    cfg = parse_config({"pipeline": {"windows": ["1h"]}, "sites": [site], "tune": tune})
    hist = folder / "stress.parquet"
    synthetic_history(site_model(cfg.sites[0]), START, 2, seed=1).write_parquet(hist)
    for kind in ("sqlite", "journal"):
        out = folder / f"stress-{kind}"
        storage = None if kind == "sqlite" else f"journal:{out / 'study.journal'}"
        t = time.perf_counter()
        try:
            res = run_tune(cfg, hist, trials=200, jobs=2, out=out, storage=storage, progress=False, report=False)
            st = optuna.load_study(study_name=res.study, storage=open_storage(storage_url(storage, out)))
            nums = [x.number for x in st.get_trials(deepcopy=False)]
            fails = sum(x.state.name == "FAIL" for x in st.get_trials(deepcopy=False))
            print(f"stress {kind:7s}: {len(nums)} trials ({len(set(nums))} distinct numbers, {fails} failed) "
                  f"in {time.perf_counter() - t:.1f} s")
        except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not stop
            print(f"stress {kind:7s}: FAILED after {time.perf_counter() - t:.1f} s: {exc}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--days", type=float, default=30.0, help="train period of each trial [d]")
    ap.add_argument("--jobs", default="1,2", help="worker processes to measure, comma-separated")
    ap.add_argument("--stress", action="store_true", help="also stress SQLite against the journal file")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    cfg = bench_config(args.days)
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        folder = Path(tmp)
        truth = history(cfg, args.days, folder)
        ref_s = reference(cfg, truth)
        for jobs in (int(j) for j in args.jobs.split(",")):
            bench_jobs(cfg, truth, args.trials, jobs, ref_s, folder)
        if args.stress:
            stress(folder)


if __name__ == "__main__":
    main()
