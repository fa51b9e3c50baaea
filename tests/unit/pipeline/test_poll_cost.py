"""Per-poll shortcuts of the core give exactly the rows of the full work they skip."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pytest

from pueflow.config.load import parse_config
from pueflow.pipeline import windows as wn
from pueflow.pipeline.fleet import FleetAggregator
from pueflow.roles import ALL_ROLES, ROLE_INDEX

NS = 10**9


@pytest.mark.parametrize("seed", range(20))
def test_shift_used_equals_a_full_shift_when_the_tail_is_empty(seed):
    # independent formulation: numpy slicing of the whole row, the tail filled with zeros
    rng = np.random.default_rng(seed)
    n_series, width = 7, int(rng.integers(1, 12))
    used = int(rng.integers(0, width + 1))
    k = int(rng.integers(0, width + 2))
    arrays = []
    for dtype in (np.float64, np.float64, np.float64, np.int64):
        a = np.zeros((n_series, width), dtype)
        a[:, :used] = rng.integers(1, 100, (n_series, used))
        arrays.append(a)
    site_series = np.sort(rng.choice(n_series, 4, replace=False)).astype(np.int32)
    want = [a.copy() for a in arrays]
    for a in want:
        for s in site_series:
            row = a[s].copy()
            a[s] = 0
            a[s, : max(width - k, 0)] = row[k:]
    wn.shift_used(site_series, k, used, *arrays)
    for got, exp in zip(arrays, want, strict=True):
        np.testing.assert_array_equal(got, exp)


class _AlwaysFull(FleetAggregator):
    """The aggregator without its shortcut: every flush groups the pending rows in polars."""

    def _none_ready(self, passed) -> bool:
        return False


def _fleet_site(sid: str, jur: str) -> dict:
    return {"id": sid, "jurisdiction": jur, "latitude": 0.0, "longitude": 0.0,
            "it_capacity_kw": 1000.0,
            "meters": [{"device": "pdu-*", "point": "power_kw", "kind": "power", "role": "it"}]}


def _rows(df):
    return [] if df is None else sorted(df.iter_rows())


@pytest.mark.parametrize("seed", range(12))
def test_fleet_flush_shortcut_emits_the_rows_of_the_full_grouping(seed):
    rng = np.random.default_rng(seed)
    cfg = parse_config({"sites": [_fleet_site("a", "MA"), _fleet_site("b", "ES"),
                                  _fleet_site("c", "ES")]})
    fast, full = FleetAggregator(cfg), _AlwaysFull(cfg)
    met = np.zeros(len(ALL_ROLES), bool)
    met[ROLE_INDEX["it"]] = True
    tz = ZoneInfo("UTC")
    passed_until = {"a": 0, "b": 0, "c": 0}  # a site has moved past windows keyed before this

    def passed(site, window, key):
        return key < passed_until[site]

    emitted = 0
    for _ in range(60):
        op = rng.integers(0, 5)
        if op <= 2:  # a site closes a few hourly windows
            s = int(rng.integers(0, 3))
            starts = (np.sort(rng.choice(6, int(rng.integers(1, 3)), replace=False)) * 3600 * NS)
            e = np.zeros((len(starts), len(ALL_ROLES)))
            e[:, ROLE_INDEX["it"]] = rng.uniform(1, 9, len(starts))
            for agg in (fast, full):
                agg.add_many(cfg.sites[s], "1h", starts, e, met, tz)
        elif op == 3:  # a quiet site's watermark moves on
            passed_until["abc"[int(rng.integers(0, 3))]] += 3600 * NS
        elif rng.random() < 0.2:  # what the KPI-topic tap does between flushes
            fast.pending.clear()
            full.pending.clear()
        got, want = fast.flush(False, passed), full.flush(False, passed)
        assert _rows(got) == _rows(want)
        emitted += len(_rows(want))
    assert _rows(fast.flush(True)) == _rows(full.flush(True))
    assert emitted  # the sequence did complete windows on the way
