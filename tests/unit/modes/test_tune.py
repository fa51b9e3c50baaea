"""`pueflow tune`: a tiny space finds the known-better setting; studies resume; scores are fair.

The tiny site (1 h steps, a 400 kWh battery, cheap nights and a dear evening peak) has one
setting whose better value is known: a 4 h horizon cannot see the evening peak from the
cheap night hours, so the LP never charges for it; a 24 h horizon does.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any

import optuna
import polars as pl
import pytest

from pueflow.cli import main
from pueflow.config.load import load_config, parse_config
from pueflow.exceptions import ConfigError
from pueflow.modes.tune.best_config import dumps
from pueflow.modes.tune.objective import Evaluator, resolve_space
from pueflow.modes.tune.run import run_tune
from pueflow.optimizers.assets import site_model
from pueflow.optimizers.synthetic import synthetic_history
from pueflow.optimizers.testing import tiny_dispatch

START = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
HORIZON = {"key": "horizon", "type": "categorical", "choices": ["4h", "24h"]}


def tiny_data(tune: dict[str, Any], **dispatch: Any) -> dict[str, Any]:
    """Config data: one 1 h-step site with a battery and a time-of-use tariff, plus ``[tune]``."""
    disp = tiny_dispatch(
        battery={"energy_kwh": 400.0, "charge_kw": 100.0, "discharge_kw": 100.0, "soc_min_pct": 10,
                 "wear_cost_per_kwh": 0.01},
        tariff={"default_price_per_kwh": 1.0, "periods": [
            {"name": "peak", "price_per_kwh": 3.0, "start": "17:00", "end": "21:00"},
            {"name": "night", "price_per_kwh": 0.5, "start": "00:00", "end": "06:00"}]},
        carbon={"price_per_t": 100.0}, **dispatch)
    site = {"id": "s1", "jurisdiction": "MA", "timezone": "UTC", "latitude": 35.0, "longitude": -5.0,
            "it_capacity_kw": 1000.0, "grid_co2_kg_per_kwh": 0.5, "dispatch": disp,
            "meters": [{"device": "pdu-*", "point": "power_kw", "kind": "power", "role": "it"}]}
    tune = {"validation_days": 2, "warmup_days": 1, "startup_trials": 3, **tune}
    return {"pipeline": {"windows": ["15m", "1h"]}, "sites": [site], "tune": tune}


def tiny_cfg(tune: dict[str, Any] | None = None, **dispatch: Any):
    return parse_config(tiny_data(tune or {"space": [HORIZON]}, **dispatch))


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    """8 days of the tiny site's history (1 warm-up + 5 train + 2 validation)."""
    path = tmp_path_factory.mktemp("hist") / "history.parquet"
    synthetic_history(site_model(tiny_cfg().sites[0]), START, 8, seed=1).write_parquet(path)
    return path


def numbers(out: Path, study: str) -> list[int]:
    s = optuna.load_study(study_name=study, storage=f"sqlite:///{out / 'tune.db'}")
    return sorted(t.number for t in s.get_trials(deepcopy=False))


def test_a_tiny_space_finds_the_known_better_horizon_and_it_validates(history, tmp_path):
    cfg = tiny_cfg({"space": [HORIZON, {"key": "forecast.load_tau_h", "low": 1.0, "high": 12.0, "log": True}]})
    res = run_tune(cfg, history, trials=6, out=tmp_path, seed=1, progress=False)
    assert res.trials == 6
    assert res.best_params["horizon"] == "24h"
    assert res.validation["best"] <= res.validation["configured"]
    tuned = load_config(res.config_path)
    assert tuned.sites[0].dispatch.horizon == "24h"
    assert tuned.sites[0].dispatch.forecast.load_tau_h == pytest.approx(res.best_params["forecast.load_tau_h"], rel=1e-5)
    html = res.report_path.read_text()
    assert html.count("<img src='data:image/png;base64,") >= 4  # self-contained: inline charts only
    assert "http" not in html.replace("https://", "")  # no external resources
    for name in ("rule", "oracle", "validation", "Parameter importances"):
        assert name in html
    scores = {(c["name"], c["period"]): c for c in __import__("json").loads((tmp_path / "best.json").read_text())["scores"]}
    assert scores[("oracle", "train")]["cost"] <= scores[("best", "train")]["cost"] + 1e-6
    assert pl.read_csv(tmp_path / "trials.csv").height == 6


def test_the_configured_settings_are_the_first_trial(history, tmp_path):
    cfg = tiny_cfg()
    res = run_tune(cfg, history, trials=2, out=tmp_path, seed=2, progress=False, report=False)
    assert res.study.startswith("pueflow-s1-")
    s = optuna.load_study(study_name=res.study, storage=f"sqlite:///{tmp_path / 'tune.db'}")
    first = s.trials[0]
    assert first.params == {"horizon": "4h"}
    assert first.user_attrs["configured"] is True


def test_seeded_studies_are_reproducible(history, tmp_path):
    cfg = tiny_cfg({"space": [{"key": "battery.soc_min_pct", "low": 5.0, "high": 50.0}]})
    a = run_tune(cfg, history, trials=4, out=tmp_path / "a", seed=7, progress=False, report=False)
    b = run_tune(cfg, history, trials=4, out=tmp_path / "b", seed=7, progress=False, report=False)
    params = [[t.params for t in optuna.load_study(study_name=r.study, storage=f"sqlite:///{r.out / 'tune.db'}")
               .get_trials(deepcopy=False)] for r in (a, b)]
    assert params[0] == params[1]
    assert len({p["battery.soc_min_pct"] for p in params[0]}) == 4
    assert a.best_value == b.best_value


def test_resume_continues_the_same_study_to_the_total(history, tmp_path):
    cfg = tiny_cfg({"space": [{"key": "battery.soc_min_pct", "low": 5.0, "high": 50.0}]})
    run_tune(cfg, history, trials=3, out=tmp_path, study="s", seed=3, progress=False, report=False)
    first = [t.params for t in optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'tune.db'}").trials]
    res = run_tune(cfg, history, trials=5, out=tmp_path, study="s", seed=3, progress=False, report=False)
    assert res.trials == 5
    assert numbers(tmp_path, "s") == [0, 1, 2, 3, 4]
    again = [t.params for t in optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'tune.db'}").trials]
    assert again[:3] == first  # the first three are the same trials, kept
    res = run_tune(cfg, history, trials=5, out=tmp_path, study="s", seed=3, progress=False)
    assert res.report_path.exists()
    assert numbers(tmp_path, "s") == [0, 1, 2, 3, 4]  # the total is reached: nothing more to run


def test_an_interrupted_trial_is_rerun_on_resume(history, tmp_path, monkeypatch):
    from pueflow.modes.tune import objective as tune_objective

    cfg = tiny_cfg({"space": [{"key": "battery.soc_min_pct", "low": 5.0, "high": 50.0}]})
    real = tune_objective.Objective.__call__
    calls = {"n": 0}

    def interrupting(self, trial):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, trial)

    monkeypatch.setattr(tune_objective.Objective, "__call__", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run_tune(cfg, history, trials=4, out=tmp_path, study="s", progress=False, report=False)
    monkeypatch.setattr(tune_objective.Objective, "__call__", real)
    run_tune(cfg, history, trials=4, out=tmp_path, study="s", progress=False, report=False)
    s = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'tune.db'}")
    states = {t.number: t.state.name for t in s.trials}
    assert sorted(states) == [0, 1, 2, 3, 4]  # numbering continues
    assert states[2] == "FAIL"
    assert s.trials[2].user_attrs["interrupted"]
    assert sum(st != "FAIL" for st in states.values()) == 4  # the interrupted one does not count


def test_a_changed_tune_section_starts_a_new_default_study(history, tmp_path):
    a = run_tune(tiny_cfg(), history, trials=1, out=tmp_path, progress=False, report=False)
    other = tiny_cfg({"space": [{"key": "battery.soc_min_pct", "low": 5.0, "high": 50.0}]})
    b = run_tune(other, history, trials=1, out=tmp_path, progress=False, report=False)
    assert a.study != b.study
    assert run_tune(tiny_cfg(), history, trials=2, out=tmp_path, progress=False, report=False).study == a.study


def test_a_named_study_refuses_a_changed_search_space(history, tmp_path):
    run_tune(tiny_cfg(), history, trials=1, out=tmp_path, study="s", progress=False, report=False)
    other = tiny_cfg({"space": [{"key": "battery.soc_min_pct", "low": 5.0, "high": 50.0}]})
    with pytest.raises(ConfigError, match="another \\[tune\\] section"):
        run_tune(other, history, trials=2, out=tmp_path, study="s", progress=False, report=False)


def test_a_cap_no_setting_meets_leaves_no_best_and_the_cli_says_so(history, tmp_path, capsys):
    data = tiny_data({"space": [HORIZON], "max_peak_kw": 10.0})
    path = tmp_path / "tiny.toml"
    path.write_text(dumps(data))
    code = main(["tune", "--config", str(path), "--input", str(history), "--trials", "2",
                 "--out", str(tmp_path / "out"), "-q"])
    assert code == 1
    assert "no feasible trial" in capsys.readouterr().err
    assert not (tmp_path / "out" / "best-config.toml").exists()
    assert (tmp_path / "out" / "report.html").exists()


def test_cli_tune_writes_a_config_that_loads(history, tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(dumps(tiny_data({"space": [HORIZON]})))
    code = main(["tune", "--config", str(path), "--input", str(history), "--trials", "3",
                 "--out", str(tmp_path / "out"), "--seed", "1", "-q"])
    assert code == 0
    assert "best #" in capsys.readouterr().out
    tuned = tomllib.loads((tmp_path / "out" / "best-config.toml").read_text())
    assert tuned["sites"][0]["dispatch"]["horizon"] in ("4h", "24h")
    assert load_config(tmp_path / "out" / "best-config.toml").tune is not None


def test_scores_count_co2_and_wear_at_the_configured_prices(history):
    cfg = tiny_cfg({"space": [{"key": "carbon.price_per_t", "low": 0.0, "high": 1000.0}]})
    site = cfg.sites[0]
    ev = Evaluator(site, cfg.tune, resolve_space(site, cfg.tune))
    hist = pl.read_parquet(history).head(3 * 24)
    free, m_free = ev.run(hist, {"carbon.price_per_t": 0.0, "battery.wear_cost_per_kwh": 0.0})
    assert free.carbon_cost == 0.0
    wear_kwh = float(free.steps["battery_kw"].abs().sum())
    assert wear_kwh > 0
    assert m_free["cost"] == pytest.approx(free.cost + free.co2_kg * 100.0 / 1e3 + wear_kwh * 0.01
                                           + m_free["terminal_shortfall_cost"])
    base, m_base = ev.run(hist, None)
    assert m_base["cost"] == pytest.approx(base.cost + m_base["terminal_shortfall_cost"])
