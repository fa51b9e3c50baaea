"""The 4-country fleet example in consume mode: national stores keep their sites' rows, the
group store gets only hourly-or-longer KPIs and fleet aggregates, and crossings are audited."""

from __future__ import annotations

import tomllib
from pathlib import Path

import orjson
import polars as pl
import pytest

from pueflow.config.load import parse_config
from pueflow.connectors.kafka import ensure_topics
from pueflow.connectors.parquet_store import read_store
from pueflow.modes.consume.service import ConsumeService
from pueflow.modes.produce import produce_frame
from tests.integration.helpers import recent_start, telemetry, wait_for
from tests.integration.test_consume import run_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
NATIONAL = {"ma-local": "MA", "es-local": "ES", "us-local": "US", "sn-local": "SN"}


def _fleet_config(tmp_path: Path, broker, names):
    doc = tomllib.loads((ROOT / "config" / "fleet-4-countries.toml").read_text())
    doc["pipeline"].update({"idle_timeout": "3s", "checkpoint_interval": "2s"})
    doc["kafka"] = {"bootstrap_servers": [broker.bootstrap], "topics": [names.topic],
                    "group_id": names.group, "format": "json", "timestamp_unit": "ms",
                    "dlq_topic": names.dlq, "state_topic": names.state}
    for sink in doc["sinks"]:
        sink["path"] = str(tmp_path / sink["name"])
    doc["routing"] = {"audit_log": str(tmp_path / "audit.jsonl")}
    for site in doc["sites"]:
        site.pop("dispatch", None)  # KPIs and routing only: no setpoints needed here
    return parse_config(doc, "fleet-test")


def test_fleet_consume_keeps_each_country_home_and_sends_only_aggregates_abroad(
        broker, names, tmp_path):
    cfg = _fleet_config(tmp_path, broker, names)
    juris = {s.id: s.jurisdiction for s in cfg.sites}
    ensure_topics(cfg.kafka, {names.topic: (4, {})})
    df = telemetry(list(juris), recent_start(5), 75)  # one whole hour and a bit
    produce_frame(cfg, df, per_message=4)

    svc = ConsumeService(cfg, metrics_port=0)
    thread, stop = run_in_thread(svc)
    group = tmp_path / "group"

    def hourly_everywhere() -> bool:
        try:
            k = read_store(group, "kpi")
            f = read_store(group, "fleet")
        except Exception:  # noqa: BLE001 - the store is still empty
            return False
        return (set(k.filter(pl.col("window") == "1h")["site"]) == set(juris)
                and (f["scope"] == "fleet").any())

    try:
        wait_for(hourly_everywhere, 120, what="hourly KPI rows of all four sites and a fleet row")
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()

    for sink, country in NATIONAL.items():
        kpi = read_store(tmp_path / sink, "kpi")
        assert set(kpi["site"]) == {s for s, j in juris.items() if j == country}
        assert "1m" in set(kpi["window"])  # fine-grained rows stay at home
    kpi = read_store(group, "kpi")
    assert set(kpi["window"]) <= {"1h", "1d"}, "sub-hourly KPIs crossed a border"
    stored = {p.name for p in group.iterdir() if p.is_dir()}
    assert stored <= {"measurement=kpi", "measurement=fleet"}, stored
    fleet = read_store(group, "fleet")
    assert set(fleet["window"]) <= {"1h", "1d"}
    assert svc.sinks.router.refused_total == 0

    lines = [orjson.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    crossed = [x for x in lines if x["sink"] == "group"]
    assert crossed, "cross-border writes must be audited"
    # national stores receive the whole-fleet aggregate (other countries' data, aggregated):
    # audited as crossings, and never anything site-level
    assert all(x["measurement"] == "fleet" for x in lines if x["sink"] in NATIONAL)
    assert {x["measurement"] for x in crossed} <= {"kpi", "fleet"}
