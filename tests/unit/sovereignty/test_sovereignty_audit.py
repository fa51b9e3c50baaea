"""The audit log records every write that carried rows out of a jurisdiction, and only those."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from pueflow.config.load import parse_config
from pueflow.connectors.sink import SinkSet
from pueflow.exceptions import SinkError
from pueflow.schema.rows import Output
from pueflow.sovereignty.audit import AuditLog, audit_path, read_audit

ROOT = Path(__file__).resolve().parents[3]
T = datetime(2026, 7, 1, tzinfo=UTC)


def _fleet(audit: Path | None = None) -> dict:
    d = tomllib.loads((ROOT / "config" / "fleet-4-countries.toml").read_text())
    if audit is not None:
        d["routing"] = {"audit_log": str(audit)}
    return d


class ListSink:
    """An in-memory sink: keeps what it was given."""

    def __init__(self, name: str, fail: bool = False):
        self.name = name
        self.fail = fail
        self.rows: dict[str, list[pl.DataFrame]] = {}

    def write(self, measurement: str, rows: pl.DataFrame) -> None:
        if self.fail:
            msg = f"{self.name}: store unavailable"
            raise SinkError(msg)
        self.rows.setdefault(measurement, []).append(rows)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _output() -> Output:
    hours = [T.replace(hour=h) for h in range(3)]
    kpi = pl.DataFrame({
        "time": [hours[0], hours[1], hours[2], hours[0], hours[0], hours[0]],
        "site": ["tetouan-1", "tetouan-1", "tetouan-1", "tetouan-1", "aragon-1", "aragon-1"],
        "window": ["1h", "1h", "1h", "1m", "1h", "1m"],
        "category": ["2"] * 6, "run": [""] * 6, "pue": [1.2] * 6})
    fleet = pl.DataFrame({"time": [T, T, T], "scope": ["fleet", "MA", "MA"],
                          "window": ["1h", "1h", "1m"], "run": [""] * 3, "pue": [1.2] * 3,
                          "sites": [4, 1, 1]})
    quality = pl.DataFrame({"time": [T], "site": ["tetouan-1"], "kind": ["spike"],
                            "device": ["pdu-1"], "point": ["power_kw"], "run": [""],
                            "count": [1], "value": [9e9], "detail": [""]})
    return Output(kpi=kpi, fleet=fleet, quality=quality)


def _sinkset(cfg, fail: tuple[str, ...] = ()) -> tuple[SinkSet, dict[str, ListSink]]:
    sinks = {s.name: ListSink(s.name, fail=s.name in fail) for s in cfg.sinks}
    return SinkSet(cfg, list(sinks.values())), sinks


def test_only_cross_border_writes_are_audited(tmp_path):
    log = tmp_path / "audit" / "fleet.jsonl"
    cfg = parse_config(_fleet(log))
    ss, sinks = _sinkset(cfg)
    ss.write(_output())
    recs = read_audit(log)
    got = sorted((r["sink"], r["measurement"], tuple(r["source_jurisdictions"]), r["rows"])
                 for r in recs)
    assert got == sorted([
        # the group store: hourly kpi rows of MA and ES, hourly aggregates
        ("group", "fleet", ("ES", "MA", "SN", "US"), 1),
        ("group", "fleet", ("MA",), 1),
        ("group", "kpi", ("ES",), 1),
        ("group", "kpi", ("MA",), 3),
        # national stores receiving the all-fleet and MA hourly aggregates
        ("es-local", "fleet", ("ES", "MA", "SN", "US"), 1),
        ("es-local", "fleet", ("MA",), 1),
        ("sn-local", "fleet", ("ES", "MA", "SN", "US"), 1),
        ("sn-local", "fleet", ("MA",), 1),
        ("us-local", "fleet", ("ES", "MA", "SN", "US"), 1),
        ("us-local", "fleet", ("MA",), 1),
        ("ma-local", "fleet", ("ES", "MA", "SN", "US"), 1),
    ])
    ma_kpi = next(r for r in recs if r["sink"] == "group" and r["measurement"] == "kpi"
                  and r["source_jurisdictions"] == ["MA"])
    assert ma_kpi == {
        "written_at": ma_kpi["written_at"], "sink": "group", "sink_jurisdiction": "GLOBAL",
        "source_jurisdictions": ["MA"], "measurement": "kpi", "sites": ["tetouan-1"],
        "windows": ["1h"], "rows": 3,
        "time_min": "2026-07-01T00:00:00Z", "time_max": "2026-07-01T02:00:00Z"}
    assert datetime.fromisoformat(ma_kpi["written_at"]).tzinfo is not None
    assert ma_kpi["written_at"].endswith("Z")
    # home writes (ma-local's own kpi, quality, MA-scope aggregates) left nothing in the log
    assert not any(r["sink"] == "ma-local" and r["measurement"] != "fleet" for r in recs)
    assert sum(df.height for df in sinks["ma-local"].rows["quality"]) == 1
    assert "quality" not in sinks["group"].rows


def test_the_log_is_append_only_one_json_object_a_line(tmp_path):
    log = tmp_path / "a.jsonl"
    cfg = parse_config(_fleet(log))
    ss, _ = _sinkset(cfg)
    ss.write(_output())
    first = log.read_text()
    ss.write(_output())
    second = log.read_text()
    assert second.startswith(first)
    assert len(second.splitlines()) == 2 * len(first.splitlines())
    for line in second.splitlines():
        assert isinstance(json.loads(line), dict)


def test_a_failed_write_is_not_audited(tmp_path):
    log = tmp_path / "a.jsonl"
    cfg = parse_config(_fleet(log))
    ss, _ = _sinkset(cfg, fail=("group",))
    with pytest.raises(SinkError):
        ss.write(_output())
    assert not any(r["sink"] == "group" for r in read_audit(log))


def test_nothing_crossing_writes_no_log(tmp_path):
    log = tmp_path / "a.jsonl"
    d = _fleet(log)
    d["sinks"] = [s for s in d["sinks"] if s["name"] == "ma-local"]
    d["sinks"][0]["measurements"] = ["kpi", "quality"]
    cfg = parse_config(d)
    ss, sinks = _sinkset(cfg)
    ss.write(_output())
    assert sinks["ma-local"].rows["kpi"][0].height == 4
    assert not log.exists()


def test_default_path_sits_beside_the_first_parquet_store_not_inside_it():
    d = _fleet()
    assert audit_path(parse_config(d)) == Path("pueflow-out/ma.audit.jsonl")
    d["routing"] = {"audit_log": "/var/log/pueflow/audit.jsonl"}
    assert audit_path(parse_config(d)) == Path("/var/log/pueflow/audit.jsonl")
    d = _fleet()
    for s in d["sinks"]:
        s.update(type="kafka", topic="t")
    assert audit_path(parse_config(d)) == Path("pueflow-audit.jsonl")


def test_audit_log_flushes_each_append_and_uses_the_clock(tmp_path):
    log = AuditLog(tmp_path / "x" / "a.jsonl",
                   clock=lambda: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    rows = pl.DataFrame({"time": [T], "scope": ["MA"], "window": ["1d"]})
    log.record("group", "GLOBAL", "fleet", [(["MA"], rows), (["ES"], rows.clear())])
    assert log.lines == 1
    (rec,) = read_audit(log.path)
    assert rec["written_at"] == "2026-01-02T03:04:05Z"
    assert rec["scopes"] == ["MA"]
    assert rec["windows"] == ["1d"]
    assert rec["rows"] == 1


def test_a_replay_of_the_fleet_config_sends_only_what_may_leave(tmp_path):
    """Pipeline -> router -> sinks -> audit, on the 4-country example: the group store gets
    hourly and daily kpi rows and fleet aggregates, the guard never has to refuse."""
    from types import SimpleNamespace

    import numpy as np

    from pueflow.modes.replay import replay_batches
    from pueflow.schema.batch import Batch
    from pueflow.schema.registry import Registry

    log = tmp_path / "audit.jsonl"
    cfg = parse_config(_fleet(log))
    reg = Registry(cfg)
    ss, sinks = _sinkset(cfg)
    t0 = int(T.timestamp()) * 10**9
    ts = np.arange(t0, t0 + 3 * 3600 * 10**9 + 1, 60 * 10**9, dtype=np.int64)
    keys = [(site, dev, "power_kw") for site in ("tetouan-1", "aragon-1") for dev in ("pdu-1", "chiller-1")]
    ids = reg.ids(keys)
    batch = Batch(np.repeat(ts, len(ids)), np.tile(ids, len(ts)),
                  np.tile([100.0, 20.0, 50.0, 12.0], len(ts)))
    chunks = [SimpleNamespace(batch=b) for b in batch.split(1000)]
    res = replay_batches(cfg, chunks, registry=reg, sinks=ss)
    assert res.kpi.height
    assert res.fleet.height
    assert ss.router.refused == {}
    group_kpi = pl.concat(sinks["group"].rows["kpi"])
    assert set(group_kpi["window"]) == {"1h", "1d"}
    assert set(group_kpi["site"]) == {"tetouan-1", "aragon-1"}
    group_fleet = pl.concat(sinks["group"].rows["fleet"])
    assert set(group_fleet["window"]) == {"1h", "1d"}
    ma_kpi = pl.concat(sinks["ma-local"].rows["kpi"])
    assert set(ma_kpi["site"]) == {"tetouan-1"}
    assert "1m" in set(ma_kpi["window"])
    recs = read_audit(log)
    group = [r for r in recs if r["sink"] == "group" and r["measurement"] == "kpi"]
    assert sum(r["rows"] for r in group) == group_kpi.height
    assert {tuple(r["source_jurisdictions"]) for r in group} == {("MA",), ("ES",)}
    # the earliest row each country sent is its site's 1d row, from its local midnight
    assert min(r["time_min"] for r in group if r["source_jurisdictions"] == ["ES"]) == (
        "2026-06-30T22:00:00Z")
    assert min(r["time_min"] for r in group if r["source_jurisdictions"] == ["MA"]) == (
        "2026-06-30T23:00:00Z")
    assert not any(r["sink"] == "ma-local" and r["measurement"] == "kpi" for r in recs)
