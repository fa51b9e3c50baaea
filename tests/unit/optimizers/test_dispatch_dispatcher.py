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


# --------------------------------------------------------------------------- inputs it must not trust

DROPOUT_SITE = {"step": "15m", "horizon": "6h", "redispatch": "15m", "input_window": "15m",
                "forecast": {"pv_kwp": 0.0, "wind_kw": 0.0, "firm_it_kw": 900.0},
                "cooling": [{"name": "liquid", "heat_share": 1.0, "supply_min_c": 20.0, "supply_max_c": 45.0,
                             "chip_limit_c": 80.0, "chip_rise_c": 50.0, "chip_margin_c": 2.0,
                             "design_heat_kw": 1000.0}]}


def _flat_rows(hours: float, it_kw: float, start=START) -> pl.DataFrame:
    n = int(hours * 4)
    t = int(start.timestamp()) * NS + 900 * NS * np.arange(n)
    h = pl.DataFrame({"time": t, "pv_kw": 0.0, "wind_kw": 0.0, "it_kw": it_kw, "ambient_c": 25.0}).with_columns(
        pl.col("time").cast(pl.Datetime("ns", "UTC")))
    return kpi_rows(h, "a", "15m", run="r")


class Recording:
    """The default forecaster, remembering the firm IT load it was shown."""

    def __init__(self, model):
        from pueflow.optimizers.forecast import DefaultForecaster

        self.inner, self.seen = DefaultForecaster(model), []

    def forecast(self, time_ns, recent, hour=None):
        self.seen.append(recent.it_kw.copy())
        return self.inner.forecast(time_ns, recent, hour)


def test_an_it_meter_dropout_is_filled_not_read_as_zero_heat():
    """900 kW constant, 90 min with no IT reading, then the gap's energy in one window (6.3 MW).

    Chip = supply + 50 K x heat / 1000 kW must stay at or below 80 °C: at 900 kW the supply may
    not exceed 80 − 45 = 35 °C (worked by hand), before, during and after the dropout."""
    cfg = tiny_config([{"id": "a", "it_capacity_kw": 1000.0, "dispatch": tiny_dispatch(**DROPOUT_SITE)}])
    rows = _flat_rows(6.0, 900.0)
    gap = np.zeros(rows.height, bool)
    gap[12:18] = True  # 03:00-04:30
    it = np.where(gap, 0.0, 225.0)
    it[18] = 225.0 * 7  # the 90 min of energy lands in the first window after the gap
    rows = rows.with_columns(pl.Series("it_kwh", it), pl.Series("coverage", np.where(gap, 0.0, 1.0)))
    d = Dispatcher(cfg)
    rec = Recording(d.sites["a"].model)
    d.sites["a"].forecaster = rec
    sp, q = d.on_kpi(rows)
    cool = sp.filter(pl.col("asset") == "cooling.liquid")["cooling_supply_c"].to_numpy()
    assert cool.max() <= 35.0 + 1e-9
    filled = q.filter(pl.col("point") == "filled_input")
    assert filled.height >= 7  # every dispatch that starts from a gap window or the 6.3 MW one
    shown = np.concatenate(rec.seen)
    assert np.nanmax(shown) <= 1000.0  # the 6.3 MW window never reached the forecaster
    assert np.isnan(rec.seen[-1][-12:-5]).all()  # the gap is missing, not zero
    assert not (rec.seen[-1] == 0.0).any()


def test_a_sample_at_the_period_end_adds_no_planning_hour():
    """A reading at exactly 24:00 opens a window with next to no coverage: the oracle plans 24 h, not 25."""
    cfg = tiny_config([{"id": "a", "it_capacity_kw": 1000.0, "dispatch": tiny_dispatch(**DROPOUT_SITE)}])
    rows = _flat_rows(24.0, 900.0)
    last = _flat_rows(0.25, 0.0, START + dt.timedelta(days=1)).with_columns(pl.lit(0.001).alias("coverage"))
    d = Dispatcher(cfg, "oracle")
    d.on_kpi(pl.concat([rows, last]))
    sp, _ = d.finish()
    site = sp.filter(pl.col("asset") == "site")
    assert site.height == 96
    assert site["time"].max() == START + dt.timedelta(hours=23, minutes=45)
    assert sp.filter(pl.col("asset") == "cooling.liquid")["cooling_supply_c"].max() <= 35.0 + 1e-9


def test_export_curtailment_and_step_cost_are_published():
    """Flat price 1, 100 kW firm load, 300 kW PV, 50 kW export cap: import 0, export 50, curtail 150;
    each step costs 0 (nothing bought, export and curtailment unpriced), the plan the same."""
    cfg = tiny_config([{"id": "a", "dispatch": tiny_dispatch(
        step="15m", horizon="1h", redispatch="15m", input_window="15m", grid={"export_limit_kw": 50.0},
        forecast={"pv_kwp": 0.0, "wind_kw": 0.0, "firm_it_kw": 100.0, "path": ""})}])
    h = pl.DataFrame({"time": int(START.timestamp()) * NS + 900 * NS * np.arange(8), "pv_kw": 300.0,
                      "wind_kw": 0.0, "it_kw": 100.0, "ambient_c": 20.0}).with_columns(
        pl.col("time").cast(pl.Datetime("ns", "UTC")))
    from pueflow.optimizers.forecast import FrameForecaster

    d = Dispatcher(cfg, forecasters={"a": FrameForecaster(h.with_columns(pl.col("time")))})
    sp, _ = d.on_kpi(kpi_rows(h, "a", "15m"))
    site = sp.filter(pl.col("asset") == "site")
    assert site.height > 0
    np.testing.assert_allclose(site["grid_import_kw"].to_numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(site["grid_export_kw"].to_numpy(), 50.0, atol=1e-6)
    np.testing.assert_allclose(site["curtail_kw"].to_numpy(), 150.0, atol=1e-6)
    np.testing.assert_allclose(site["step_cost"].to_numpy(), 0.0, atol=1e-9)
