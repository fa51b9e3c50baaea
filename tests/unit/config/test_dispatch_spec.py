"""Dispatch settings: defaults, validation through the config loader, plant fallbacks, signals."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pueflow.config.dispatch import DispatchSpec, clock_hours, duration_s
from pueflow.config.load import load_config, parse_config
from pueflow.config.models import Site
from pueflow.exceptions import ConfigError, OptimizerError
from pueflow.optimizers.assets import apply_overrides, site_model
from pueflow.optimizers.tariff import calendar, in_window, signals
from pueflow.optimizers.testing import tiny_config, tiny_site

NS = 10**9


def test_everything_has_a_default():
    spec = DispatchSpec()
    assert spec.step == "15m"
    assert spec.cooling[0].name == "liquid"
    assert spec.jobs == []
    cfg = tiny_config([{"id": "a", "dispatch": {}}])
    m = site_model(cfg.sites[0])
    assert m.battery is None
    assert m.horizon_steps == 96
    assert m.import_limit_kw == 1500.0
    assert cfg.sites[0].dispatch is not None


@pytest.mark.parametrize(("dispatch", "key", "fix"), [
    ({"stepp": "5m"}, "sites[0].dispatch.stepp", "did you mean 'step'"),
    ({"horizon": "1x"}, "sites[0].dispatch.horizon", "not a duration"),
    ({"tariff": {"periods": [{"start": "25:00"}]}}, "sites[0].dispatch.tariff.periods[0].start", "HH:MM"),
    ({"jobs": [{"throughput": [[0, 0], [0.5, 0.3], [1, 1]]}]}, "sites[0].dispatch.jobs[0].throughput", "concave"),
    ({"battery": {"soc_min_pct": 80, "soc_max_pct": 20}}, "sites[0].dispatch.battery", "swap"),
    ({"jobs": [{"loop": "nope"}]}, "sites[0].dispatch", "known loops"),
    ({"carbon": {"intensity_kg_per_kwh": [0.5] * 23}}, "sites[0].dispatch.carbon.intensity_kg_per_kwh", "24"),
])
def test_errors_name_the_key_and_the_fix(dispatch, key, fix):
    with pytest.raises(ConfigError) as err:
        tiny_config([{"id": "a", "dispatch": dispatch}])
    assert any(k == key and fix in f for k, _, f in err.value.problems), err.value.problems


def test_sizes_fall_back_to_the_plant():
    site = Site.model_validate({
        "id": "p", "jurisdiction": "MA", "latitude": 35, "longitude": -5, "it_capacity_kw": 1000,
        "plant": {"battery": {"capacity_kwh": 2000.0, "power_kw": 500.0, "round_trip_efficiency": 0.81},
                  "pv": {"kwp": 900.0}, "wind": {"count": 2, "turbine_type": "E-82/2300"}},
        "dispatch": {}})
    m = site_model(site)
    assert (m.battery.energy_kwh, m.battery.charge_kw, m.battery.eta_charge) == (2000.0, 500.0, pytest.approx(0.9))
    assert m.pv_kwp == 900.0
    assert m.wind_kw == 4600.0
    own = site_model(site, {"battery.energy_kwh": 100.0, "battery.charge_kw": 10.0, "forecast.pv_kwp": 5.0})
    assert own.battery.energy_kwh == 100.0
    assert own.battery.charge_kw == 10.0
    assert own.pv_kwp == 5.0


def test_overrides_validate():
    spec = DispatchSpec(jobs=[{"name": "a"}])
    assert apply_overrides(spec, {"jobs.0.work_h": 3.0}).jobs[0].work_h == 3.0
    assert apply_overrides(spec, None) is spec
    with pytest.raises(OptimizerError, match="unknown setting"):
        apply_overrides(spec, {"nope": 1})
    with pytest.raises(OptimizerError, match="no 'x'"):
        apply_overrides(spec, {"x.y": 1})
    with pytest.raises(OptimizerError, match="has no"):
        site_model(Site(id="s", jurisdiction="MA", latitude=0, longitude=0, it_capacity_kw=1))


def test_clock_and_durations():
    assert clock_hours("07:30") == 7.5
    assert clock_hours("24:00") == 24.0
    assert duration_s("15m") == 900.0
    assert duration_s("1d") == 86400.0
    with pytest.raises(ValueError, match="HH:MM"):
        clock_hours("24:30")
    h = np.array([0.0, 6.5, 22.0, 23.9])
    assert list(in_window(h, 22, 7)) == [True, True, True, True]
    assert list(in_window(h, 7, 22)) == [False, False, False, False]
    assert in_window(h, 0, 24).all()
    assert not in_window(h, 5, 5).any()


def test_onee_calendar_follows_local_time_and_seasons():
    site = load_config("config/dakhla-40mw-gb200.toml").sites[0]
    m = site_model(site)
    # 2025-01-15 17:30 local (UTC+1 in winter): winter peak 17-22
    winter = int(dt.datetime(2025, 1, 15, 16, 30, tzinfo=dt.UTC).timestamp()) * NS
    # 2025-07-15 17:30 local: summer "full" (peak starts at 18:00)
    summer = int(dt.datetime(2025, 7, 15, 16, 30, tzinfo=dt.UTC).timestamp()) * NS
    night = int(dt.datetime(2025, 7, 15, 2, 0, tzinfo=dt.UTC).timestamp()) * NS
    sig = signals(m, np.array([winter, summer, night]))
    np.testing.assert_allclose(sig.price_per_kwh, [1.45, 1.02, 0.72])
    assert list(sig.demand_mask) == [True, True, False]
    assert sig.bill_id[0] != sig.bill_id[1] == sig.bill_id[2]
    assert sig.carbon_kg_per_kwh[1] == pytest.approx(0.62)
    assert sig.carbon_kg_per_kwh[2] == pytest.approx(0.63)
    cal = calendar(np.array([winter]), m.timezone)
    assert cal.hour[0] == pytest.approx(17.5)
    assert cal.month[0] == 1
    assert cal.weekday[0] == 2


def test_demand_response_event_lowers_the_import_limit():
    site = tiny_site(grid={"import_limit_kw": 1000.0, "events": [
        {"start": "2025-07-01T18:00:00Z", "end": "2025-07-01T20:00:00Z", "import_limit_kw": 300.0}]})
    m = site_model(site)
    t = int(dt.datetime(2025, 7, 1, 17, tzinfo=dt.UTC).timestamp()) * NS + 3600 * NS * np.arange(4)
    np.testing.assert_allclose(signals(m, t).import_limit_kw, [1000, 300, 300, 1000])
    with pytest.raises(ConfigError, match="aware"):
        parse_config({"sites": [{"id": "a", "jurisdiction": "MA", "latitude": 0, "longitude": 0,
                                 "it_capacity_kw": 1, "meters": [{"kind": "power", "role": "it"}],
                                 "dispatch": {"grid": {"events": [{"start": "2025-07-01T18:00:00",
                                                                    "end": "2025-07-01T19:00:00",
                                                                    "import_limit_kw": 1}]}}}]})
