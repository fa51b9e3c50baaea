"""The streaming bridge: KPI rows in, setpoint and quality rows out, driven by event time."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from pueflow.config.load import load_config
from pueflow.exceptions import OptimizerError
from pueflow.optimizers.assets import site_model
from pueflow.optimizers.dispatcher import SETPOINT_FIELDS, Dispatcher
from pueflow.optimizers.synthetic import synthetic_history
from pueflow.optimizers.testing import kpi_rows, tiny_config, tiny_dispatch
from pueflow.schema import rows as rw

START = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
NS = 10**9


def _cfg(**dispatch):
    d = tiny_dispatch(**{"step": "15m", "horizon": "6h", "redispatch": "30m", "input_window": "15m",
                         "battery": {"energy_kwh": 400.0, "charge_kw": 100.0, "discharge_kw": 100.0},
                         "jobs": [{"name": "train", "max_kw": 200.0, "work_h": 6.0, "idle_kw": 20.0}],
                         "cooling": [{"name": "liquid"}], **dispatch})
    return tiny_config([{"id": "a", "dispatch": d}, {"id": "b"}])


def _rows(cfg, hours=3.0, site="a", soc_pct=None):
    m = site_model(cfg.site(site) if site == "a" else cfg.site("a"))
    h = synthetic_history(m, START, hours / 24, seed=1)
    return kpi_rows(h, site, "15m", run="replay-1", soc_pct=soc_pct)


def test_publishes_every_boundary_with_the_contract_columns():
    cfg = _cfg()
    sp, q = Dispatcher(cfg).on_kpi(_rows(cfg))
    assert sp.columns == ["time", "site", "asset", "run", *SETPOINT_FIELDS]
    assert sp.schema["time"] == rw.TIME_DTYPE
    assert set(sp["run"]) == {"replay-1"}
    site_rows = sp.filter(pl.col("asset") == "site")
    # rows end at 03:00 -> boundaries 00:30 ... 03:00 every 30 min, two 15-min steps each
    t = site_rows["time"].cast(pl.Int64).to_numpy()
    t0 = int(START.timestamp()) * NS
    assert list((t - t0) // (900 * NS)) == list(range(2, 14))
    assert set(sp["asset"]) == {"site", "cooling.liquid", "job.train"}
    assert site_rows["battery_kw"].null_count() == 0
    assert site_rows["cooling_supply_c"].null_count() == len(site_rows)
    cool = sp.filter(pl.col("asset") == "cooling.liquid")
    assert cool["cooling_supply_c"].is_between(20.0, 45.0).all()
    assert q.columns == list(q.schema)
    assert set(q["kind"].to_list()) <= {"dispatch_fallback"}


def test_same_setpoints_however_the_rows_are_batched():
    """Measured SoC and import of later windows in the same batch must not leak backwards."""
    cfg = _cfg(tariff={"demand_charge_per_kw": 5.0})
    rows = _rows(cfg, hours=4.0)
    n = rows.height
    rows = rows.with_columns(pl.Series("battery_soc", np.linspace(20, 80, n)),
                             pl.Series("grid_import_kwh", np.linspace(10, 60, n)))
    whole_sp, whole_q = Dispatcher(cfg).on_kpi(rows)
    d = Dispatcher(cfg)
    parts = [d.on_kpi(rows[i:i + 3]) for i in range(0, n, 3)]
    assert pl.concat([p[0] for p in parts]).equals(whole_sp)
    assert pl.concat([p[1] for p in parts]).equals(whole_q)


def test_sites_without_dispatch_and_other_windows_are_ignored():
    cfg = _cfg()
    other = _rows(cfg, site="b")
    hourly = _rows(cfg).with_columns(pl.lit("1h").alias("window"))
    d = Dispatcher(cfg)
    assert set(d.sites) == {"a"}
    for rows in (other, hourly, other.clear()):
        sp, q = d.on_kpi(rows)
        assert sp.height == 0
        assert q.height == 0


def test_measured_soc_outside_the_band_gives_a_plan_and_a_quality_event():
    cfg = _cfg()
    sp, q = Dispatcher(cfg).on_kpi(_rows(cfg, hours=1.0, soc_pct=97.0))
    assert sp.filter(pl.col("asset") == "site").height == 4
    ev = q.filter((pl.col("kind") == "dispatch_fallback") & (pl.col("device") == "battery"))
    assert ev.height >= 1
    assert "outside" in ev["detail"][0]


def test_infeasible_lp_falls_back_and_clips():
    cfg = _cfg(grid={"import_limit_kw": 50.0})
    sp, q = Dispatcher(cfg).on_kpi(_rows(cfg, hours=1.0))
    fb = q.filter((pl.col("kind") == "dispatch_fallback") & (pl.col("device") == "lp"))
    assert fb.height >= 1
    assert "infeasible" in fb["detail"][0]
    assert set(fb["point"]) == {"infeasible"}
    clipped = q.filter(pl.col("kind") == "setpoint_clipped")
    assert clipped.height >= 1
    assert set(clipped["point"]) >= {"grid_import_kw"}
    assert sp.filter(pl.col("asset") == "site")["grid_import_kw"].max() <= 50.0


def test_impossible_deadline_is_reported_once_per_window():
    cfg = _cfg(jobs=[{"name": "train", "max_kw": 200.0, "work_h": 30.0, "window_start": "00:00",
                      "window_end": "04:00"}], horizon="6h")
    sp, q = Dispatcher(cfg).on_kpi(_rows(cfg, hours=3.0))
    ev = q.filter(pl.col("point") == "unmet_work_h")
    assert ev.height >= 1
    assert ev["value"][0] > 20
    assert ev.height <= 2  # not repeated every 30 min
    assert sp.height > 0


def test_oracle_publishes_at_the_end():
    cfg = _cfg()
    d = Dispatcher(cfg, "oracle")
    sp, _ = d.on_kpi(_rows(cfg, hours=3.0))
    assert sp.height == 0
    sp, q = d.finish()
    assert sp.filter(pl.col("asset") == "site").height == 12
    assert Dispatcher(cfg).finish()[0].height == 0


def test_rule_policy_and_unknown_policy():
    cfg = _cfg()
    sp, q = Dispatcher(cfg, "rule").on_kpi(_rows(cfg, hours=1.0))
    assert sp.filter(pl.col("asset") == "site").height == 4
    assert q.filter(pl.col("device") == "lp").height == 0
    with pytest.raises(OptimizerError, match="unknown"):
        Dispatcher(cfg, "greedy")


def test_example_configs_dispatch_every_site():
    for path in ("config/dakhla-40mw-gb200.toml", "config/tetouan-7.5mw.toml", "config/fleet-4-countries.toml"):
        cfg = load_config(path)
        assert set(Dispatcher(cfg).sites) == {s.id for s in cfg.sites}


def test_through_the_streaming_core():
    """The core hands closed windows to the dispatcher and emits its setpoints."""
    from pueflow.pipeline.core import Pipeline
    from pueflow.schema.batch import Batch

    cfg = _cfg()
    pipe = Pipeline(cfg, dispatcher=Dispatcher(cfg), run="t", clock_ns=lambda: 4 * 10**18)
    sid = pipe.registry.id("a", "pdu-1", "power_kw")
    t0 = int(START.timestamp()) * NS
    t = t0 + 60 * NS * np.arange(120)
    outs = [pipe.process(Batch(t[i:i + 30], np.full(30, sid, np.int32), np.full(30, 150.0)))
            for i in range(0, 120, 30)]
    outs.append(pipe.finalize())
    sp = pl.concat([o.setpoint for o in outs if o.setpoint is not None and o.setpoint.height])
    assert sp.height > 0
    assert set(sp["site"]) == {"a"}
    assert set(sp["run"]) == {"t"}


def test_a_failing_forecaster_is_a_quality_event_not_an_exception():
    class Broken:
        def forecast(self, time_ns, recent, hour=None):
            raise RuntimeError("feed down")

    cfg = _cfg()
    sp, q = Dispatcher(cfg, forecasters={"a": Broken()}).on_kpi(_rows(cfg, hours=1.0))
    assert sp.height == 0
    assert q.height == 2
    assert set(q["device"]) == {"forecast"}
    assert "feed down" in q["detail"][0]
