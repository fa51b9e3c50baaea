"""Simulated meters: fault injection at the configured rates, every fault recorded, arrival
order, register rollover at the configured maximum, and the register/reset kernels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pueflow.config.load import load_config
from pueflow.sim import simulate
from pueflow.sim.meters import RegisterBank
from pueflow.units import parse_duration_ns

ROOT = Path(__file__).resolve().parents[3]
JULY = datetime(2026, 7, 20, tzinfo=UTC)
STEP = 60.0
RATES = {"gaps_per_series_day": 0.5, "spikes_per_series_day": 0.5, "duplicates_per_series_day": 1.0,
         "late_per_series_day": 1.0, "out_of_order_per_series_day": 1.0, "nan_per_series_day": 0.5,
         "jitter_per_register_day": 6.0, "resets_per_register_day": 0.0,
         "rollover_register_fraction": 0.0}


def tetouan():
    return load_config(ROOT / "config" / "tetouan-7.5mw.toml")


@pytest.fixture(scope="module")
def noisy():
    cfg = tetouan()
    for k, v in RATES.items():
        setattr(cfg.sites[0].plant.faults, k, v)
    res = simulate(cfg, JULY, 1, seed=21, step_s=STEP, faults=True)
    return cfg, res


def kinds_of(cfg, res) -> dict[str, int]:
    site = cfg.sites[0]
    keys = res.telemetry.select("device", "point").unique()
    return {k: sum(1 for d, p in keys.iter_rows() if site.rule_for(d, p).kind == k)
            for k in ("power", "register", "sensor")}


def test_faults_off_records_nothing():
    res = simulate(tetouan(), JULY, 1, seed=21, step_s=STEP, faults=False)
    assert res.faults.height == 0
    assert res.telemetry.filter(pl.col("value").is_nan()).height == 0
    assert res.telemetry.select("time", "device", "point").is_duplicated().sum() == 0


def test_fault_counts_match_configured_rates(noisy):
    cfg, res = noisy
    n = kinds_of(cfg, res)
    total = sum(n.values())
    jitter_registers = sum(1 for d, p in res.telemetry.select("device", "point").unique().iter_rows()
                           if cfg.sites[0].rule_for(d, p).kind == "register"
                           and cfg.sites[0].rule_for(d, p).jitter_kwh > 0)
    expected = {"gap": RATES["gaps_per_series_day"] * total,
                "spike": RATES["spikes_per_series_day"] * n["power"],
                "duplicate": RATES["duplicates_per_series_day"] * total,
                "late": RATES["late_per_series_day"] * total,
                "out_of_order": RATES["out_of_order_per_series_day"] * total,
                "nan": RATES["nan_per_series_day"] * total,
                "jitter": RATES["jitter_per_register_day"] * jitter_registers}
    got = dict(res.faults.group_by("kind").len().iter_rows())
    for kind, mean in expected.items():
        assert abs(got.get(kind, 0) - mean) < 5 * np.sqrt(mean) + 2, (kind, got.get(kind), mean)
    assert "reset" not in got
    assert "rollover" not in got


def test_each_fault_is_visible_in_the_telemetry(noisy):
    cfg, res = noisy
    tel = res.telemetry.with_row_index("pos")
    f = res.faults
    key = ["time", "device", "point"]
    step = int(STEP * 1e9)
    n_samples = 24 * 60 + 1
    per_key = tel.group_by(key).agg(pl.len().alias("n"), pl.col("value").first(), pl.col("pos").min())
    # gaps: the rows are missing for as long as recorded
    for t, dev, pt, dur in f.filter(pl.col("kind") == "gap").select(*key, "detail").iter_rows():
        gone = per_key.filter((pl.col("device") == dev) & (pl.col("point") == pt)
                              & (pl.col("time") >= t)
                              & (pl.col("time") < t + timedelta(seconds=dur)))
        assert gone.height == 0
    counts = tel.group_by("device", "point").len()
    gaps = (f.filter(pl.col("kind") == "gap").group_by("device", "point")
            .agg((pl.col("detail").sum() * 1e9 / step).round().cast(pl.Int64).alias("lost")))
    late = f.filter(pl.col("kind") == "late").group_by("device", "point").len("late")
    dups = f.filter(pl.col("kind") == "duplicate").group_by("device", "point").len("dup")
    check = (counts.join(gaps, on=["device", "point"], how="left")
             .join(dups, on=["device", "point"], how="left").fill_null(0))
    assert (check["len"] == n_samples - check["lost"] + check["dup"]).all()
    assert late.height > 0
    # spikes above max_kw, NaNs as NaN, duplicates twice
    joined = f.join(per_key, on=key, how="left")
    spikes = joined.filter(pl.col("kind") == "spike")
    assert (spikes["value"] > 3 * cfg.sites[0].it_capacity_kw).all()
    assert joined.filter(pl.col("kind") == "nan")["value"].is_nan().all()
    assert (joined.filter(pl.col("kind") == "duplicate")["n"] == 2).all()
    expected = dict(f.select("kind", "expected_quality").unique().iter_rows())
    assert expected["spike"] == "spike"
    assert expected["nan"] == "invalid_value"
    assert expected["late"] == "late"
    assert expected["out_of_order"] is None
    assert expected["jitter"] is None


def test_late_rows_arrive_after_the_grace_period(noisy):
    cfg, res = noisy
    grace = parse_duration_ns(cfg.pipeline.grace)
    t_ns = res.telemetry["time"].cast(pl.Int64).to_numpy()
    running_max = np.maximum.accumulate(t_ns)
    pos = res.telemetry.with_row_index("pos")
    for kind, beyond in (("late", True), ("out_of_order", False)):
        rows = res.faults.filter(pl.col("kind") == kind).join(pos, on=["time", "device", "point"])
        assert rows.height > 0
        lag = running_max[rows["pos"].to_numpy()] - rows["time"].cast(pl.Int64).to_numpy()
        assert ((lag > grace) if beyond else (lag <= grace)).all(), kind
    # everything else is in time order
    others = np.ones(len(t_ns), bool)
    others[pos.join(res.faults.filter(pl.col("kind").is_in(["late", "out_of_order", "duplicate"])),
                    on=["time", "device", "point"])["pos"].to_numpy()] = False
    assert (np.diff(t_ns[others]) >= 0).all()


def test_jitter_is_a_small_decrease(noisy):
    cfg, res = noisy
    regs = res.telemetry.filter(pl.col("point").is_in(["energy_kwh", "import_kwh", "export_kwh"]))
    regs = regs.sort("device", "point", "time").with_columns(
        (pl.col("value") - pl.col("value").shift(1).over("device", "point")).alias("d"))
    jit = res.faults.filter(pl.col("kind") == "jitter").join(regs, on=["time", "device", "point"])
    assert jit.height > 0
    assert (jit["d"] < 0).all()
    assert (jit["d"] > -0.5).all()


def test_registers_roll_over_at_the_configured_max():
    cfg = tetouan()
    for rule in cfg.sites[0].meters:
        if rule.device == "incomer-*":
            rule.register_max = 2000.0
    res = simulate(cfg, JULY, 0.5, seed=4, step_s=STEP, faults=False)
    inc = res.telemetry.filter(pl.col("device").str.starts_with("incomer-")).sort("device", "time")
    assert inc["value"].max() < 2000.0
    assert inc["value"].min() >= 0.0
    d = inc.with_columns((pl.col("value") - pl.col("value").shift(1).over("device")).alias("d")).drop_nulls("d")
    wraps = d.filter(pl.col("d") < 0)
    assert wraps.height > 5
    assert set(res.faults["kind"]) == {"rollover"}
    assert res.faults.select("time", "device").sort("device", "time").equals(
        wraps.select("time", "device").sort("device", "time"))
    energy = (d["d"] + (d["d"] < 0).cast(pl.Float64) * 2000.0).sum()
    truth = res.truth.filter(pl.col("window") == "1h")["facility_kwh"].sum()
    assert energy == pytest.approx(truth, rel=1e-9)


def test_rollover_and_resets_are_recorded_when_injected():
    cfg = tetouan()
    f = cfg.sites[0].plant.faults
    f.rollover_register_fraction = 1.0
    f.resets_per_register_day = 4.0
    res = simulate(cfg, JULY, 1, seed=9, step_s=STEP, faults=True)
    got = res.faults.group_by("kind").len()
    kinds = dict(got.iter_rows())
    assert kinds.get("rollover", 0) >= 1
    assert kinds.get("reset", 0) >= 1
    resets = res.faults.filter(pl.col("kind") == "reset").join(
        res.telemetry, on=["time", "device", "point"])
    truth_1m = res.truth.filter(pl.col("window") == "1m")
    # a reset register restarts from the energy of the interval just before it
    assert (resets["value"] <= truth_1m["facility_kwh"].max()).all()


def test_register_bank_accumulates_the_trapezoid_and_resets():
    p = np.array([[100.0, 0.0], [200.0, 0.0], [300.0, 0.0], [300.0, 0.0]])
    bank = RegisterBank(np.array([1000.0, 5.0]), np.array([1e9, 1e9]), np.array([0.5, 0.5]),
                        np.array([0.5, 0.5]))
    reset = np.zeros(p.shape, bool)
    reset[2, 0] = True
    reset[1, 1] = True  # flat register at 5 kWh: a drop to 0 is a visible reset
    out, wrapped = bank.advance(p[:2], reset[:2])
    out2, _ = bank.advance(p[2:], reset[2:])
    np.testing.assert_allclose(out[:, 0], [1000.0, 1000.0 + 75.0])
    np.testing.assert_allclose(out2[:, 0], [125.0, 125.0 + 150.0])  # reset: reads the last interval
    np.testing.assert_allclose(out[:, 1], [5.0, 0.0])
    assert reset[2, 0]
    assert reset[1, 1]
    assert not wrapped.any()
