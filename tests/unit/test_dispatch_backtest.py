"""Closed-loop backtests: oracle agreement, MPC against the rule, partial results, overrides."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from pueflow.config.load import load_config
from pueflow.exceptions import OptimizerError
from pueflow.optimizers.assets import site_model
from pueflow.optimizers.backtest import compare, run_backtest
from pueflow.optimizers.synthetic import synthetic_history

START = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def hall():
    return load_config("config/dakhla-40mw-gb200.toml").sites[0]


def test_mpc_with_perfect_forecasts_matches_the_oracle(hall):
    """A horizon covering the period, perfect forecasts and the LP's own plant: same cost."""
    ov = {"step": "1h", "horizon": "48h", "redispatch": "3h"}
    history = synthetic_history(site_model(hall, ov), START, 2, seed=3)
    res = compare(hall, history, ("mpc", "oracle"), ov, cooling="planes", forecaster="perfect")
    oracle, mpc = res["oracle"], res["mpc"]
    assert mpc.solves == 16
    assert mpc.fallbacks == 0
    assert oracle.fallbacks == 0
    assert mpc.objective == pytest.approx(oracle.objective, rel=1e-6)
    assert abs(mpc.gap_to_oracle) < 1e-6


def test_mpc_beats_the_rule_on_a_week_of_the_40mw_hall(hall):
    ov = {"redispatch": "1h"}
    history = synthetic_history(site_model(hall, ov), START, 7, seed=1)
    mpc = run_backtest(hall, history, "mpc", ov)
    rule = run_backtest(hall, history, "rule", ov)
    assert mpc.fallbacks == 0
    assert mpc.chip_violations == 0
    assert mpc.grid_violations == 0
    assert mpc.objective < 0.9 * rule.objective
    assert mpc.unmet_h < 1.0
    assert rule.unmet_h < 1.0
    assert 1.0 < mpc.pue < 1.1
    assert 0 < mpc.ref <= 1
    s = mpc.steps
    assert s.height == 7 * 96
    assert s["time"].dtype == pl.Datetime("ns", "UTC")
    assert {"job_pretrain-a_kw", "supply_d2c_c", "soc_kwh"} <= set(s.columns)


def test_oracle_is_a_bound_in_the_lp_plant(hall):
    ov = {"step": "1h", "horizon": "24h", "redispatch": "1h"}
    history = synthetic_history(site_model(hall, ov), START, 3, seed=5)
    res = compare(hall, history, ("mpc", "rule", "oracle"), ov, cooling="planes")
    assert res["oracle"].objective <= res["mpc"].objective + 1e-6
    assert res["oracle"].objective <= res["rule"].objective + 1e-6
    assert res["rule"].gap_to_oracle > res["mpc"].gap_to_oracle >= -1e-9


def test_daily_callback_reports_partial_results_and_can_stop(hall):
    ov = {"step": "1h", "redispatch": "2h"}
    history = synthetic_history(site_model(hall, ov), START, 4, seed=2)
    seen: list[tuple[int, float, bool]] = []

    def on_day(day, partial):
        seen.append((day, partial.hours, partial.complete))
        return day >= 2  # prune after two days

    res = run_backtest(hall, history, "rule", ov, on_day=on_day)
    assert seen == [(1, 24.0, False), (2, 48.0, False)]
    assert not res.complete
    assert res.hours == 48.0
    full = run_backtest(hall, history, "rule", ov, on_day=lambda d, r: False)
    assert full.complete
    assert full.hours == 96.0


def test_overrides_and_warmup(hall):
    ov = {"step": "1h", "redispatch": "2h"}
    history = synthetic_history(site_model(hall, ov), START, 3, seed=4)
    base = run_backtest(hall, history, "mpc", ov, warmup_days=1, keep_steps=False)
    dear = run_backtest(hall, history, "mpc", {**ov, "battery.wear_cost_per_kwh": 5.0}, warmup_days=1)
    assert base.hours == 48.0
    assert base.steps is None
    assert dear.wear_cost < base.wear_cost  # battery wear this dear keeps it (nearly) idle
    summary = base.summary()
    assert summary["policy"] == "mpc"
    assert summary["solve_p95_s"] >= summary["solve_p50_s"] > 0


def test_bad_inputs_are_explained(hall):
    ov = {"step": "1h"}
    history = synthetic_history(site_model(hall, ov), START, 1, seed=0)
    with pytest.raises(OptimizerError, match="unknown setting"):
        run_backtest(hall, history, "mpc", {"battery.wear": 1.0})
    with pytest.raises(OptimizerError, match="invalid dispatch settings"):
        run_backtest(hall, history, "mpc", {"horizon": "soon"})
    with pytest.raises(OptimizerError, match="policy"):
        run_backtest(hall, history, "greedy", ov)
    with pytest.raises(OptimizerError, match="lacks columns"):
        run_backtest(hall, history.drop("pv_kw"), "rule", ov)
    with pytest.raises(OptimizerError, match="resample"):
        run_backtest(hall, history, "rule", {"step": "15m"})
    with pytest.raises(OptimizerError, match="aware"):
        run_backtest(hall, history.with_columns(pl.col("time").dt.replace_time_zone(None)), "rule", ov)


def test_history_prices_override_the_tariff(hall):
    ov = {"step": "1h", "redispatch": "2h"}
    history = synthetic_history(site_model(hall, ov), START, 1, seed=0)
    free = history.with_columns(pl.lit(0.0).alias("price_per_kwh"), pl.lit(0.0).alias("carbon_kg_per_kwh"))
    res = run_backtest(hall, free, "rule", ov)
    assert res.energy_cost == 0.0
    assert res.co2_kg == 0.0
    assert res.demand_cost > 0
    assert np.isfinite(res.objective)
