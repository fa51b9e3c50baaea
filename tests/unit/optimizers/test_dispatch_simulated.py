"""Issue 5 acceptance on *simulated* history (not synthetic): a week of the 40 MW hall."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pueflow.config.load import load_config
from pueflow.modes.tune.history import load_history
from pueflow.optimizers.assets import site_model
from pueflow.optimizers.backtest import compare
from pueflow.sim import simulate_to_file

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def hall_week(tmp_path_factory):
    cfg = load_config(ROOT / "config" / "dakhla-40mw-gb200.toml")
    out = tmp_path_factory.mktemp("hall") / "telemetry.parquet"
    simulate_to_file(cfg, datetime(2026, 7, 5, 23, tzinfo=UTC), 7.0, out, fmt="parquet",
                     seed=11, step_s=60.0, faults=False, progress=False)
    site = cfg.sites[0]
    model = site_model(site)
    hist = load_history(cfg, site, model, out.parent / "truth.parquet").frame
    return site, hist


def test_mpc_beats_the_rule_baseline_on_a_simulated_week_and_oracle_bounds_both(hall_week):
    site, hist = hall_week
    res = compare(site, hist, policies=("mpc", "rule", "oracle"))
    mpc, rule, oracle = res["mpc"], res["rule"], res["oracle"]
    assert mpc.objective < rule.objective, (mpc.summary(), rule.summary())
    assert oracle.objective <= mpc.objective * (1 + 1e-9)
    assert mpc.unmet_h == pytest.approx(0.0, abs=1e-6)
    assert mpc.gap_to_oracle >= 0.0
