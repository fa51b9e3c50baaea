"""Simulator physics and determinism: energy balance, CDU heat balance, chillers in heat,
PV at night, seeds, chunking, truth windows, output files, config sections."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pueflow.config.load import load_config, parse_config
from pueflow.config.plant import PlantSpec
from pueflow.exceptions import ConfigError
from pueflow.sim import simulate, simulate_to_file
from pueflow.sim.cooling import heat_sink

ROOT = Path(__file__).resolve().parents[3]
JULY = datetime(2026, 7, 20, tzinfo=UTC)
STEP = 60.0


def tetouan():
    return load_config(ROOT / "config" / "tetouan-7.5mw.toml")


@pytest.fixture(scope="module")
def cfg():
    return tetouan()


@pytest.fixture(scope="module")
def clean(cfg):
    return simulate(cfg, JULY, 1, seed=11, step_s=STEP, faults=False)


def with_roles(cfg, tel: pl.DataFrame) -> pl.DataFrame:
    """Telemetry with the role and kind of the meter rule each (device, point) matches."""
    site = cfg.sites[0]
    keys = tel.select("device", "point").unique()
    rules = [site.rule_for(d, p) for d, p in keys.iter_rows()]
    assert all(r is not None for r in rules), "every emitted series has a meter rule"
    keys = keys.with_columns(pl.Series("role", [r.role for r in rules]),
                             pl.Series("kind", [r.kind for r in rules]),
                             pl.Series("register_max", [r.register_max for r in rules]))
    return tel.join(keys, on=["device", "point"])


def power_by_role(tel: pl.DataFrame) -> pl.DataFrame:
    """Wide frame: time x summed power [kW] per role (power meters only)."""
    p = tel.filter(pl.col("kind") == "power").group_by("time", "role").agg(pl.col("value").sum())
    return p.pivot(on="role", index="time", values="value").sort("time").fill_null(0.0)


def register_deltas(tel: pl.DataFrame, role: str) -> pl.DataFrame:
    """Energy per interval (ending at ``time``) from the registers of ``role``, rollovers undone."""
    r = tel.filter(pl.col("role") == role).sort("device", "time")
    d = r.with_columns((pl.col("value") - pl.col("value").shift(1).over("device")).alias("d"))
    d = d.with_columns(pl.when(pl.col("d") < 0).then(pl.col("d") + pl.col("register_max"))
                       .otherwise(pl.col("d")).alias("d"))
    return d.drop_nulls("d").group_by("time").agg(pl.col("d").sum()).sort("time")


def trapezoid(times: pl.Series, power: np.ndarray) -> np.ndarray:
    dt_h = np.diff(times.cast(pl.Int64).to_numpy()) / 3.6e12
    return 0.5 * (power[1:] + power[:-1]) * dt_h


# ------------------------------------------------------------------ energy balance


def test_facility_register_equals_it_cooling_losses_other_sample_by_sample(cfg, clean):
    tel = with_roles(cfg, clean.telemetry)
    wide = power_by_role(tel)
    loads = [c for c in wide.columns if c == "it" or c.startswith("cooling.")
             or c in ("electrical_losses", "other")]
    assert {"it", "cooling.cdu_pump", "cooling.dry_cooler", "electrical_losses", "other"} <= set(loads)
    facility_kw = wide.select(pl.sum_horizontal(loads)).to_series().to_numpy()
    expected = trapezoid(wide["time"], facility_kw)
    got = register_deltas(tel, "facility")
    assert got["time"].to_list() == wide["time"][1:].to_list()
    np.testing.assert_allclose(got["d"].to_numpy(), expected, rtol=1e-9)


def test_grid_registers_close_the_site_balance(cfg, clean):
    tel = with_roles(cfg, clean.telemetry)
    wide = power_by_role(tel)
    loads = [c for c in wide.columns if c == "it" or c.startswith("cooling.")
             or c in ("electrical_losses", "other")]
    net_kw = (wide.select(pl.sum_horizontal(loads)).to_series()
              - wide["pv"] - wide["wind"] + wide["battery"]).to_numpy()
    imp = register_deltas(tel, "grid_import")["d"].to_numpy()
    exp = register_deltas(tel, "grid_export")["d"].to_numpy()
    np.testing.assert_allclose(imp - exp, trapezoid(wide["time"], net_kw), rtol=1e-9, atol=1e-6)
    assert (imp >= 0).all()
    assert (exp >= 0).all()


def test_truth_balances(clean):
    t = clean.truth
    parts = t["it_kwh"] + t["cooling_kwh"] + t["electrical_losses_kwh"] + t["other_kwh"]
    np.testing.assert_allclose(t["facility_kwh"].to_numpy(), parts.to_numpy(), rtol=1e-12)
    grid = t["facility_kwh"] - t["pv_kwh"] - t["wind_kwh"] + t["battery_kwh"]
    np.testing.assert_allclose((t["grid_import_kwh"] - t["grid_export_kwh"]).to_numpy(),
                               grid.to_numpy(), rtol=1e-9, atol=1e-6)
    assert t.filter(pl.col("pue") < 1.0).height == 0


# ------------------------------------------------------------------ cooling physics


def test_cdu_flow_and_delta_t_carry_the_rack_heat(cfg, clean):
    plant = cfg.sites[0].plant
    tel = clean.telemetry
    pdu = tel.filter(pl.col("device").str.starts_with("pdu-") & ~pl.col("device").str.contains("imm"))
    racks = sorted(pdu["device"].unique().to_list())
    cdus = sorted(tel.filter(pl.col("device").str.starts_with("cdu-"))["device"].unique().to_list())
    # racks are assigned to CDUs in contiguous blocks
    owner = {r: cdus[(i * len(cdus)) // len(racks)] for i, r in enumerate(racks)}
    heat = (pdu.with_columns(pl.col("device").replace_strict(owner).alias("cdu"))
            .group_by("time", "cdu").agg((pl.col("value").sum() * plant.racks.liquid_fraction).alias("q")))
    cdu = (tel.filter(pl.col("device").str.starts_with("cdu-"))
           .pivot(on="point", index=["time", "device"], values="value").rename({"device": "cdu"}))
    j = heat.join(cdu, on=["time", "cdu"])
    assert j.height == (24 * 60 + 1) * len(cdus)
    m_kg_s = j["flow_lpm"] / 60.0 / 1000.0 * plant.cdu.fluid_density_kg_m3
    q_kw = m_kg_s * plant.cdu.fluid_cp_kj_per_kg_k * (j["return_temp_c"] - j["supply_temp_c"])
    np.testing.assert_allclose(q_kw.to_numpy(), j["q"].to_numpy(), rtol=1e-9)
    # loaded CDUs run at the design temperature difference
    dt = (j["return_temp_c"] - j["supply_temp_c"]).to_numpy()
    assert np.allclose(dt[j["q"].to_numpy() > 0.5 * plant.cdu.rated_kw], plant.cdu.delta_t_design_k)
    assert (j["pump_power_kw"] > 0).all()


def test_heat_sink_chiller_runs_only_when_ambient_plus_approach_exceeds_setpoint():
    plant = PlantSpec.model_validate({"dry_cooler": {"count": 8, "rated_kw": 1000.0, "approach_k": 6.0},
                                      "chiller": {"count": 4, "capacity_kw": 2500.0}})
    ambient = np.linspace(5.0, 45.0, 81)
    heat = np.full_like(ambient, 8000.0)  # the dry coolers' rating: threshold is exactly 24 degC
    r = heat_sink(plant, 8, 4, ambient, ambient - 6.0, heat)
    chill = r.chiller_kw.sum(axis=1)
    fans = r.sink_fan_kw.sum(axis=1)
    setpoint = plant.cdu.supply_setpoint_c - plant.cdu.approach_k
    free = ambient + plant.dry_cooler.approach_k <= setpoint
    assert (chill[free] == 0).all()
    assert (chill[~free] > 0).all()
    assert (np.diff(chill) >= -1e-9).all(), "chiller power never falls as it gets hotter"
    assert (np.diff(fans[free]) >= -1e-9).all()
    assert fans[free][-1] > 3 * fans[free][0]
    assert np.allclose(r.facility_supply_c, setpoint)  # capacity suffices: setpoint held


def test_chiller_energy_higher_on_hot_days(cfg):
    hot, mild = cfg.model_copy(deep=True), cfg.model_copy(deep=True)
    hot.sites[0].plant.climate.hot_spell_probability = 1.0
    mild.sites[0].plant.climate.hot_spell_probability = 0.0
    kw = {"seed": 5, "step_s": STEP, "faults": False}
    t_hot = simulate(hot, JULY, 1, **kw).truth.filter(pl.col("window") == "1h")
    t_mild = simulate(mild, JULY, 1, **kw).truth.filter(pl.col("window") == "1h")
    assert t_hot["ambient_temp_c"].max() > 40 > t_mild["ambient_temp_c"].max()
    assert t_hot["cooling_chiller_kwh"].sum() > 2 * t_mild["cooling_chiller_kwh"].sum()
    assert t_hot["cooling_kwh"].sum() > t_mild["cooling_kwh"].sum()
    winter = simulate(mild, datetime(2026, 1, 12, tzinfo=UTC), 1, **kw).truth
    assert winter["cooling_chiller_kwh"].sum() == 0.0


# ------------------------------------------------------------------ PV, wind, battery


def test_pv_zero_at_night_and_producing_at_noon(cfg, clean):
    import pvlib

    site = cfg.sites[0]
    pv = (clean.telemetry.filter(pl.col("device").str.starts_with("pv-inv-"))
          .group_by("time").agg(pl.col("value").sum()).sort("time"))
    pos = pvlib.solarposition.get_solarposition(pv["time"].to_pandas(), site.latitude, site.longitude)
    elev = pos["apparent_elevation"].to_numpy()
    kw = pv["value"].to_numpy()
    assert (kw[elev < -1.0] == 0.0).all()
    assert (kw >= 0).all()
    assert kw[elev > 50].min() > 0.2 * site.plant.pv.kwp


def test_wind_and_battery_stay_within_ratings(cfg, clean):
    from pueflow.sim.wind import power_curve

    plant = cfg.sites[0].plant
    tel = clean.telemetry
    _, curve_kw, _ = power_curve(plant.wind.turbine_type, plant.wind.hub_height_m)
    wtg = tel.filter(pl.col("device").str.starts_with("wtg-"))["value"]
    assert wtg.min() >= 0
    assert wtg.max() <= curve_kw.max()
    assert wtg.mean() > 0
    bess = tel.filter(pl.col("device") == "bess-1")
    power = bess.filter(pl.col("point") == "power_kw")["value"]
    soc = bess.filter(pl.col("point") == "soc_pct")["value"]
    assert power.abs().max() <= plant.battery.power_kw + 1e-9
    assert soc.min() >= 100 * plant.battery.soc_min - 1e-9
    assert soc.max() <= 100 * plant.battery.soc_max + 1e-9


# ------------------------------------------------------------------ determinism


def test_same_seed_identical_and_other_seed_different(cfg):
    a = simulate(cfg, JULY, 0.25, seed=3, step_s=STEP, faults=True)
    b = simulate(cfg, JULY, 0.25, seed=3, step_s=STEP, faults=True)
    c = simulate(cfg, JULY, 0.25, seed=4, step_s=STEP, faults=True)
    assert a.telemetry.equals(b.telemetry)
    assert a.truth.equals(b.truth)
    assert a.faults.equals(b.faults)
    assert not a.telemetry.equals(c.telemetry)
    assert not np.allclose(a.truth["it_kwh"].to_numpy(), c.truth["it_kwh"].to_numpy())


def test_chunking_does_not_change_the_output(cfg):
    a = simulate(cfg, JULY, 0.5, seed=8, step_s=STEP, faults=True, chunk_s=3600)
    b = simulate(cfg, JULY, 0.5, seed=8, step_s=STEP, faults=True, chunk_s=77 * 60)
    assert a.telemetry.equals(b.telemetry)
    assert a.faults.equals(b.faults)
    np.testing.assert_allclose(a.truth["facility_kwh"].to_numpy(), b.truth["facility_kwh"].to_numpy(),
                               rtol=1e-12)


def test_weather_does_not_depend_on_the_step(cfg):
    a = simulate(cfg, JULY, 0.25, seed=3, step_s=60, faults=False).truth
    b = simulate(cfg, JULY, 0.25, seed=3, step_s=10, faults=False).truth
    key = ["window", "time"]
    j = a.join(b, on=key, suffix="_b").filter(pl.col("window") == "1h")
    np.testing.assert_allclose(j["ambient_temp_c"], j["ambient_temp_c_b"], atol=0.05)
    np.testing.assert_allclose(j["pv_kwh"], j["pv_kwh_b"], rtol=0.02, atol=1.0)


# ------------------------------------------------------------------ truth, schema, files


def test_truth_windows_and_local_days(clean):
    t = clean.truth
    assert set(t["window"].unique()) == {"1m", "15m", "1h", "1d"}
    days = t.filter(pl.col("window") == "1d")
    # Africa/Casablanca is UTC+1 in July: local midnight is 23:00 UTC
    assert days["time"].dt.hour().to_list() == [23, 23]
    assert days["coverage"].sum() == pytest.approx(1.0)
    hours = t.filter(pl.col("window") == "1h")
    # 24 full hours, and the hour the closing sample opens (no energy, coverage 0)
    assert hours.height == 25
    assert (hours["coverage"][:24] == 1.0).all()
    assert hours["coverage"][24] == 0.0
    assert hours["facility_kwh"][24] == 0.0
    np.testing.assert_allclose(hours["facility_kwh"].sum(), days["facility_kwh"].sum(), rtol=1e-12)
    assert t.filter(pl.col("coverage") > 0)["pue"].null_count() == 0


def test_telemetry_schema_and_names(cfg, clean):
    tel = clean.telemetry
    assert tel.schema == {"time": pl.Datetime("ns", "UTC"), "site": pl.String, "device": pl.String,
                          "point": pl.String, "value": pl.Float64}
    tel_roles = with_roles(cfg, tel).select("device", "point", "role").unique()
    want = {("incomer-1", "energy_kwh", "facility"), ("pdu-01", "power_kw", "it"),
            ("cdu-1", "flow_lpm", "flow_lpm"), ("drycooler-1", "fan_power_kw", "cooling.dry_cooler"),
            ("chiller-1", "power_kw", "cooling.chiller"), ("crah-1", "power_kw", "cooling.crah"),
            ("ups-1", "loss_kw", "electrical_losses"), ("aux-1", "power_kw", "other"),
            ("pv-inv-1", "power_kw", "pv"), ("wtg-1", "power_kw", "wind"),
            ("grid-1", "import_kwh", "grid_import"), ("grid-1", "export_kwh", "grid_export"),
            ("bess-1", "soc_pct", "battery_soc"), ("weather-1", "ambient_temp_c", "ambient_temp_c"),
            ("water-1", "volume_l", "water_l")}
    assert want <= set(tel_roles.iter_rows())
    n_series = tel.select("device", "point").unique().height
    assert tel.height == n_series * (24 * 60 + 1) == clean.rows


def test_other_configs_simulate(tmp_path):
    hall = load_config(ROOT / "config" / "dakhla-40mw-gb200.toml")
    r = simulate(hall, JULY, 1 / 24, seed=1, step_s=STEP, faults=False)
    devices = set(r.telemetry["device"].unique())
    assert {"tower-01", "immersion-01", "pdu-300", "pdu-imm-20", "cdu-30"} <= devices
    h = r.truth.filter(pl.col("window") == "1h", pl.col("coverage") == 1.0)
    assert h["it_kwh"].item() > 25_000
    assert h["water_l"].item() > 0
    assert h["cooling_tower_kwh"].item() > 0
    assert h["cooling_immersion_kwh"].item() > 0
    fleet = load_config(ROOT / "config" / "fleet-4-countries.toml")
    f = simulate(fleet, JULY, 1 / 24, seed=1, step_s=STEP, faults=False)
    assert set(f.truth["site"].unique()) == {s.id for s in fleet.sites}


def test_simulate_to_file_writes_telemetry_truth_and_faults(cfg, tmp_path):
    out = tmp_path / "sim" / "telemetry.csv"
    res = simulate_to_file(cfg, JULY, 0.05, out, fmt="csv", seed=2, step_s=STEP, faults=True,
                           progress=False)
    assert out.exists()
    assert res.telemetry is None
    assert pl.read_csv(out).height == res.rows
    truth = pl.read_parquet(out.parent / "truth.parquet")
    assert truth.equals(res.truth)
    assert pl.read_parquet(out.parent / "faults.parquet").columns == res.faults.columns


def test_bad_arguments_say_how_to_fix(cfg):
    with pytest.raises(ValueError, match="timezone-aware"):
        simulate(cfg, datetime(2026, 7, 20), 1, seed=1)  # noqa: DTZ001
    with pytest.raises(ValueError, match="must divide the smallest window"):
        simulate(cfg, JULY, 1, seed=1, step_s=7)
    with pytest.raises(ValueError, match="multiple of step_s"):
        simulate(cfg, datetime(2026, 7, 20, 0, 0, 5, tzinfo=UTC), 1, seed=1, step_s=10)


# ------------------------------------------------------------------ config


def test_plant_section_is_optional_and_checked():
    site = {"id": "s1", "jurisdiction": "MA", "latitude": 35.0, "longitude": -5.0,
            "it_capacity_kw": 2000, "meters": [{"device": "pdu-*", "point": "power_kw",
                                                "kind": "power", "role": "it"}]}
    cfg = parse_config({"sites": [site]})
    assert cfg.sites[0].plant == PlantSpec()
    r = simulate(cfg, JULY, 1 / 24, seed=1, step_s=STEP, faults=False)
    assert set(r.telemetry["point"].unique()) == {"power_kw"}  # only what the rules map
    assert r.truth["facility_kwh"].sum() > r.truth["it_kwh"].sum() > 0
    with pytest.raises(ConfigError, match="did you mean 'count'"):
        parse_config({"sites": [{**site, "plant": {"racks": {"cuont": 3}}}]})
    bad = parse_config({"sites": [{**site, "meters": [
        *site["meters"], {"device": "chiller-*", "point": "power_kw", "kind": "power", "role": "other"}]}]})
    with pytest.raises(ConfigError, match="kind = 'power', role = 'cooling.chiller'"):
        simulate(bad, JULY, 1 / 24, seed=1, step_s=STEP)
