"""Config loading: the examples load; every problem is reported with key, value and fix."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pueflow.cli import main
from pueflow.config.load import load_config, parse_config
from pueflow.exceptions import ConfigError
from pueflow.units import parse_duration_ns

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "config").glob("*.toml"))


def _data(name: str = "tetouan-7.5mw.toml") -> dict:
    return tomllib.loads((ROOT / "config" / name).read_text())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load_and_check_config_exits_0(path, capsys):
    cfg = load_config(path)
    assert cfg.sites
    assert main(["check-config", str(path)]) == 0


def test_three_examples_cover_the_required_sites():
    names = {p.name for p in EXAMPLES}
    assert {"tetouan-7.5mw.toml", "dakhla-40mw-gb200.toml", "fleet-4-countries.toml"} <= names
    fleet = load_config(ROOT / "config" / "fleet-4-countries.toml")
    assert sorted(s.jurisdiction for s in fleet.sites) == ["ES", "MA", "SN", "US"]
    hall = load_config(ROOT / "config" / "dakhla-40mw-gb200.toml")
    roles = {m.role for m in hall.sites[0].meters}
    assert {"cooling.immersion", "cooling.chiller", "cooling.cdu_pump"} <= roles
    assert hall.sites[0].it_capacity_kw == 40000


def test_every_problem_is_listed_with_key_value_and_fix():
    d = _data()
    d["sites"][0]["meters"][0]["kind"] = "regster"
    d["sites"][0]["jurisdction"] = "MA"
    d["pipeline"]["grace"] = "30 secs"
    d["sites"][0]["meters"][1]["role"] = "ITT"
    with pytest.raises(ConfigError) as ei:
        parse_config(d, "bad.toml")
    probs = {k: (v, fix) for k, v, fix in ei.value.problems}
    assert probs["sites[0].meters[0].kind"][0] == "regster"
    assert "'register'" in probs["sites[0].meters[0].kind"][1]
    assert "did you mean 'jurisdiction'" in probs["sites[0].jurisdction"][1]
    assert probs["pipeline.grace"][0] == "30 secs"
    assert "'30s'" in probs["pipeline.grace"][1]
    assert "did you mean 'it'" in probs["sites[0].meters[1].role"][1]
    assert len(ei.value.problems) == 4


def test_check_config_exits_2_and_prints_each_problem(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "config" / "tetouan-7.5mw.toml").read_text()
                   .replace('kind = "register"', 'kind = "registr"', 1)
                   .replace('timezone = "Africa/Casablanca"', 'timezone = "Africa/Casablanka"'))
    assert main(["check-config", str(bad)]) == 2
    out = capsys.readouterr().out
    assert "sites[0].meters[0].kind" in out
    assert "registr" in out
    assert "sites[0].timezone" in out
    assert "IANA" in out


def test_cross_checks_sensor_kind_and_missing_it():
    d = _data()
    for m in d["sites"][0]["meters"]:
        if m["role"] == "ambient_temp_c":
            m["kind"] = "power"
    d["sites"][0]["meters"] = [m for m in d["sites"][0]["meters"] if m["role"] != "it"]
    with pytest.raises(ConfigError) as ei:
        parse_config(d)
    text = str(ei.value)
    assert "no meter has role 'it'" in text
    assert "set kind = 'sensor'" in text


def test_windows_must_be_multiples_and_duration_parsing():
    d = _data()
    d["pipeline"]["windows"] = ["1m", "90s"]
    with pytest.raises(ConfigError, match="not multiples"):
        parse_config(d)
    assert parse_duration_ns("15m") == 900 * 10**9
    assert parse_duration_ns("500ms") == 5 * 10**8
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_ns("soon")


def test_unreadable_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    f = tmp_path / "x.toml"
    f.write_text("[pipeline\nwindows = 1")
    with pytest.raises(ConfigError, match="TOML syntax"):
        load_config(f)


def test_undefined_meter_profile_names_the_fix():
    d = _data("fleet-4-countries.toml")
    d["sites"][1]["meter_profile"] = "standrd"
    with pytest.raises(ConfigError, match="meter_profile = 'standrd' is not defined"):
        parse_config(d)


def test_secret_token_comes_from_environment(monkeypatch):
    d = _data()
    d["sinks"].append({"name": "ma-store", "type": "influx", "url": "http://127.0.0.1:8086",
                       "org": "ops", "bucket": "b", "token_env": "PF_TEST_TOKEN",
                       "jurisdiction": "MA"})
    cfg = parse_config(d)
    monkeypatch.setenv("PF_TEST_TOKEN", "s3cret")
    tok = cfg.sinks[1].token()
    assert tok.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(tok)



def test_check_config_prints_bracketed_fixes_verbatim(tmp_path, capsys):
    text = (ROOT / "config" / "tetouan-7.5mw.toml").read_text()
    head = text[: text.index("[[sites.meters]]")]
    bad = tmp_path / "nometers.toml"
    bad.write_text(head)
    assert main(["check-config", str(bad)]) == 2
    assert "add [[sites.meters]] rules" in capsys.readouterr().out
