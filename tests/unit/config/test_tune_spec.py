"""`[tune]` validation: every bad search-space entry names its key and the fix; history inputs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl
import pytest

from pueflow.config.load import load_config, parse_config
from pueflow.config.tune import TuneSpec
from pueflow.exceptions import ConfigError, InputFormatError
from pueflow.modes.tune.best_config import tuned_config_text
from pueflow.modes.tune.history import load_history, split_periods
from pueflow.modes.tune.objective import resolve_space
from pueflow.optimizers.assets import site_model
from tests.unit.modes.test_tune import tiny_data


def problems(tune: dict[str, Any]) -> list[tuple[str, Any, str]]:
    with pytest.raises(ConfigError) as ei:
        parse_config(tiny_data(tune), "bad.toml")
    return ei.value.problems


@pytest.mark.parametrize(("entry", "where", "says"), [
    ({"key": "battery.soc_min", "low": 10, "high": 40}, "tune.space[0].key",
     "did you mean 'battery.soc_min_pct'"),
    ({"key": "horizn", "type": "categorical", "choices": ["12h"]}, "tune.space[0].key", "did you mean 'horizon'"),
    ({"key": "battery.soc_min_pct", "low": 40, "high": 10}, "tune.space[0]", "low 40 > high 10; swap them"),
    ({"key": "carbon.price_per_t", "low": 0, "high": 1000, "log": True}, "tune.space[0]",
     "log scale needs low > 0"),
    ({"key": "battery.soc_min_pct", "low": 10, "high": 10}, "tune.space[0]", "nothing to search"),
    ({"key": "tariff.default_price_per_kwh", "low": 0.5, "high": 1}, "tune.space[0].key", "cannot be tuned"),
    ({"key": "step", "type": "categorical", "choices": ["15m"]}, "tune.space[0].key", "resample the history"),
    ({"key": "horizon", "low": 6, "high": 48}, "tune.space[0]", "add unit = 'h'"),
    ({"key": "horizon", "type": "categorical"}, "tune.space[0]", "needs choices"),
    ({"key": "jobs", "low": 1, "high": 2}, "tune.space[0].key", "name one item and a field"),
    ({"key": "battery", "low": 1, "high": 2}, "tune.space[0].key", "name a field in it"),
    ({"key": "cooling.0.chiller", "low": 0, "high": 1}, "tune.space[0]", "use type = 'categorical'"),
    ({"key": "battery.soc_min_pct", "type": "int", "low": 10.5, "high": 40}, "tune.space[0]", "whole low/high"),
    ({"key": "battery.soc_min_pct", "low": 10, "high": 40, "hgih": 3}, "tune.space[0].hgih",
     "did you mean 'high'"),
])
def test_a_bad_entry_names_the_key_and_the_fix(entry, where, says):
    probs = problems({"space": [entry]})
    assert len(probs) == 1
    key, value, fix = probs[0]
    assert key == where
    assert says in fix
    assert entry["key"] in fix or entry["key"] == value or where.endswith("hgih")


@pytest.mark.parametrize(("tune", "says"), [
    ({"space": []}, "add at least one [[tune.space]] entry"),
    ({"objective": "weighted"}, "needs weights"),
    ({"objective": "weighted", "weights": {"co2": 1.0}}, "did you mean 'co2_"),
    ({"weights": {"cost": 1.0}}, "only apply to objective = 'weighted'"),
    ({"start": "2026-07-01T00:00:00"}, "time-zone-aware"),
])
def test_bad_tune_settings_say_how_to_fix_them(tune, says):
    tune = {"space": [{"key": "battery.soc_min_pct", "low": 10, "high": 40}], **tune}
    assert any(says in fix for _, _, fix in problems(tune))


def test_site_dependent_entries_are_checked_against_the_site():
    cfg = load_config("config/tetouan-7.5mw.toml")
    site = cfg.sites[0]
    spec = TuneSpec(space=[{"key": "jobs.7.max_kw", "low": 1, "high": 2},
                           {"key": "cooling.chilled.supply_max_c", "low": 38, "high": 45},
                           {"key": "battery.soc_min_pct", "low": 10, "high": 95},
                           {"key": "cooling.d2c.supply_max_c", "low": 30, "high": 45}])
    with pytest.raises(ConfigError) as ei:
        resolve_space(site, spec, "t.toml")
    probs = {k: fix for k, _, fix in ei.value.problems}
    assert "batch-train, eval-night" in probs["tune.space[0].key"]
    assert "no item named 'chilled'" in probs["tune.space[1].key"]
    assert "narrow the range" in probs["tune.space[2].high"]
    assert "soc_max_pct" in probs["tune.space[2].high"]
    assert "nominal_supply_c" in probs["tune.space[3].low"]
    ok = TuneSpec(space=[{"key": "jobs.eval-night.max_kw", "low": 500, "high": 800}])
    assert resolve_space(site, ok) == {"jobs.eval-night.max_kw": "jobs.1.max_kw"}


def test_the_example_configs_tune_sections_resolve():
    for path in ("config/tetouan-7.5mw.toml", "config/dakhla-40mw-gb200.toml"):
        cfg = load_config(path)
        site = cfg.site(cfg.tune.site)
        assert len(resolve_space(site, cfg.tune)) == len(cfg.tune.space)


def test_the_tuned_config_keeps_the_files_comments_and_loads():
    cfg = load_config("config/tetouan-7.5mw.toml")
    ov = {"horizon": "18h", "battery.soc_min_pct": 22.5, "jobs.1.max_kw": 700.0,
          "forecast.load_tau_h": 3.5, "battery.terminal_penalty_per_kwh": 2.0}
    text = tuned_config_text(cfg, "tetouan-1", ov, "tuned for a test")
    assert text.startswith("# tuned for a test\n")
    assert "# ONEE-like high-voltage time-of-use tariff" in text  # comments survive
    assert 'horizon = "18h"  # tuned, was "24h"' in text
    out = parse_config(__import__("tomllib").loads(text))
    d = out.sites[0].dispatch
    assert (d.horizon, d.battery.soc_min_pct, d.jobs[1].max_kw, d.forecast.load_tau_h) == ("18h", 22.5, 700.0, 3.5)
    assert d.battery.terminal_penalty_per_kwh == 2.0
    assert out.model_dump(exclude={"sites"}) == cfg.model_dump(exclude={"sites"})
    cfg.source = ""  # no file to edit: the whole config is written out
    out2 = parse_config(__import__("tomllib").loads(tuned_config_text(cfg, "tetouan-1", ov, "x")))
    assert out2.sites[0].dispatch == d


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Two fault-free days of the 7.5 MW site: telemetry, truth and a replayed store."""
    from pueflow.modes.replay import replay
    from pueflow.sim import simulate_to_file

    cfg = load_config("config/tetouan-7.5mw.toml")
    d = tmp_path_factory.mktemp("sim")
    simulate_to_file(cfg, dt.datetime(2026, 7, 1, tzinfo=dt.UTC), 2, d / "telemetry.parquet", seed=3,
                     step_s=60, faults=False, progress=False)
    replay(cfg, [d / "telemetry.parquet"], out_dir=d / "store", progress=False, run="")
    return cfg, d


def test_history_from_truth_telemetry_and_a_store_agree(simulated):
    cfg, d = simulated
    site = cfg.sites[0]
    m = site_model(site)
    truth = load_history(cfg, site, m, d / "truth.parquet")
    assert truth.source == "truth"
    assert load_history(cfg, site, m, d).source == "truth"  # a folder holding truth.parquet
    tele = load_history(cfg, site, m, d / "telemetry.parquet")
    store = load_history(cfg, site, m, d / "store")
    assert (tele.source, store.source) == ("telemetry", "kpi")
    a = truth.frame
    for h in (tele.frame, store.frame):
        j = a.join(h, on="time", suffix="_b")
        assert j.height >= 2 * 96 - 2
        for c in ("pv_kw", "wind_kw", "it_kw", "ambient_c"):
            assert np.allclose(j[c], j[f"{c}_b"], rtol=1e-3, atol=1.0), c
    assert a["it_kw"].min() > 0  # firm IT: measured minus the jobs' average draw
    assert a["it_kw"].mean() < 0.8 * site.it_capacity_kw


def test_split_periods_and_its_errors(simulated):
    cfg, d = simulated
    site = cfg.sites[0]
    m = site_model(site)
    h = load_history(cfg, site, m, d / "truth.parquet").frame
    spec = TuneSpec(space=[{"key": "battery.soc_min_pct", "low": 10, "high": 40}], validation_days=0.5,
                    warmup_days=0.25)
    p = split_periods(h, spec, m)
    assert (p.train_days, p.validation_days) == (1.25, 0.5)
    assert p.validation["time"][0] == p.split - dt.timedelta(hours=6)  # warm-up from the train period
    with pytest.raises(ConfigError, match="tune.validation_days"):
        split_periods(h, spec.model_copy(update={"validation_days": 1.5}), m, "t.toml")
    with pytest.raises(ConfigError, match="tune.start"):
        split_periods(h, spec.model_copy(update={"start": dt.datetime(2030, 1, 1, tzinfo=dt.UTC)}), m)
    with pytest.raises(InputFormatError, match="neither a history frame"):
        load_history(cfg, site, m, _write(d / "odd.parquet", pl.DataFrame({"a": [1]})))


def _write(path, df):
    df.write_parquet(path)
    return path
