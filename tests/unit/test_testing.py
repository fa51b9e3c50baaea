"""The in-package harness runs the real core and router: DESIGN's power example end to end."""

from __future__ import annotations

import pytest

from pueflow.config.load import parse_config
from pueflow.connectors.sink import SinkSet
from pueflow.pipeline.core import Pipeline
from pueflow.testing import ListSink, ListSource, ManualClock, to_ns


def _cfg(sink_juris: str = "MA"):
    return parse_config({
        "pipeline": {"windows": ["15m"], "grace": "0s"},
        "sites": [{"id": "s1", "jurisdiction": "MA", "timezone": "UTC", "latitude": 35.0,
                   "longitude": -5.0, "it_capacity_kw": 5000,
                   "meters": [{"device": "pdu-*", "point": "power_kw", "kind": "power",
                               "role": "it", "max_gap": "120s"},
                              {"device": "inc-*", "point": "power_kw", "kind": "power",
                               "role": "facility", "max_gap": "120s"}]}],
        "sinks": [{"name": "local", "type": "parquet", "path": "unused",
                   "jurisdiction": sink_juris}],
    })


@pytest.mark.parametrize("batch_size", [1, 2, 100])
def test_power_example_through_list_source_and_sink(batch_size):
    """1000, 1200, 1400, 800, 600 kW at 60 s steps -> 70.0 kWh (DESIGN's worked example)."""
    cfg = _cfg()
    clock = ManualClock("2030-01-01T00:00Z")
    p = Pipeline(cfg, clock_ns=clock)
    sink = ListSink("local")
    sinks = SinkSet(cfg, [sink])
    rows = []
    for k, kw in enumerate([1000, 1200, 1400, 800, 600]):
        t = to_ns("2026-07-01T00:00Z") + k * 60 * 10**9
        rows += [(t, "s1", "pdu-1", "power_kw", kw), (t, "s1", "inc-1", "power_kw", 1.5 * kw)]
    for b in ListSource(p.registry, rows, batch_size=batch_size):
        sinks.write(p.process(b))
    sinks.write(p.finalize())
    sinks.flush()
    kpi = sink.frame("kpi")
    assert kpi["it_kwh"].to_list() == [pytest.approx(70.0)]
    assert kpi["pue"].to_list() == [pytest.approx(1.5)]
    assert sink.flushes == 1


def test_router_keeps_site_rows_from_a_foreign_list_sink():
    cfg = _cfg(sink_juris="ES")
    # a sink of another jurisdiction that lists no sites receives none of this site's rows
    assert cfg.sinks[0].jurisdiction == "ES"
    p = Pipeline(cfg, clock_ns=ManualClock("2030-01-01T00:00Z"))
    sink = ListSink("local")
    sinks = SinkSet(cfg, [sink])
    rows = [(to_ns("2026-07-01T00:00Z") + k * 60 * 10**9, "s1", "pdu-1", "power_kw", 10.0)
            for k in range(20)]
    for b in ListSource(p.registry, rows):
        sinks.write(p.process(b))
    sinks.write(p.finalize())
    assert sink.frame("kpi").height == 0


def test_clock_and_times():
    c = ManualClock("2026-07-01T00:00:00.5+01:00")
    assert c() == to_ns("2026-06-30T23:00:00.5Z")
    assert c.advance(1.5) == c() == to_ns("2026-06-30T23:00:02Z")
    with pytest.raises(ValueError, match="only moves forward"):
        c.advance(-1)
    with pytest.raises(ValueError, match="no zone"):
        to_ns("2026-07-01T00:00")
