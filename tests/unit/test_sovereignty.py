"""Routing refuses cross-border site-level data at load time and at write time."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from pueflow.config import parse_config
from pueflow.exceptions import ConfigError
from pueflow.sovereignty import Router

ROOT = Path(__file__).resolve().parents[2]


def _fleet() -> dict:
    return tomllib.loads((ROOT / "config" / "fleet-4-countries.toml").read_text())


def test_raw_series_of_a_moroccan_site_to_the_group_store_is_refused():
    d = _fleet()
    group = next(s for s in d["sinks"] if s["name"] == "group")
    group["measurements"] = ["kpi", "quality"]
    with pytest.raises(ConfigError) as ei:
        parse_config(d)
    text = str(ei.value)
    assert "tetouan-1" in text and "'group'" in text and "quality" in text


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
    assert set(ma["site"]) == {"tetouan-1"} and ma.height == 2
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
