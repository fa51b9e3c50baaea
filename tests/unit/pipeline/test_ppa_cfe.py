"""Contracted renewables (role ``ppa``): REF counts them, ``cfe_hourly`` matches them hour by
hour, and nothing on site (grid estimate, dispatch inputs) reads them as generation.

Hand-made case: a facility drawing 100 kW for a whole day and a PPA that delivers exactly the
day's 2400 kWh, but only from 06:00 to 18:00 UTC. By hand: REF = 2400 / 2400 = 1.0, while
only 12 of the 24 hours are matched (each capped at its 100 kWh), so the energy-weighted
hourly match is 12 x 100 / 2400 = 0.5.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pueflow.optimizers.inputs import read_windows
from pueflow.pipeline import kpi as kp
from pueflow.roles import ROLE_INDEX
from tests.conftest import build_config, kpi_sorted, run

T0 = 1_782_864_000 * 10**9  # 2026-07-01T00:00Z
MIN = 60 * 10**9
METERS = [{"device": "fac", "point": "kw", "kind": "power", "role": "facility"},
          {"device": "it", "point": "kw", "kind": "power", "role": "it"},
          {"device": "ppa", "point": "kw", "kind": "power", "role": "ppa"}]
#: PPA power [kW] so the day's delivery is 2400 kWh: 12 h at P less two 1-minute linear
#: ramps (06:00-06:01 up, 17:59-18:00 down) that each deliver P/2 for a minute
P = 2400.0 / (12.0 - 1.0 / 60.0)


def ppa_kw(minute: int) -> float:
    return P if 6 * 60 + 1 <= minute <= 17 * 60 + 59 else 0.0


def day_rows():
    rows = []
    for m in range(24 * 60 + 1):
        t = T0 + m * MIN
        rows += [(t, ("s1", "fac", "kw"), 100.0), (t, ("s1", "it", "kw"), 80.0),
                 (t, ("s1", "ppa", "kw"), ppa_kw(m))]
    return rows


@pytest.fixture(scope="module")
def day() -> pl.DataFrame:
    cfg = build_config(METERS, windows=("1m", "1h", "1d"))
    _, outs = run(cfg, [day_rows()])
    df = kpi_sorted(outs)
    return df.filter(pl.col("time") < pl.lit(T0 + 24 * 60 * MIN).cast(pl.Datetime("ns", "UTC")))


def test_ppa_delivering_the_annual_energy_in_daytime_gives_ref_1_and_cfe_half(day):
    d = day.filter(pl.col("window") == "1d")
    assert d.height == 1
    assert d["facility_kwh"][0] == pytest.approx(2400.0, rel=1e-12)
    assert d["ppa_kwh"][0] == pytest.approx(2400.0, rel=1e-12)
    assert d["ref"][0] == pytest.approx(1.0, abs=1e-12)
    # a day row has no hourly match of its own: it is the ratio of sums of its hours
    assert d["cfe_hourly"][0] is None
    assert d["cfe_matched_kwh"][0] is None
    h = day.filter(pl.col("window") == "1h").sort("time")
    assert h.height == 24
    matched = h["cfe_matched_kwh"].to_numpy()
    hand = np.array([100.0 if 6 <= k < 18 else 0.0 for k in range(24)])
    np.testing.assert_allclose(matched, hand, rtol=1e-12, atol=1e-9)
    assert matched.sum() / h["facility_kwh"].sum() == pytest.approx(0.5, rel=1e-12)
    assert kp.cfe_of_hours(h["facility_kwh"], h["ppa_kwh"]) == pytest.approx(0.5, rel=1e-12)
    # within an hour the share is capped at 1 even where the PPA delivers twice the load
    assert h["cfe_hourly"].max() == pytest.approx(1.0, abs=1e-12)
    assert h["ref"].max() == pytest.approx(1.0, abs=1e-12)


def test_cfe_of_hours_against_a_loop():
    rng = np.random.default_rng(7)
    fac = rng.uniform(50, 150, 500)
    ren = rng.uniform(0, 300, 500) * (rng.uniform(size=500) < 0.6)
    matched = 0.0
    for f, r in zip(fac, ren, strict=True):
        matched += f if r > f else r
    assert kp.cfe_of_hours(fac, ren) == pytest.approx(matched / fac.sum(), rel=1e-12)
    # never above the period's (capped) REF
    assert kp.cfe_of_hours(fac, ren) <= min(ren.sum() / fac.sum(), 1.0)


def test_ppa_never_offsets_the_grid_estimate_or_enters_dispatch_inputs():
    # CUE's grid estimate without a grid meter is facility - on-site generation
    e = np.zeros((1, kp.N_ROLES))
    e[0, ROLE_INDEX["facility"]], e[0, ROLE_INDEX["it"]] = 1200.0, 1000.0
    e[0, ROLE_INDEX["pv"]], e[0, ROLE_INDEX["ppa"]] = 200.0, 1000.0
    m = np.zeros(kp.N_ROLES, bool)
    m[[ROLE_INDEX[r] for r in ("facility", "it", "pv", "ppa")]] = True
    out, _ = kp.compute(e, m, 0.5)
    assert out[0, kp.F["cue_kg_per_kwh"]] == pytest.approx((1200 - 200) * 0.5 / 1000)
    assert out[0, kp.F["ref"]] == pytest.approx(1.0)  # (200 + 1000) / 1200 capped
    # the dispatcher reads the same powers whether or not a PPA delivered
    base = pl.DataFrame({"time": [T0], "pv_kwh": [50.0], "wind_kwh": [10.0], "it_kwh": [900.0],
                         "coverage": [1.0]})
    with_ppa = base.with_columns(pl.lit(5000.0).alias("ppa_kwh"))
    a, b = read_windows(base, 3600 * 10**9, 2000.0), read_windows(with_ppa, 3600 * 10**9, 2000.0)
    for f in ("pv_kw", "wind_kw", "it_kw", "grid_import_kw"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
