"""Routing refuses cross-border site-level data at load time and at write time."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from pueflow.config.load import parse_config
from pueflow.exceptions import ConfigError
from pueflow.sovereignty.router import Router

ROOT = Path(__file__).resolve().parents[3]


def _fleet() -> dict:
    return tomllib.loads((ROOT / "config" / "fleet-4-countries.toml").read_text())


def test_raw_series_of_a_moroccan_site_to_the_group_store_is_refused():
    d = _fleet()
    group = next(s for s in d["sinks"] if s["name"] == "group")
    group["measurements"] = ["kpi", "quality"]
    with pytest.raises(ConfigError) as ei:
        parse_config(d)
    text = str(ei.value)
    assert "tetouan-1" in text
    assert "'group'" in text
    assert "quality" in text


def test_short_windows_may_not_cross_a_border():
    d = _fleet()
    group = next(s for s in d["sinks"] if s["name"] == "group")
    group["min_window"] = "15m"
    with pytest.raises(ConfigError, match="only kpi windows >= 1h"):
        parse_config(d)


def _kpi_rows(sites, windows):
    t = datetime(2026, 7, 1, tzinfo=UTC)
    return pl.DataFrame({"time": [t] * len(sites), "site": sites, "window": windows,
                         "category": ["2"] * len(sites), "run": [""] * len(sites),
                         "pue": [1.2] * len(sites)})


def test_router_sends_each_site_only_to_its_national_store_and_hourly_to_group():
    cfg = parse_config(_fleet())
    router = Router(cfg)
    sinks = {s.name: s for s in cfg.sinks}
    df = _kpi_rows(["tetouan-1", "aragon-1", "tetouan-1", "dakar-1"], ["1m", "1m", "1h", "1d"])
    ma = router.rows_for(sinks["ma-local"], "kpi", df)
    assert set(ma["site"]) == {"tetouan-1"}
    assert ma.height == 2
    group = router.rows_for(sinks["group"], "kpi", df)
    assert sorted(zip(group["site"], group["window"], strict=True)) == [
        ("dakar-1", "1d"), ("tetouan-1", "1h")]
    q = df.rename({"window": "kind"})
    assert router.rows_for(sinks["group"], "quality", q) is None


def test_guard_refuses_foreign_rows_even_if_routing_were_wrong():
    cfg = parse_config(_fleet())
    router = Router(cfg)
    es = next(s for s in cfg.sinks if s.name == "es-local")
    router.sites["es-local"].add("tetouan-1")  # simulate a routing bug
    out = router.rows_for(es, "kpi", _kpi_rows(["tetouan-1", "aragon-1"], ["1m", "1m"]))
    assert list(out["site"]) == ["aragon-1"]
    assert router.refused["es-local"] == 1


# ------------------------------------------------------------------------------ load time
def _group(d: dict) -> dict:
    return next(s for s in d["sinks"] if s["name"] == "group")


def _problems(d: dict) -> str:
    with pytest.raises(ConfigError) as ei:
        parse_config(d)
    return str(ei.value)


def test_routing_is_typed_with_the_default_rule():
    cfg = parse_config(_fleet())
    assert cfg.routing.cross_border_min_window == "1h"
    assert cfg.routing.cross_border_measurements == ["kpi", "fleet"]
    assert cfg.routing.allow == []


@pytest.mark.parametrize("measurements", [["kpi", "quality"], ["setpoint"], ["quality", "fleet"]])
def test_moroccan_raw_data_to_the_group_store_names_site_sink_and_rule(measurements):
    d = _fleet()
    _group(d)["measurements"] = measurements
    _group(d)["sites"] = ["tetouan-1"]
    text = _problems(d)
    assert "site 'tetouan-1' (MA) -> sink 'group' (GLOBAL)" in text
    assert "rule routing.cross_border_measurements" in text
    assert "may not leave MA" in text


def test_moroccan_minute_series_to_the_group_store_is_refused():
    d = _fleet()
    _group(d)["min_window"] = "1m"
    text = _problems(d)
    assert "site 'tetouan-1' (MA) -> sink 'group' (GLOBAL)" in text
    assert "sinks[4].min_window = '1m'" in text
    assert "only kpi windows >= 1h" in text
    for site in ("aragon-1", "abilene-1", "dakar-1"):  # every foreign site is named
        assert f"site {site!r}" in text


def test_a_global_sink_is_foreign_even_to_a_site_listed_by_default_measurements():
    d = _fleet()
    d["sinks"].append({"name": "hq", "type": "parquet", "path": "hq", "jurisdiction": "GLOBAL",
                       "sites": ["dakar-1"]})
    text = _problems(d)
    assert "site 'dakar-1' (SN) -> sink 'hq' (GLOBAL)" in text
    assert "['quality', 'setpoint'] may not leave SN" in text


def test_a_national_sink_may_list_its_own_sites_at_any_window():
    d = _fleet()
    ma = next(s for s in d["sinks"] if s["name"] == "ma-local")
    ma["sites"] = ["tetouan-1"]
    assert parse_config(d).sinks[0].sites == ["tetouan-1"]


def test_a_coarser_default_rule_refuses_hourly_rows():
    d = _fleet()
    d["routing"] = {"cross_border_min_window": "1d"}
    assert "only kpi windows >= 1d may cross a border" in _problems(d)


def test_routing_may_never_let_quality_or_setpoints_out():
    d = _fleet()
    d["routing"] = {"cross_border_measurements": ["kpi", "quality"]}
    text = _problems(d)
    assert "routing.cross_border_measurements" in text
    assert "never leave" in text
    d["routing"] = {"allow": [{"sink": "group", "measurements": ["setpoint"]}]}
    assert "routing.allow[0].measurements" in _problems(d)


def test_an_allow_list_names_itself_when_it_does_not_cover_a_site():
    d = _fleet()
    d["routing"] = {"allow": [{"sink": "group", "jurisdictions": ["ES", "US", "SN"]}]}
    text = _problems(d)
    assert "site 'tetouan-1' (MA) -> sink 'group' (GLOBAL)" in text
    assert "routing.allow[0]" in text
    assert "has no entry for site 'tetouan-1'" in text
    assert "aragon-1" not in text


def test_an_allow_list_only_narrows_and_must_name_real_sinks_and_sites():
    d = _fleet()
    d["routing"] = {"allow": [{"sink": "grup", "sites": ["tetuan-1"], "min_window": "15m"}]}
    text = _problems(d)
    assert "routing.allow[0].sink = 'grup': no such sink" in text
    assert "routing.allow[0].sites = 'tetuan-1': no such site" in text
    assert "routing.allow[0].min_window = '15m': an allow-list only narrows" in text


def test_an_allow_list_can_demand_a_coarser_window_for_one_destination():
    d = _fleet()
    d["routing"] = {"allow": [{"sink": "group", "sites": ["tetouan-1"], "min_window": "1d"},
                              {"sink": "group", "jurisdictions": ["ES", "US", "SN"]}]}
    text = _problems(d)
    assert "site 'tetouan-1' (MA)" in text
    assert "only kpi windows >= 1d" in text
    assert "routing.allow[0]" in text
    _group(d)["min_window"] = "1d"
    cfg = parse_config(d)
    router = Router(cfg)
    df = _kpi_rows(["tetouan-1", "aragon-1", "tetouan-1"], ["1h", "1d", "1d"])
    out = router.rows_for(cfg.sinks[4], "kpi", df)
    assert sorted(zip(out["site"], out["window"], strict=True)) == [
        ("aragon-1", "1d"), ("tetouan-1", "1d")]


def test_check_config_exits_2_naming_site_sink_and_rule(tmp_path, capsys):
    from pueflow.cli import main

    text = (ROOT / "config" / "fleet-4-countries.toml").read_text()
    bad = text.replace('measurements = ["kpi", "fleet"]', 'measurements = ["kpi", "quality"]')
    assert bad != text
    f = tmp_path / "leaky.toml"
    f.write_text(bad)
    assert main(["check-config", str(f)]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "tetouan-1" in out
    assert "'group'" in out
    assert "routing.cross_border_measurements" in out


# ------------------------------------------------------------------------------ run time
def _fleet_rows(scopes, windows):
    t = datetime(2026, 7, 1, tzinfo=UTC)
    return pl.DataFrame({"time": [t] * len(scopes), "scope": scopes, "window": windows,
                         "run": [""] * len(scopes), "pue": [1.2] * len(scopes),
                         "sites": [1] * len(scopes)})


def test_fleet_aggregates_cross_only_at_the_allowed_granularity():
    cfg = parse_config(_fleet())
    router = Router(cfg)
    sinks = {s.name: s for s in cfg.sinks}
    df = _fleet_rows(["fleet", "MA", "ES", "fleet", "MA", "ES"], ["1m", "1m", "1m", "1h", "1h", "1d"])
    group = router.rows_for(sinks["group"], "fleet", df)
    assert sorted(zip(group["scope"], group["window"], strict=True)) == [
        ("ES", "1d"), ("MA", "1h"), ("fleet", "1h")]
    ma = router.rows_for(sinks["ma-local"], "fleet", df)  # its own aggregate at every window
    assert sorted(zip(ma["scope"], ma["window"], strict=True)) == [
        ("ES", "1d"), ("MA", "1h"), ("MA", "1m"), ("fleet", "1h")]
    assert router.refused == {}  # not configured is not refused


def test_fleet_min_window_may_be_finer_than_the_kpi_rule():
    d = _fleet()
    d["routing"] = {"fleet_min_window": "1m"}
    cfg = parse_config(d)
    group = Router(cfg).rows_for(cfg.sinks[4], "fleet", _fleet_rows(["fleet", "MA"], ["1m", "1m"]))
    assert group.height == 2


def test_an_allow_list_without_fleet_keeps_aggregates_home():
    d = _fleet()
    d["routing"] = {"allow": [{"sink": "group", "measurements": ["kpi"]}]}
    cfg = parse_config(d)
    router = Router(cfg)
    assert router.rows_for(cfg.sinks[4], "fleet", _fleet_rows(["fleet"], ["1d"])) is None
    assert router.rows_for(cfg.sinks[4], "kpi", _kpi_rows(["dakar-1"], ["1d"])).height == 1


def test_guard_refuses_device_level_columns_and_logs_one_line_per_site(caplog):
    cfg = parse_config(_fleet())
    router = Router(cfg)
    sinks = {s.name: s for s in cfg.sinks}
    df = _kpi_rows(["tetouan-1", "aragon-1", "aragon-1"], ["1h", "1d", "1h"]).with_columns(
        pl.lit("pdu-7").alias("device"))
    with caplog.at_level("ERROR", logger="pueflow.sovereignty.router"):
        assert router.rows_for(sinks["group"], "kpi", df) is None
        home = router.rows_for(sinks["es-local"], "kpi", df)
    assert home.height == 2  # device rows stay home: the national store gets them
    assert router.refused == {"group": 3}
    assert router.refused_total == 3
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "refused 2 kpi rows of site 'aragon-1' (ES) for sink 'group' (GLOBAL)" in lines[0]
    assert "refused 1 kpi rows of site 'tetouan-1' (MA)" in lines[1]
    assert all("device-level column(s) ['device']" in x for x in lines)


def test_guard_refuses_quality_and_setpoints_even_if_routing_were_wrong(caplog):
    cfg = parse_config(_fleet())
    router = Router(cfg)
    group = next(s for s in cfg.sinks if s.name == "group")
    group.measurements.extend(["quality", "setpoint"])  # simulate a mutated spec
    t = datetime(2026, 7, 1, tzinfo=UTC)
    q = pl.DataFrame({"time": [t], "site": ["tetouan-1"], "kind": ["spike"], "device": ["pdu-1"],
                      "point": ["power_kw"], "run": [""], "count": [1], "value": [9e9],
                      "detail": [""]})
    sp = pl.DataFrame({"time": [t, t], "site": ["dakar-1"] * 2, "asset": ["bess-1"] * 2,
                       "run": [""] * 2, "battery_kw": [1.0, 2.0]})
    with caplog.at_level("ERROR", logger="pueflow.sovereignty.router"):
        assert router.rows_for(group, "quality", q) is None
        assert router.rows_for(group, "setpoint", sp) is None
    assert router.refused == {"group": 3}
    assert "1 quality rows of site 'tetouan-1'" in caplog.records[0].getMessage()
    assert "2 setpoint rows of site 'dakar-1'" in caplog.records[1].getMessage()


def test_guard_treats_unknown_sites_and_unreadable_windows_as_foreign():
    cfg = parse_config(_fleet())
    router = Router(cfg)
    ma = next(s for s in cfg.sinks if s.name == "ma-local")
    router.sites["ma-local"].update({"nowhere-9", "aragon-1"})
    df = _kpi_rows(["nowhere-9", "nowhere-9", "aragon-1", "tetouan-1"], ["1d", "1m", "weekly", "1m"])
    out = router.rows_for(ma, "kpi", df)
    assert sorted(zip(out["site"], out["window"], strict=True)) == [
        ("nowhere-9", "1d"), ("tetouan-1", "1m")]
    assert router.refused == {"ma-local": 2}


def test_guard_refuses_fleet_rows_carrying_a_device_column():
    cfg = parse_config(_fleet())
    router = Router(cfg)
    sinks = {s.name: s for s in cfg.sinks}
    df = _fleet_rows(["fleet", "MA"], ["1h", "1d"]).with_columns(pl.lit("cdu-3").alias("device"))
    assert router.rows_for(sinks["group"], "fleet", df) is None
    assert router.rows_for(sinks["ma-local"], "fleet", df)["scope"].to_list() == ["MA"]


def test_an_allow_list_entry_naming_sites_covers_only_those_sites():
    d = _fleet()
    d["routing"] = {"allow": [{"sink": "group", "sites": ["tetouan-1"]}]}
    text = _problems(d)
    assert "tetouan-1" not in text
    for site in ("aragon-1", "abilene-1", "dakar-1"):
        assert f"has no entry for site {site!r}" in text
    _group(d)["sites"] = ["tetouan-1"]
    cfg = parse_config(d)
    router = Router(cfg)
    router.sites["group"].add("aragon-1")  # simulate a routing bug
    out = router.rows_for(cfg.sinks[4], "kpi", _kpi_rows(["tetouan-1", "aragon-1"], ["1h", "1h"]))
    assert out["site"].to_list() == ["tetouan-1"]
    assert router.refused == {"group": 1}
    # an entry naming sites does not cover aggregates
    assert router.rows_for(cfg.sinks[4], "fleet", _fleet_rows(["MA"], ["1d"])) is None


def test_an_allow_list_keeps_the_default_granularity():
    d = _fleet()
    d["routing"] = {"allow": [{"sink": "group"}]}
    cfg = parse_config(d)
    router = Router(cfg)
    out = router.rows_for(cfg.sinks[4], "fleet", _fleet_rows(["MA", "MA"], ["1m", "1h"]))
    assert out["window"].to_list() == ["1h"]


def test_an_allow_list_of_some_countries_does_not_cover_the_all_sites_aggregate():
    d = _fleet()
    d["routing"] = {"allow": [{"sink": "group", "jurisdictions": ["MA", "ES", "US"]}]}
    _group(d)["sites"] = ["tetouan-1", "aragon-1", "abilene-1"]
    cfg = parse_config(d)
    out = Router(cfg).rows_for(cfg.sinks[4], "fleet",
                               _fleet_rows(["fleet", "MA", "SN"], ["1h", "1h", "1h"]))
    assert out["scope"].to_list() == ["MA"]  # "fleet" holds Senegal's data too


def test_the_most_permissive_covering_allow_entry_wins():
    d = _fleet()
    d["routing"] = {"allow": [{"sink": "group", "min_window": "1d"},
                              {"sink": "group", "jurisdictions": ["ES"]}]}
    _group(d)["sites"] = ["aragon-1"]
    cfg = parse_config(d)
    out = Router(cfg).rows_for(cfg.sinks[4], "fleet", _fleet_rows(["MA", "ES"], ["1h", "1h"]))
    assert out["scope"].to_list() == ["ES"]


def test_check_config_warns_of_a_site_no_sink_receives(tmp_path, capsys):
    """A site whose only sink is in another jurisdiction gets nothing written: say so."""
    from pueflow.cli import main
    from pueflow.config.routing import unreached_sites

    src = (Path(__file__).resolve().parents[3] / "config" / "tetouan-7.5mw.toml").read_text()
    head, sep, sinks = src.partition("[[sinks]]")
    moved = tmp_path / "foreign-sink.toml"
    moved.write_text(head + sep + sinks.replace('jurisdiction = "MA"', 'jurisdiction = "ES"'))
    (sid, why), = unreached_sites(parse_config(tomllib.loads(moved.read_text())))
    assert sid == "tetouan-1"
    assert "jurisdiction = 'MA'" in why
    assert unreached_sites(parse_config(tomllib.loads(src))) == []
    assert main(["check-config", str(moved)]) == 0  # a warning, not an error
    assert "no sink receives its kpi rows" in capsys.readouterr().out
