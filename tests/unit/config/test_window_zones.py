"""Hourly and daily windows together: the base bucket follows the sites' zone offsets."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from pueflow.config.load import parse_config
from pueflow.exceptions import ConfigError
from pueflow.pipeline.core import Pipeline
from pueflow.schema.batch import Batch

NS = 10**9
LOAD_KW = 100.0
FAR_CLOCK = lambda: 2**62  # noqa: E731


def _site(tz: str) -> dict:
    return {"id": "s1", "jurisdiction": "MA", "timezone": tz, "latitude": 0.0,
            "longitude": 0.0, "it_capacity_kw": 1000.0,
            "meters": [{"device": "pdu-*", "point": "kw", "kind": "power", "role": "it",
                        "max_gap": "120s"}]}


def _midnight(d: date, z: ZoneInfo) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=z).timestamp()) * NS


# 2024-03-31: Madrid springs forward (23 h day); 2024-04-14: Casablanca back to UTC+1
# after Ramadan (23 h day); Kathmandu is UTC+5:45, so its base bucket must be 15 m and
# its days are checked against the closed form only
@pytest.mark.parametrize(("tz", "first"), [("UTC", date(2024, 3, 30)),
                                           ("Africa/Casablanca", date(2024, 4, 13)),
                                           ("Europe/Madrid", date(2024, 3, 30)),
                                           ("Asia/Kathmandu", date(2024, 3, 30))])
def test_hourly_and_daily_windows_daily_rows_at_local_midnight_sum_the_hours(tz, first):
    cfg = parse_config({"pipeline": {"windows": ["1h", "1d"]}, "sites": [_site(tz)]})
    z = ZoneInfo(tz)
    n_days = 3
    t0, t1 = _midnight(first, z), _midnight(first + timedelta(days=n_days), z)
    p = Pipeline(cfg, clock_ns=FAR_CLOCK)
    ts = np.arange(t0, t1 + 1, 60 * NS, dtype=np.int64)
    sid = p.registry.id("s1", "pdu-1", "kw")
    b = Batch(ts, np.full(len(ts), sid), np.full(len(ts), LOAD_KW))
    outs = [p.process(x) for x in b.split(5000)] + [p.finalize()]
    kpi = pl.concat([o.kpi for o in outs if o.kpi is not None], how="diagonal_relaxed")
    days = kpi.filter(pl.col("window") == "1d").sort("time")
    hours = kpi.filter(pl.col("window") == "1h")
    starts = [_midnight(first + timedelta(days=k), z) for k in range(n_days + 1)]
    got = [int(t.timestamp()) * NS for t in days["time"]]
    assert got[:n_days] == starts[:n_days]  # each daily row starts at a local midnight
    for k in range(n_days):
        lo, hi = starts[k], starts[k + 1]
        day = days.filter(pl.col("time").dt.epoch("ns") == lo)
        in_day = hours.filter(pl.col("time").dt.epoch("ns").is_between(lo, hi, closed="left"))
        if lo % (3600 * NS) == 0:  # UTC hours tile the local day (not so at UTC+5:45)
            assert day["it_kwh"][0] == pytest.approx(in_day["it_kwh"].sum(), rel=1e-12)
            assert in_day.height == (hi - lo) // (3600 * NS)
        # closed form: a constant load over the day's real length (23, 24 or 25 h)
        assert day["it_kwh"][0] == pytest.approx(LOAD_KW * (hi - lo) / 3600 / NS, rel=1e-9)


def test_a_zone_whose_midnights_need_sub_minute_buckets_is_refused_with_a_fix():
    # Africa/Monrovia was UTC-0:44:30 until 1972: its midnights fall on 30 s multiples only
    with pytest.raises(ConfigError) as err:
        parse_config({"pipeline": {"windows": ["1m", "1d"]},
                      "sites": [{**_site("Africa/Monrovia"), "id": "liberia-1"}]})
    text = str(err.value)
    assert "liberia-1" in text
    assert "Africa/Monrovia" in text
    assert "'30s'" in text
    cfg = parse_config({"pipeline": {"windows": ["30s", "1d"]},
                        "sites": [{**_site("Africa/Monrovia"), "id": "liberia-1"}]})
    assert cfg.base_ns() == 30 * NS  # the suggested window is accepted
