"""The aggregate stage: KPI topic in, fleet rows out (in-memory broker, no network).

Fleet rows are checked against the single-process core's own fleet rows (a consumer that
owns every partition, the replay path) and against sums done by hand; the deadline and
restatement rules against hand-built site windows.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest

from pueflow.config.load import parse_config
from pueflow.config.routing import kpi_topic_windows, route_problems
from pueflow.exceptions import StateError
from pueflow.modes.aggregate.service import AggregateService
from pueflow.pipeline.fleet_book import FleetBook
from tests.unit import fake_kafka
from tests.unit.modes.test_service import NS, T0, MemorySinks, publish, service, telemetry

SITES = ("s-a", "s-b", "s-c")
MIN = 60 * NS


def config(kpi_topic: str | None = "kpi") -> object:
    meters = [
        {"device": "incomer-*", "point": "energy_kwh", "kind": "register", "role": "facility"},
        {"device": "pdu-*", "point": "power_kw", "kind": "power", "role": "it"},
    ]
    return parse_config({
        "pipeline": {"windows": ["1m", "15m"], "grace": "10s", "idle_timeout": "60s",
                     "checkpoint_interval": "1h", "checkpoint_records": 50},
        "sites": [{"id": s, "jurisdiction": "MA" if s != "s-c" else "ES", "latitude": 35.0,
                   "longitude": -5.0, "it_capacity_kw": 5000, "meters": meters} for s in SITES],
        "kafka": {"topics": ["tel"], "group_id": "g", "timestamp_unit": "ms", "dlq_topic": "dlq",
                  "state_topic": "state", "max_poll_records": 40, "kpi_topic": kpi_topic,
                  "kpi_deadline": "2m", "kpi_allowed_lateness": "1h", "kpi_topic_jurisdiction": "MA"},
        # the ES site's 1 min windows reach the MA aggregator: the rule must let them cross
        "routing": {"cross_border_min_window": "1m"},
    })


class FleetSinks(MemorySinks):
    """Keeps fleet rows by (scope, window, time); the newest write wins (an idempotent store)."""

    def __init__(self, events):
        super().__init__(events)
        self.fleet: dict[tuple, dict] = {}
        self.fleet_writes: list[dict] = []

    def write(self, out) -> int:
        if out.fleet is not None:
            self.buffer.append(out.fleet)
            return out.fleet.height
        return 0

    def flush(self) -> None:
        for df in self.buffer:
            for r in df.iter_rows(named=True):
                self.fleet[(r["scope"], r["window"], r["time"])] = r
                self.fleet_writes.append(r)
        self.buffer.clear()
        self.events.append(("flush",))


@pytest.fixture
def broker(monkeypatch):
    b = fake_kafka.FakeBroker()
    b.create("tel", 3)
    fake_kafka.install(monkeypatch, b)
    return b


def _consume(broker, cfg, n):
    sinks = FleetSinks(broker.events)
    service(cfg, sinks).run(max_records=n)
    return sinks


def test_fleet_rows_from_the_kpi_topic_equal_the_single_consumer_rows(broker):
    df = telemetry(SITES, minutes=30)
    n = publish(broker, df)
    # reference: one consumer owning every partition writes fleet rows itself
    ref = _consume(broker, config(kpi_topic=None), n)
    broker.committed.clear()
    for tp in [tp for tp in broker.log if tp.topic == "state"]:
        broker.log[tp].clear()
    stage1 = _consume(broker, config(), n)
    assert stage1.fleet == {}, "with a KPI topic, consume writes no fleet rows"
    kpi = [orjson.loads(r.value) for tp, rs in broker.log.items() if tp.topic == "kpi" for r in rs]
    assert {r["site"] for r in kpi} == set(SITES)
    out = FleetSinks(broker.events)
    AggregateService(config(), sinks=out).run(max_records=len(kpi))
    assert len(ref.fleet) >= 3 * 25
    for key, row in ref.fleet.items():
        assert key in out.fleet, key
        got = out.fleet[key]
        for col, v in row.items():
            assert got[col] == v, (key, col)
        assert got["sites_reporting"] == got["sites_expected"] == (3 if key[0] == "fleet" else
                                                                    {"MA": 2, "ES": 1}[key[0]])


def test_an_aggregator_restart_restores_its_windows_and_writes_the_same_rows(broker):
    df = telemetry(SITES, minutes=30)
    n = publish(broker, df)
    _consume(broker, config(), n)
    kpi_n = sum(len(rs) for tp, rs in broker.log.items() if tp.topic == "kpi")
    whole = FleetSinks(broker.events)
    AggregateService(config(), sinks=whole).run(max_records=kpi_n)
    cfg = config().model_copy(deep=True)
    cfg.kafka.aggregate_group_id = "agg-2"  # a fresh group with its own state records
    parts = FleetSinks(broker.events)
    AggregateService(cfg, sinks=parts).run(max_records=kpi_n // 3)
    done = sum(broker.committed["agg-2"].values())  # where the restart resumes
    assert 0 < done < kpi_n
    AggregateService(cfg, sinks=parts).run(max_records=kpi_n - done)
    assert parts.fleet == whole.fleet


def _totals(k: float) -> tuple[float, ...]:
    return (100.0 * k, 80.0 * k, 10.0 * k, 5.0 * k, 1.0 * k)


def test_deadline_closes_a_window_without_a_silent_site_and_its_late_row_restates_it():
    cfg = config()
    book = FleetBook(cfg, "", deadline_ns=2 * MIN, lateness_ns=10 * MIN)
    for m in range(5):  # s-c is silent; s-a and s-b report minutes 0..4
        assert book.add("s-a", "1m", T0 + m * MIN, _totals(1.0)) is None
        assert book.add("s-b", "1m", T0 + m * MIN, _totals(2.0)) is None
    rows = book.ready()
    fleet = rows.filter(pl.col("scope") == "fleet").sort("time")
    # event time = end of minute 4 = T0 + 5 min: minutes 0..2 are past their end by >= 2 min
    assert fleet["time"].dt.epoch("ns").to_list() == [T0, T0 + MIN, T0 + 2 * MIN]
    assert fleet["sites_reporting"].to_list() == [2, 2, 2]
    assert fleet["sites_expected"].to_list() == [3, 3, 3]
    assert fleet["pue"].to_list() == pytest.approx([300 / 240] * 3)
    ma = rows.filter(pl.col("scope") == "MA")
    assert ma.height == 5
    assert set(ma["sites_reporting"]) == {2}
    assert book.ready() is None  # nothing new: nothing written twice
    # the late site's minute 1 restates the fleet window (and its own jurisdiction's)
    assert book.add("s-c", "1m", T0 + MIN, _totals(4.0)) is None
    again = book.ready()
    f = again.filter(pl.col("scope") == "fleet")
    assert f["time"].dt.epoch("ns").to_list() == [T0 + MIN]
    assert f["sites_reporting"].to_list() == [3]
    assert f["facility_kwh"].to_list() == [700.0]
    assert f["pue"].to_list() == pytest.approx([700.0 / 560.0])
    assert again.filter(pl.col("scope") == "ES")["sites_reporting"].to_list() == [1]
    # a duplicate (a restarted consumer re-publishes) changes nothing
    assert book.add("s-c", "1m", T0 + MIN, _totals(4.0)) is None
    assert book.ready() is None
    # past the allowed lateness a row is refused with the reason
    for m in range(5, 20):
        book.add("s-a", "1m", T0 + m * MIN, _totals(1.0))
    assert book.add("s-c", "1m", T0 + 2 * MIN, _totals(4.0)).startswith("late")
    assert book.add("nowhere", "1m", T0, _totals(1.0)).startswith("unknown_site")
    assert book.add("s-a", "1m", T0, (1.0, np.nan, 0, 0, 0)).startswith("invalid_value")


def test_book_state_round_trips_and_refuses_garbage():
    cfg = config()
    a = FleetBook(cfg, "", 2 * MIN, 10 * MIN)
    a.add("s-a", "1m", T0, _totals(1.0))
    a.add("s-b", "1m", T0, _totals(2.0))
    a.ready()
    b = FleetBook(cfg, "", 2 * MIN, 10 * MIN)
    assert b.restore(a.snapshot(["s-a"])) == ["s-a"]
    assert b.restore(a.snapshot(["s-b"])) == ["s-b"]
    assert (b.windows, b.written, b.now_ns) == (a.windows, a.written, a.now_ns)
    with pytest.raises(StateError, match="unreadable"):
        b.restore(b"{not json")


def test_aggregate_needs_a_kpi_topic(broker):
    with pytest.raises(StateError, match="kpi_topic"):
        AggregateService(config(kpi_topic=None), sinks=FleetSinks([]))


def test_check_config_refuses_a_kpi_topic_that_would_carry_fine_windows_across_a_border():
    from pueflow.config.routing import route_problems

    cfg = config().model_copy(deep=True)
    assert route_problems(cfg) == []
    cfg.kafka.kpi_topic_jurisdiction = None
    probs = route_problems(cfg)
    assert [p[0] for p in probs] == ["kafka.kpi_topic_jurisdiction"]
    cfg.kafka.kpi_topic_jurisdiction = "MA"
    cfg.routing.cross_border_min_window = "1h"
    (key, _, msg), = route_problems(cfg)
    assert key == "pipeline.windows"
    assert "site 's-c' (ES) -> KPI topic 'kpi' (MA)" in msg
    assert "routing.cross_border_min_window" in msg
    cfg.routing.cross_border_min_window = "1m"  # the rule now lets 1 min windows cross
    assert route_problems(cfg) == []
    cfg.routing.cross_border_measurements = ["fleet"]  # no site-level row may cross
    (key, _, msg), = route_problems(cfg)
    assert key == "kafka.kpi_topic"
    assert "may not leave ES" in msg


def test_site_windows_sent_to_another_jurisdictions_kpi_topic_are_audited(broker, tmp_path):
    from pueflow.sovereignty.audit import read_audit

    cfg = config().model_copy(deep=True)
    cfg.routing.audit_log = str(tmp_path / "audit.jsonl")
    df = telemetry(SITES, minutes=10)
    n = publish(broker, df)
    _consume(broker, cfg, n)
    sent = [orjson.loads(r.value) for tp, rs in broker.log.items() if tp.topic == "kpi" for r in rs]
    lines = read_audit(tmp_path / "audit.jsonl")
    assert lines, "no audit of the ES site's windows"
    assert {tuple(x["source_jurisdictions"]) for x in lines} == {("ES",)}
    assert {x["sink"] for x in lines} == {"kafka:kpi"}
    assert {s for x in lines for s in x["sites"]} == {"s-c"}
    assert sum(x["rows"] for x in lines) == sum(1 for r in sent if r["site"] == "s-c")


def test_a_foreign_site_sends_only_windows_that_may_cross_and_scopes_build_where_all_members_send(
        broker):
    """With only 15 min windows allowed across, the ES site sends no 1 min window to the MA
    topic; MA is aggregated at every window, ES and the fleet at 15 min, each row equal to
    the single consumer's (replay) row of the same key."""
    df = telemetry(SITES, minutes=30)
    n = publish(broker, df)
    ref = _consume(broker, config(kpi_topic=None), n)
    broker.committed.clear()
    for tp in [tp for tp in broker.log if tp.topic == "state"]:
        broker.log[tp].clear()
    cfg = config().model_copy(deep=True)
    cfg.routing.cross_border_min_window = "15m"
    _consume(broker, cfg, n)
    kpi = [orjson.loads(r.value) for tp, rs in broker.log.items() if tp.topic == "kpi" for r in rs]
    assert {r["window"] for r in kpi if r["site"] == "s-c"} == {"15m"}
    assert {r["window"] for r in kpi if r["site"] != "s-c"} == {"1m", "15m"}
    out = FleetSinks(broker.events)
    AggregateService(cfg, sinks=out).run(max_records=len(kpi))
    want = {k: r for k, r in ref.fleet.items() if k[0] == "MA" or k[1] == "15m"}
    assert {k[0] for k in want} == {"MA", "ES", "fleet"}
    assert len([k for k in want if k[1] == "1m"]) >= 25
    assert set(out.fleet) == set(want)
    for key, row in want.items():
        assert out.fleet[key] == row, key


def test_check_config_accepts_the_four_country_fleet_with_one_aggregator():
    doc = tomllib.loads((Path(__file__).parents[3] / "config/fleet-4-countries.toml").read_text())
    doc["kafka"] = {"topics": ["tel"], "kpi_topic": "kpi", "kpi_topic_jurisdiction": "MA"}
    cfg = parse_config(doc)
    assert route_problems(cfg) == []
    sent = kpi_topic_windows(cfg)
    assert sent["tetouan-1"] == {"1m", "15m", "1h", "1d"}
    assert sent["aragon-1"] == sent["dakar-1"] == {"1h", "1d"}
    cfg.pipeline.windows = ["1m", "15m"]  # no window of the foreign sites may cross
    assert {p[0] for p in route_problems(cfg)} == {"pipeline.windows"}
