"""``kpi.kpis`` / ``kpi.compute`` and the fleet aggregates against ``tests/naive.py``.
Runs with and without NUMBA_DISABLE_JIT."""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from pueflow.pipeline import fleet as fl
from pueflow.pipeline import kpi as kp
from pueflow.roles import ALL_ROLES, ROLE_INDEX
from tests import naive
from tests.conftest import NS, build_config

# NaN/inf inputs are deliberate; without the JIT numpy scalars warn about them
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
FLAGS = {0: None, kp.FLAG_NON_POSITIVE_IT: "non_positive_it",
         kp.FLAG_BETTER_THAN_PERFECT: "better_than_perfect"}


def check_rows(rows: list[dict[str, float]], metered: set[str], co2=0.0):
    """Run the kernel on ``rows`` (role -> energy) and compare every field with naive."""
    e = np.zeros((len(rows), kp.N_ROLES))
    for i, r in enumerate(rows):
        for role, v in r.items():
            e[i, ROLE_INDEX[role]] = v
    m = np.zeros(kp.N_ROLES, bool)
    m[[ROLE_INDEX[r] for r in metered]] = True
    out, flags = kp.compute(e, m, co2)
    assert out.shape == (len(rows), len(kp.KPI_FIELDS))
    for i, r in enumerate(rows):
        want, flag = naive.kpis(r, metered, co2)
        assert FLAGS[int(flags[i])] == flag, r
        for j, name in enumerate(kp.KPI_FIELDS):
            got = out[i, j]
            w = want[name]
            if w is None:
                assert math.isnan(got), (name, r, got)
            else:
                assert got == pytest.approx(w, rel=1e-12, nan_ok=True), (name, r)
    return out, flags


FULL = {"facility", "it", "cooling.chiller", "cooling.cdu_pump", "cooling.dry_cooler",
        "electrical_losses", "other", "pv", "wind", "water_l", "heat_reuse_kwh"}


def test_zero_rows():
    out, flags = check_rows([], FULL)
    assert out.shape == (0, len(kp.KPI_FIELDS))
    assert flags.shape == (0,)


def test_full_site():
    row = {"facility": 1400.0, "it": 1000.0, "cooling.chiller": 150.0, "cooling.cdu_pump": 60.0,
           "cooling.dry_cooler": 40.0, "electrical_losses": 80.0, "other": 20.0, "pv": 300.0,
           "wind": 200.0, "water_l": 1800.0, "heat_reuse_kwh": 70.0}
    out, _ = check_rows([row], FULL, co2=0.61)
    f = dict(zip(kp.KPI_FIELDS, out[0], strict=True))
    assert f["pue"] == pytest.approx(1.4)
    assert f["ppue_cooling"] == pytest.approx(1.25)
    assert f["ref"] == pytest.approx(500 / 1400)
    assert f["cue_kg_per_kwh"] == pytest.approx((1400 - 500) * 0.61 / 1000)
    assert f["wue_l_per_kwh"] == pytest.approx(1.8)
    assert f["erf"] == pytest.approx(0.05)
    assert math.isnan(f["ppue_immersion"])


def test_ref_is_capped_at_one():
    out, _ = check_rows([{"facility": 100.0, "it": 80.0, "pv": 150.0}], {"facility", "it", "pv"})
    assert out[0, kp.F["ref"]] == 1.0
    assert out[0, kp.F["cue_kg_per_kwh"]] == 0.0


def test_cue_uses_grid_meter_when_there_is_one():
    out, _ = check_rows([{"facility": 100.0, "it": 80.0, "pv": 10.0, "grid_import": 95.0}],
                        {"facility", "it", "pv", "grid_import"}, co2=0.5)
    assert out[0, kp.F["cue_kg_per_kwh"]] == pytest.approx(95 * 0.5 / 80)


def test_facility_derived_without_a_facility_meter():
    out, _ = check_rows([{"it": 100.0, "cooling.immersion": 7.0, "other": 3.0}],
                        {"it", "cooling.immersion", "other"})
    assert out[0, kp.F["facility_kwh"]] == 110.0
    assert out[0, kp.F["pue"]] == pytest.approx(1.1)
    assert math.isnan(out[0, kp.F["ppue_electrical"]])


def test_no_cooling_meter_gives_null_cooling():
    out, _ = check_rows([{"facility": 120.0, "it": 100.0}], {"facility", "it"})
    assert math.isnan(out[0, kp.F["cooling_kwh"]])
    assert math.isnan(out[0, kp.F["ppue_cooling"]])


@pytest.mark.parametrize("it", [0.0, -5.0, math.nan, -math.inf])
def test_non_positive_or_missing_it(it):
    out, flags = check_rows([{"facility": 100.0, "it": it}], {"facility", "it"})
    assert flags[0] == kp.FLAG_NON_POSITIVE_IT
    assert not np.isinf(out[0, : kp.F["cooling_kwh"]]).any()


def test_pue_exactly_one_is_reported():
    out, flags = check_rows([{"facility": 100.0, "it": 100.0}], {"facility", "it"})
    assert out[0, kp.F["pue"]] == 1.0
    assert flags[0] == 0


def test_better_than_perfect_still_reports_partials():
    out, flags = check_rows([{"facility": 90.0, "it": 100.0, "cooling.crah": 5.0}],
                            {"facility", "it", "cooling.crah"})
    assert flags[0] == kp.FLAG_BETTER_THAN_PERFECT
    assert math.isnan(out[0, kp.F["pue"]])


def test_zero_facility_gives_no_ref_or_erf():
    out, _ = check_rows([{"facility": 0.0, "it": 0.0, "pv": 5.0, "heat_reuse_kwh": 1.0}],
                        {"facility", "it", "pv", "heat_reuse_kwh"})
    assert math.isnan(out[0, kp.F["ref"]])
    assert math.isnan(out[0, kp.F["erf"]])


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_inf_energies(bad):
    check_rows([{"facility": bad, "it": 100.0, "pv": 3.0}, {"facility": 100.0, "it": bad},
                {"facility": 100.0, "it": 50.0, "cooling.tower": bad}],
               {"facility", "it", "pv", "cooling.tower"})


def test_random_rows_against_reference():
    rng = np.random.default_rng(5)
    roles = [r for r in ALL_ROLES if not r.endswith(("_c", "_lpm", "_soc"))]
    rows, metered = [], set(rng.choice(roles, 9, replace=False)) | {"it"}
    for _ in range(200):
        rows.append({r: float(rng.choice([0.0, rng.uniform(0, 2000), -rng.uniform(0, 5)]))
                     for r in roles})
    check_rows(rows, metered, co2=0.3)


def test_compute_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match="one column per role"):
        kp.compute(np.zeros((2, 3)), np.zeros(kp.N_ROLES, bool), 0.0)


# --------------------------------------------------------------------------- fleet


def _energy(**by_role):
    e = np.zeros(kp.N_ROLES)
    m = np.zeros(kp.N_ROLES, bool)
    for role, v in by_role.items():
        e[ROLE_INDEX[role]] = v
        m[ROLE_INDEX[role]] = True
    return e, m


def test_site_totals_and_fleet_row():
    e, m = _energy(facility=130.0, it=100.0, pv=20.0, water_l=50.0)
    tot = fl.site_totals(e, m, 0.5)
    assert tot.tolist() == [130.0, 100.0, 20.0, 110.0 * 0.5, 50.0]
    row = fl.fleet_row(tot)
    assert row["pue"] == pytest.approx(1.3)
    assert row["ref"] == pytest.approx(20 / 130)
    assert row["cue_kg_per_kwh"] == pytest.approx(0.55)


def test_fleet_row_null_when_it_not_positive_or_pue_below_one():
    assert fl.fleet_row(np.array([10.0, 0.0, 0, 0, 0]))["pue"] is None
    assert fl.fleet_row(np.array([9.0, 10.0, 0, 0, 0]))["pue"] is None
    assert fl.fleet_row(np.array([0.0, 0.0, 0, 0, 0]))["ref"] is None


def _cfg(tzs):
    sites = [{"id": f"s{i}", "jurisdiction": j, "timezone": tz, "latitude": 0.0,
              "longitude": 0.0, "it_capacity_kw": 1000.0,
              "meters": [{"device": "*", "point": "*", "kind": "power", "role": "it"}]}
             for i, (j, tz) in enumerate(tzs)]
    return build_config([], sites=sites)


def test_fleet_aggregator_waits_for_every_site_and_weights_by_energy():
    cfg = _cfg([("MA", "UTC"), ("ES", "UTC"), ("MA", "UTC")])
    agg = fl.FleetAggregator(cfg)
    z = ZoneInfo("UTC")
    data = [(100.0, 1.1), (50.0, 1.3), (10.0, 2.0)]
    for i, (it, p) in enumerate(data[:2]):
        e, m = _energy(facility=it * p, it=it)
        agg.add(cfg.sites[i], "1h", 0, e, m, z)
    early = agg.flush(final=False)
    assert early is not None
    assert early["scope"].to_list() == ["ES"]
    e, m = _energy(facility=20.0, it=10.0)
    agg.add(cfg.sites[2], "1h", 0, e, m, z)
    df = agg.flush(final=False).sort("scope")
    got = dict(zip(df["scope"], df["pue"], strict=True))
    assert got["fleet"] == pytest.approx(naive.fleet_pue([(it * p, it) for it, p in data]))
    assert got["MA"] == pytest.approx(naive.fleet_pue([(110.0, 100.0), (20.0, 10.0)]))
    assert agg.flush(final=True) is None


def test_fleet_daily_windows_keyed_by_local_date():
    cfg = _cfg([("MA", "Africa/Casablanca"), ("US", "America/Chicago")])
    agg = fl.FleetAggregator(cfg)
    day = 1_719_792_000 * NS                   # 2024-07-01 00:00 UTC
    starts = [day - 3600 * NS, day + 5 * 3600 * NS]   # local midnights of 2024-07-01
    for i, start in enumerate(starts):
        e, m = _energy(facility=150.0, it=100.0)
        agg.add(cfg.sites[i], "1d", start, e, m, ZoneInfo(cfg.sites[i].timezone))
    df = agg.flush(final=False)
    fleet = df.filter(df["scope"] == "fleet")
    assert fleet.height == 1
    assert fleet["sites"][0] == 2
    assert fleet["time"][0].timestamp() == day / NS


def test_summary_and_fleet_give_null_not_inf_for_no_it_energy():
    """The run summary applies the kernel's rules to its sums: no IT energy -> null PUE."""
    import polars as pl

    from pueflow.modes.summary import summarise

    kpi = pl.DataFrame({
        "site": ["a", "a", "b"], "window": ["15m"] * 3, "time": [0, 1, 0],
        "facility_kwh": [10.0, 5.0, 30.0], "it_kwh": [0.0, 0.0, 20.0],
        "cooling_kwh": [1.0, 1.0, 2.0], "pv_kwh": [None, None, 3.0], "wind_kwh": [None] * 3,
        "coverage": [1.0, 1.0, 1.0], "resets": [0] * 3, "rollovers": [0] * 3, "gaps": [0] * 3,
        "ambient_temp_c": [20.0] * 3,
    })
    out = summarise(kpi, pl.DataFrame()).sort("site")
    assert out["pue"].to_list() == [None, 1.5]
    assert out["ppue_cooling"][0] is None
    assert out["ppue_cooling"][1] == pytest.approx(1.1)
    assert out["ref"].to_list() == [0.0, 0.1]
    # a facility below IT (better than perfect) is null too, as in the kernel
    assert fl.fleet_row(np.array([9.0, 10.0, 1.0, 0, 0]))["pue"] is None
