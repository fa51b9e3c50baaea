"""DESIGN.md's worked examples ("KPI rules"), exactly: through the kernels and through the
public core (``Pipeline(cfg).process(Batch(...))`` then ``.finalize()``)."""

from __future__ import annotations

import numpy as np
import pytest

from pueflow.pipeline import energy as en
from pueflow.pipeline import fleet as fl
from pueflow.pipeline import kpi as kp
from pueflow.roles import ROLE_INDEX
from tests import naive
from tests.conftest import NS, Rig, build_config, frames, kpi_sorted, run

H = 3600 * NS
BIG = 1e12   # max_kw far above the examples' implied powers (GWh over an hour)


def register(device, role, **kw):
    # max_gap above the examples' 1 h interval: an interval of exactly max_gap is covered by
    # test_core.py::test_interval_of_exactly_max_gap_is_not_lost
    return {"device": device, "point": "energy_kwh", "kind": "register", "role": role,
            "max_kw": BIG, "max_gap": kw.pop("max_gap", "2h"), **kw}


def power(device, role, max_gap="60s"):
    return {"device": device, "point": "power_kw", "kind": "power", "role": role,
            "max_gap": max_gap}


def energies(**by_role):
    e = np.zeros((1, kp.N_ROLES))
    metered = np.zeros(kp.N_ROLES, bool)
    for role, kwh in by_role.items():
        role = role.replace("__", ".")
        e[0, ROLE_INDEX[role]] = kwh
        metered[ROLE_INDEX[role]] = True
    return e, metered


def one_hour_of(register_deltas: dict[str, float], windows=("1h",)):
    """Run registers that each read 0 at t=0 and their delta at t=1h; the single 1h row."""
    meters = [register(dev, role) for dev, role in
              ((k.replace(".", "-"), k) for k in register_deltas)]
    cfg = build_config(meters, windows=windows)
    rows = []
    for role, kwh in register_deltas.items():
        key = ("s1", role.replace(".", "-"), "energy_kwh")
        rows += [(0, key, 0.0), (H, key, kwh)]
    rows.sort(key=lambda r: r[0])
    p, outs = run(cfg, [rows])
    return kpi_sorted(outs), frames(outs, "quality")


# --------------------------------------------------------------------------- PUE 1.5


def test_pue_ratio_of_energies_kernel():
    e, m = energies(facility=1_500_000.0, it=1_000_000.0)
    out, flags = kp.compute(e, m, 0.0)
    assert out[0, kp.F["pue"]] == 1.5
    assert flags[0] == 0
    assert naive.pue(1_500_000.0, 1_000_000.0) == 1.5


def test_pue_ratio_of_energies_core():
    kpi, _ = one_hour_of({"facility": 1_500_000.0, "it": 1_000_000.0})
    row = kpi.row(0, named=True)
    assert row["window"] == "1h"
    assert row["facility_kwh"] == 1_500_000.0
    assert row["it_kwh"] == 1_000_000.0
    assert row["pue"] == 1.5


# --------------------------------------------------------------------------- pPUE


PARTS = {"it": 1000.0, "cooling.chiller": 250.0, "electrical_losses": 80.0, "other": 20.0}


@pytest.mark.parametrize("with_facility_meter", [False, True])
def test_ppue_example_kernel(with_facility_meter):
    parts = {k.replace(".", "__"): v for k, v in PARTS.items()}
    if with_facility_meter:
        parts["facility"] = 1350.0
    e, m = energies(**parts)
    out, flags = kp.compute(e, m, 0.0)
    f = dict(zip(kp.KPI_FIELDS, out[0], strict=True))
    assert f["pue"] == pytest.approx(1.35, rel=1e-12)
    assert f["ppue_cooling"] == pytest.approx(1.25, rel=1e-12)
    assert f["ppue_chiller"] == pytest.approx(1.25, rel=1e-12)
    assert f["ppue_electrical"] == pytest.approx(1.08, rel=1e-12)
    assert f["ppue_other"] == pytest.approx(1.02, rel=1e-12)
    assert f["facility_kwh"] == 1350.0
    assert [naive.ppue(1000.0, x) for x in (250.0, 80.0, 20.0)] == \
        pytest.approx([1.25, 1.08, 1.02], rel=1e-12)
    # the overheads add up, so the partial PUEs add up to the PUE
    assert 1 + sum(f[k] - 1 for k in ("ppue_cooling", "ppue_electrical", "ppue_other")) == \
        pytest.approx(f["pue"], rel=1e-12)
    assert flags[0] == 0


@pytest.mark.parametrize("with_facility_meter", [False, True])
def test_ppue_example_core(with_facility_meter):
    parts = dict(PARTS)
    if with_facility_meter:
        parts["facility"] = 1350.0
    kpi, _ = one_hour_of(parts)
    row = kpi.row(0, named=True)
    assert row["it_kwh"] == 1000.0
    assert row["cooling_chiller_kwh"] == 250.0
    assert row["cooling_kwh"] == 250.0
    assert row["electrical_losses_kwh"] == 80.0
    assert row["other_kwh"] == 20.0
    assert row["facility_kwh"] == 1350.0
    assert row["pue"] == pytest.approx(1.35, rel=1e-12)
    assert row["ppue_cooling"] == pytest.approx(1.25, rel=1e-12)
    assert row["ppue_chiller"] == pytest.approx(1.25, rel=1e-12)
    assert row["ppue_electrical"] == pytest.approx(1.08, rel=1e-12)
    assert row["ppue_other"] == pytest.approx(1.02, rel=1e-12)
    # subsystems without a meter report nothing rather than 1.0
    assert row["ppue_immersion"] is None
    assert row["cooling_immersion_kwh"] is None


# --------------------------------------------------------------------------- fleet


def test_fleet_energy_weighted_kernel():
    m = np.zeros(kp.N_ROLES, bool)
    m[[ROLE_INDEX["facility"], ROLE_INDEX["it"]]] = True
    tot = []
    for it, p in ((100e6, 1.10), (50e6, 1.30)):
        e = np.zeros(kp.N_ROLES)
        e[ROLE_INDEX["it"]], e[ROLE_INDEX["facility"]] = it, it * p
        tot.append(fl.site_totals(e, m, 0.0))
    row = fl.fleet_row(np.sum(tot, axis=0))
    assert row["pue"] == pytest.approx(1.166667, abs=5e-7)
    assert row["pue"] == pytest.approx(175e6 / 150e6, rel=1e-12)
    assert row["pue"] != pytest.approx(1.2, abs=1e-3)          # not the mean of ratios
    assert naive.fleet_pue([(110e6, 100e6), (65e6, 50e6)]) == pytest.approx(row["pue"], rel=1e-12)


def test_fleet_energy_weighted_core():
    def site(sid, jur):
        return {"id": sid, "jurisdiction": jur, "timezone": "UTC", "latitude": 0.0,
                "longitude": 0.0, "it_capacity_kw": 1e6,
                "meters": [register("inc", "facility"), register("pdu", "it")]}

    cfg = build_config([], windows=("1h",), sites=[site("A", "MA"), site("B", "ES")])
    rows = []
    for sid, it, p in (("A", 100e6, 1.10), ("B", 50e6, 1.30)):
        for dev, kwh in (("inc", it * p), ("pdu", it)):
            rows += [(0, (sid, dev, "energy_kwh"), 0.0), (H, (sid, dev, "energy_kwh"), kwh)]
    _, outs = run(cfg, [sorted(rows, key=lambda r: r[0])])
    fleet = frames(outs, "fleet")
    row = fleet.filter(fleet["scope"] == "fleet").row(0, named=True)
    assert row["sites"] == 2
    assert row["it_kwh"] == pytest.approx(150e6, rel=1e-12)
    assert row["pue"] == pytest.approx(1.166667, abs=5e-7)
    assert row["pue"] == pytest.approx(175e6 / 150e6, rel=1e-12)
    per_site = kpi_sorted(outs)
    assert per_site["pue"].to_list() == pytest.approx([1.10, 1.30], rel=1e-12)
    # each jurisdiction is its own scope
    ma = fleet.filter(fleet["scope"] == "MA").row(0, named=True)
    assert ma["pue"] == pytest.approx(1.10, rel=1e-12)


# --------------------------------------------------------------------------- registers


def test_register_rollover_kernel():
    rig = Rig([en.KIND_REGISTER], register_max=[1e6], max_gap_ns=[H])
    rig.feed([0, 600 * NS], [0, 0], [999_850.0, 150.0])
    assert rig.acc_e.sum() == 300.0
    assert [(i, c) for i, c, _ in rig.events] == [(1, en.EV_ROLLOVER)]
    assert naive.register_energy([0, 600 * NS], [999_850.0, 150.0], register_max=1e6)[0] == 300.0


def test_register_rollover_core():
    cfg = build_config([register("inc", "facility", register_max=1e6), power("pdu", "it")],
                       windows=("1h",))
    key = ("s1", "inc", "energy_kwh")
    _, outs = run(cfg, [[(0, key, 999_850.0), (600 * NS, key, 150.0)]])
    row = kpi_sorted(outs).row(0, named=True)
    assert row["facility_kwh"] == 300.0
    assert row["rollovers"] == 1
    assert row["resets"] == 0
    q = frames(outs, "quality")
    ro = q.filter(q["kind"] == "rollover")
    assert ro.height == 1
    assert ro["value"][0] == 300.0
    assert ro["device"][0] == "inc"


def test_register_reset_kernel():
    t = [0, 600 * NS, 1200 * NS, 1800 * NS]
    rig = Rig([en.KIND_REGISTER], register_max=[1e6], max_gap_ns=[H])
    rig.feed(t, [0] * 4, [5000.0, 5100.0, 20.0, 120.0])
    assert rig.acc_e.sum() == 220.0
    assert [(i, c) for i, c, _ in rig.events] == [(2, en.EV_RESET)]


def test_register_reset_core():
    cfg = build_config([register("inc", "facility", register_max=1e6), power("pdu", "it")],
                       windows=("1h",))
    key = ("s1", "inc", "energy_kwh")
    rows = [(i * 600 * NS, key, v) for i, v in enumerate([5000.0, 5100.0, 20.0, 120.0])]
    _, outs = run(cfg, [rows])
    row = kpi_sorted(outs).row(0, named=True)
    assert row["facility_kwh"] == 220.0
    assert row["resets"] == 1
    assert row["rollovers"] == 0
    q = frames(outs, "quality")
    assert q.filter(q["kind"] == "reset").height == 1


# --------------------------------------------------------------------------- power


def test_power_trapezoid_kernel():
    rig = Rig([en.KIND_POWER], max_gap_ns=[60 * NS], base_ns=H)
    rig.feed(np.arange(5) * 60 * NS, [0] * 5, [1000, 1200, 1400, 800, 600.0])
    assert rig.acc_e.sum() == pytest.approx(70.0, rel=1e-12)
    assert rig.acc_cov.sum() == 240 * NS
    assert naive.trapezoid(np.arange(5) * 60 * NS, [1000, 1200, 1400, 800, 600.0],
                           60 * NS) == (pytest.approx(70.0, rel=1e-12), 240 * NS)


def test_power_trapezoid_core():
    cfg = build_config([power("pdu", "it")], windows=("1h",))
    key = ("s1", "pdu", "power_kw")
    rows = [(i * 60 * NS, key, v) for i, v in enumerate([1000, 1200, 1400, 800, 600.0])]
    _, outs = run(cfg, [rows])
    row = kpi_sorted(outs).row(0, named=True)
    assert row["it_kwh"] == pytest.approx(70.0, rel=1e-12)
    assert row["coverage"] == pytest.approx(240 / 3600, rel=1e-12)


def test_power_gap_not_filled_kernel():
    t = np.array([0, 60, 120, 900, 960]) * NS
    rig = Rig([en.KIND_POWER], max_gap_ns=[300 * NS], base_ns=16 * 60 * NS)
    rig.feed(t, [0] * 5, [1000.0] * 5)
    assert rig.acc_e.sum() == pytest.approx(50.0, rel=1e-12)
    assert rig.acc_cov[0, 0] / (16 * 60 * NS) == 0.1875
    assert [(i, c, v) for i, c, v in rig.events] == [(3, en.EV_GAP, 780.0)]
    e, cov = naive.trapezoid(t, [1000.0] * 5, 300 * NS)
    assert (e, naive.coverage(cov, 960 * NS)) == (pytest.approx(50.0, rel=1e-12), 0.1875)


def test_power_gap_not_filled_core():
    # a 16m window covers exactly [0, 960 s)
    cfg = build_config([power("pdu", "it", max_gap="300s")], windows=("16m",))
    key = ("s1", "pdu", "power_kw")
    rows = [(s * NS, key, 1000.0) for s in (0, 60, 120, 900, 960)]
    _, outs = run(cfg, [rows])
    kpi = kpi_sorted(outs)
    row = kpi.row(0, named=True)
    assert row["time"].timestamp() == 0
    assert row["it_kwh"] == pytest.approx(50.0, rel=1e-12)
    assert row["coverage"] == 0.1875
    assert row["gaps"] == 1


# --------------------------------------------------------------------------- flags


def test_non_positive_it_kernel():
    e, m = energies(facility=100.0, it=0.0)
    out, flags = kp.compute(e, m, 0.0)
    assert np.isnan(out[0, kp.F["pue"]])
    assert flags[0] == kp.FLAG_NON_POSITIVE_IT
    assert np.isfinite(out[0, kp.F["facility_kwh"]])


def test_non_positive_it_core():
    """IT energy 0 -> PUE null (never inf) and a ``non_positive_it`` quality row."""
    kpi, q = one_hour_of({"facility": 100.0, "it": 0.0})
    row = kpi.row(0, named=True)
    assert row["it_kwh"] == 0.0
    assert row["pue"] is None
    assert row["facility_kwh"] == 100.0
    flagged = q.filter(q["kind"] == "non_positive_it")
    assert flagged.height == 1
    assert flagged["time"][0] == kpi["time"][0]
    assert flagged["point"][0] == "1h"


def test_better_than_perfect_kernel():
    e, m = energies(facility=900.0, it=1000.0)
    out, flags = kp.compute(e, m, 0.0)
    assert np.isnan(out[0, kp.F["pue"]])
    assert flags[0] == kp.FLAG_BETTER_THAN_PERFECT


def test_better_than_perfect_core():
    """A window with PUE < 1 -> PUE null and a ``better_than_perfect`` quality row."""
    kpi, q = one_hour_of({"facility": 900.0, "it": 1000.0})
    row = kpi.row(0, named=True)
    assert row["pue"] is None
    assert row["facility_kwh"] == 900.0
    flagged = q.filter(q["kind"] == "better_than_perfect")
    assert flagged.height == 1
    assert flagged["value"][0] == pytest.approx(0.9, rel=1e-12)
