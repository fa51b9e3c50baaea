"""Dispatch benchmarks for the 40 MW example hall (config/dakhla-40mw-gb200.toml).

1. Solve time of the 288-step LP (24 h at 5 min): a day of receding-horizon problems every
   15 min from default forecasts, solved cold (no basis) and warm (the previous basis
   shifted, as the MPC runs), with p50/p95 against the 100 ms target; plus what building the
   LP's structure costs against updating it per problem.
2. A simulated month (15-min steps, hourly re-dispatch) in closed loop: MPC, rule and
   oracle, with each policy's cost, gap to the oracle and the MPC's saving over the rule.

Run: ``.venv/bin/python benchmarks/bench_dispatch.py [--days 30] [--problems 96]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from pathlib import Path

import numpy as np

from pueflow.config.load import load_config
from pueflow.optimizers.assets import site_model
from pueflow.optimizers.backtest import compare
from pueflow.optimizers.forecast import DefaultForecaster, Recent
from pueflow.optimizers.horizon import DispatchState, make_problem
from pueflow.optimizers.lp import SiteLP
from pueflow.optimizers.solve import solve
from pueflow.optimizers.synthetic import synthetic_history

CONFIG = Path(__file__).resolve().parents[1] / "config" / "dakhla-40mw-gb200.toml"
START = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)


def pct(a, q):
    return 1e3 * float(np.quantile(np.asarray(a), q))


def bench_lp(problems: int) -> None:
    site = load_config(CONFIG).sites[0]
    m = site_model(site, {"step": "5m", "horizon": "24h", "redispatch": "15m"})
    n = m.horizon_steps
    hist = synthetic_history(m, START - dt.timedelta(days=3), 3 + problems / 96 + 1.1, seed=7)
    t_all = hist["time"].cast(int).to_numpy()
    cols = {c: hist[c].to_numpy() for c in ("pv_kw", "wind_kw", "it_kw", "ambient_c")}
    fc = DefaultForecaster(m)
    t0 = time.perf_counter()
    lp = SiteLP(m, n)
    build_s = time.perf_counter() - t0
    state = DispatchState.initial(m)
    probs, t_fc, t_prob, t_asm = [], [], [], []
    first = int(np.searchsorted(t_all, int(START.timestamp()) * 10**9))
    for k in range(problems):
        i = first + 3 * k
        a = time.perf_counter()
        recent = Recent(t_all[i - 3 * 288:i], *(cols[c][i - 3 * 288:i] for c in cols), m.step_ns)
        f = fc.forecast(t_all[i:i + n], recent)
        b = time.perf_counter()
        p = make_problem(m, int(t_all[i]), n, f, state)
        c = time.perf_counter()
        arrays = lp.assemble(p)
        d = time.perf_counter()
        t_fc.append(b - a)
        t_prob.append(c - b)
        t_asm.append(d - c)
        probs.append(arrays)
    cold, warm, iters_cold, iters_warm = [], [], [], []
    lp.last_basis = None
    for arrays in probs:
        r = solve(lp, arrays, 30.0, "highs", warm=False)
        assert r.success, r.message
        cold.append(r.solve_s)
        iters_cold.append(r.iterations)
    lp.last_basis = None
    for arrays in probs:
        r = solve(lp, arrays, 30.0, "highs", warm=True)
        assert r.success, r.message
        warm.append(r.solve_s)
        iters_warm.append(r.iterations)
    milp = [solve(lp, arrays, 30.0, "milp").solve_s for arrays in probs[:10]]
    rebuild = []
    for _ in range(10):
        a = time.perf_counter()
        SiteLP(m, n)
        rebuild.append(time.perf_counter() - a)
    print(f"288-step LP, 40 MW hall: {lp.n_cols} columns x {lp.n_rows} rows, {lp.nnz} non-zeros; "
          f"{problems} receding problems 15 min apart")
    print(f"  cold solve  p50 {pct(cold, .5):7.1f} ms   p95 {pct(cold, .95):7.1f} ms   "
          f"(simplex iterations p50 {int(np.median(iters_cold))})")
    print(f"  warm solve  p50 {pct(warm, .5):7.1f} ms   p95 {pct(warm, .95):7.1f} ms   "
          f"(iterations p50 {int(np.median(iters_warm))})  <- what the MPC pays; target p95 <= 100 ms")
    print(f"  scipy.optimize.milp route, cold: p50 {pct(milp, .5):.1f} ms (10 problems)")
    print(f"  structure built once {1e3 * build_s:.1f} ms (rebuild p50 {pct(rebuild, .5):.1f} ms) "
          f"vs per-problem update (assemble) p50 {pct(t_asm, .5):.2f} ms")
    print(f"  forecast p50 {pct(t_fc, .5):.2f} ms, problem setup p50 {pct(t_prob, .5):.2f} ms")


def bench_month(days: float) -> None:
    site = load_config(CONFIG).sites[0]
    ov = {"redispatch": "1h"}
    m = site_model(site, ov)
    hist = synthetic_history(m, START, days, seed=11)
    res = compare(site, hist, ("oracle", "mpc", "rule"), ov, keep_steps=False)
    cur = m.spec.tariff.currency
    print(f"\nclosed-loop backtest, {days:g} simulated days of the 40 MW hall "
          f"(15-min steps, 24 h horizon, hourly re-dispatch, default forecasts, physics plant)")
    print(f"  {'policy':7s} {'cost ' + cur:>14s} {'objective':>14s} {'gap':>8s} {'CO2 t':>9s} {'REF':>6s} "
          f"{'PUE':>6s} {'peak MW':>8s} {'unmet h':>8s} {'solves':>7s} {'fallbk':>7s} {'wall s':>7s}")
    for name, r in res.items():
        print(f"  {name:7s} {r.cost:14,.0f} {r.objective:14,.0f} {100 * r.gap_to_oracle:7.2f}% "
              f"{r.co2_kg / 1e3:9,.1f} {r.ref:6.3f} {r.pue:6.3f} {r.peak_kw / 1e3:8.2f} {r.unmet_h:8.2f} "
              f"{r.solves:7d} {r.fallbacks:7d} {r.wall_s:7.1f}")
    mpc, rule = res["mpc"], res["rule"]
    saving = rule.objective - mpc.objective
    print(f"  MPC saves {saving:,.0f} {cur} against the rule ({100 * saving / rule.objective:.1f} %); "
          f"gap to the oracle {100 * mpc.gap_to_oracle:.2f} % (rule {100 * rule.gap_to_oracle:.2f} %)")
    print(f"  MPC solve p50 {pct(mpc.solve_s, .5):.1f} ms, p95 {pct(mpc.solve_s, .95):.1f} ms "
          f"(96-step LP); oracle LP {mpc.solves and res['oracle'].solve_s[0]:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=30.0, help="simulated days of the backtest")
    ap.add_argument("--problems", type=int, default=96, help="288-step LPs to time")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    bench_lp(args.problems)
    bench_month(args.days)


if __name__ == "__main__":
    main()
