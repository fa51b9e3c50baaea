"""Daily windows start at each site's local midnight, including days of 23 and 25 hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from pueflow.config.load import parse_config
from pueflow.pipeline.core import Pipeline
from pueflow.pipeline.windows import local_date, window_end, window_start
from pueflow.schema.batch import Batch

NS = 10**9
LOAD_KW = 100.0
FAR_CLOCK = lambda: 2**62  # noqa: E731 - nothing in these tests is "from the future"


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * NS


def _utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def _site(sid: str, tz: str) -> dict:
    return {"id": sid, "jurisdiction": "MA", "timezone": tz, "latitude": 0.0, "longitude": 0.0,
            "it_capacity_kw": 1000.0,
            "meters": [{"device": "pdu-*", "point": "power_kw", "kind": "power", "role": "it",
                        "max_gap": "120s"}]}


def _days(sites: dict[str, str], first: date, n_days: int, chunk: int = 5000) -> pl.DataFrame:
    """1d kpi rows of a constant ``LOAD_KW`` on each site, sampled every minute from the
    local midnight starting ``first`` to the local midnight ``n_days`` later (inclusive)."""
    cfg = parse_config({"pipeline": {"windows": ["15m", "1h", "1d"]},
                        "sites": [_site(s, tz) for s, tz in sites.items()]})
    p = Pipeline(cfg, clock_ns=FAR_CLOCK)
    parts = []
    for sid, tz in sites.items():
        z = ZoneInfo(tz)
        last = first + timedelta(days=n_days)
        t0 = _ns(datetime(first.year, first.month, first.day, tzinfo=z))
        t1 = _ns(datetime(last.year, last.month, last.day, tzinfo=z))
        ts = np.arange(t0, t1 + 1, 60 * NS, dtype=np.int64)
        parts.append((ts, np.full(len(ts), p.registry.id(sid, "pdu-1", "power_kw"))))
    t = np.concatenate([a for a, _ in parts])
    s = np.concatenate([b for _, b in parts])
    order = np.argsort(t, kind="stable")  # arrival in event-time order, sites interleaved
    batch = Batch(t[order], s[order], np.full(len(t), LOAD_KW))
    outs = [p.process(b) for b in batch.split(chunk)] + [p.finalize()]
    kpi = pl.concat([o.kpi for o in outs if o.kpi is not None], how="diagonal_relaxed")
    return kpi.sort("site", "window", "time")


# tz, the local date of a 23 h or 25 h day, its length [h], its start and end [UTC]
DST_DAYS = [
    ("Europe/Madrid", date(2026, 3, 29), 23, _utc(2026, 3, 28, 23), _utc(2026, 3, 29, 22)),
    ("Europe/Madrid", date(2026, 10, 25), 25, _utc(2026, 10, 24, 22), _utc(2026, 10, 25, 23)),
    ("America/Chicago", date(2026, 3, 8), 23, _utc(2026, 3, 8, 6), _utc(2026, 3, 9, 5)),
    ("America/Chicago", date(2026, 11, 1), 25, _utc(2026, 11, 1, 5), _utc(2026, 11, 2, 6)),
    # Morocco leaves +01 for +00 over Ramadan
    ("Africa/Casablanca", date(2026, 2, 15), 25, _utc(2026, 2, 14, 23), _utc(2026, 2, 16, 0)),
    ("Africa/Casablanca", date(2026, 3, 22), 23, _utc(2026, 3, 22, 0), _utc(2026, 3, 22, 23)),
]
IDS = [f"{tz.split('/')[1]}-{d.isoformat()}" for tz, d, *_ in DST_DAYS]


@pytest.mark.parametrize(("tz", "day", "hours", "start", "end"), DST_DAYS, ids=IDS)
def test_window_bounds_are_local_midnights(tz, day, hours, start, end):
    z = ZoneInfo(tz)
    noon = _ns(start + timedelta(hours=12))
    assert window_start("1d", noon, z) == _ns(start)
    assert window_start("1d", _ns(start), z) == _ns(start)
    assert window_start("1d", _ns(end) - 1, z) == _ns(start)
    assert window_start("1d", _ns(end), z) == _ns(end)
    assert window_end("1d", _ns(start), z) == _ns(end)
    assert (_ns(end) - _ns(start)) == hours * 3600 * NS
    assert local_date(_ns(start), z) == day.isoformat()


@pytest.mark.parametrize(("tz", "day", "hours", "start", "end"), DST_DAYS, ids=IDS)
def test_daily_rows_start_at_local_midnight_and_hold_the_days_energy(tz, day, hours, start, end):
    kpi = _days({"s": tz}, day - timedelta(days=1), 3)
    daily = kpi.filter(pl.col("window") == "1d")
    z = ZoneInfo(tz)
    want = [datetime(d.year, d.month, d.day, tzinfo=z).astimezone(UTC)
            for d in (day - timedelta(days=1), day, day + timedelta(days=1))]
    assert daily["time"].to_list() == want
    assert want[1] == start
    assert want[2] == end
    assert [t.astimezone(z).hour for t in daily["time"]] == [0, 0, 0]
    # a constant load: the day's energy is load x its real length, not x 24 h
    assert daily["it_kwh"].to_list() == pytest.approx([LOAD_KW * 24, LOAD_KW * hours,
                                                       LOAD_KW * 24])
    assert daily["coverage"].to_list() == pytest.approx([1.0, 1.0, 1.0])
    # and the hours inside it add up to it: 23 or 25 hourly rows
    hourly = kpi.filter((pl.col("window") == "1h") & (pl.col("time") >= start)
                        & (pl.col("time") < end))
    assert hourly.height == hours
    assert hourly["it_kwh"].sum() == pytest.approx(LOAD_KW * hours)


def test_each_site_in_one_pipeline_keeps_its_own_midnight():
    sites = {"tetouan-1": "Africa/Casablanca", "aragon-1": "Europe/Madrid",
             "abilene-1": "America/Chicago", "dakar-1": "Africa/Dakar"}
    kpi = _days(sites, date(2026, 10, 24), 2)
    daily = kpi.filter(pl.col("window") == "1d")
    got = {(r["site"], r["time"]): r["it_kwh"] for r in daily.iter_rows(named=True)}
    assert got == pytest.approx({
        ("tetouan-1", _utc(2026, 10, 23, 23)): 2400.0, ("tetouan-1", _utc(2026, 10, 24, 23)): 2400.0,
        ("aragon-1", _utc(2026, 10, 23, 22)): 2400.0, ("aragon-1", _utc(2026, 10, 24, 22)): 2500.0,
        ("abilene-1", _utc(2026, 10, 24, 5)): 2400.0, ("abilene-1", _utc(2026, 10, 25, 5)): 2400.0,
        ("dakar-1", _utc(2026, 10, 24, 0)): 2400.0, ("dakar-1", _utc(2026, 10, 25, 0)): 2400.0,
    })


def test_daily_rows_do_not_depend_on_batch_size_across_a_dst_change():
    one = _days({"s": "Europe/Madrid"}, date(2026, 10, 24), 2, chunk=10**7)
    many = _days({"s": "Europe/Madrid"}, date(2026, 10, 24), 2, chunk=977)
    cols = ["time", "site", "window", "it_kwh", "coverage"]
    assert one.select(cols).equals(many.select(cols))
