"""The ``process(batch)`` core: screening outcomes, window closing, emission, end to end
against the naive reference."""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from pueflow.pipeline.core import Pipeline
from pueflow.schema.batch import Batch
from tests import naive
from tests.conftest import (
    NS,
    T0,
    assert_matches_naive,
    build_config,
    frames,
    kpi_sorted,
    meter_rules,
    run,
)

M = 60 * NS
H = 3600 * NS
SPECS = {
    "inc": {"role": "facility", "kind": "register", "register_max": 1e6, "jitter_kwh": 0.5,
            "max_gap": 300},
    "pdu1": {"role": "it", "kind": "power", "max_gap": 60, "max_kw": 5000.0},
    "pdu2": {"role": "it", "kind": "power", "max_gap": 60, "max_kw": 5000.0},
    "cdu": {"role": "cooling.cdu_pump", "kind": "power", "max_gap": 120},
    "chl": {"role": "cooling.chiller", "kind": "register", "max_gap": 600},
    "pv": {"role": "pv", "kind": "power", "max_gap": 60},
    "sup": {"role": "supply_temp_c", "kind": "sensor"},
}


def setup(windows=("1m", "15m", "1h", "1d"), grace="0s", tz="UTC", specs=SPECS):
    rules, meters, keys = meter_rules(specs)
    cfg = build_config(rules, windows=windows, grace=grace, tz=tz, co2=0.4)
    return cfg, meters, keys


def key(dev):
    return ("s1", dev, "v")


def feed(cfg, keys, batches, finalize=True, **kw):
    return run(cfg, batches, keys, finalize=finalize, **kw)


# --------------------------------------------------------------------------- screening


@pytest.mark.parametrize("defer", [False, True])
def test_rejected_readings_are_indexed_named_and_reported(defer):
    cfg, _, keys = setup(windows=("1m",), grace="30s")
    rows = [
        (T0 + 100 * NS, key("pdu1"), 100.0),         # ok
        (T0 + 101 * NS, ("s1", "nope", "v"), 1.0),   # unknown series
        (T0 + 102 * NS, ("zz", "pdu1", "v"), 1.0),   # unknown site
        (T0 + 103 * NS, key("pdu1"), math.nan),      # invalid
        (T0 + 104 * NS, key("inc"), -3.0),           # invalid (negative register)
        (T0 + 105 * NS, key("pdu1"), 6000.0),        # spike (> max_kw)
        (T0 + 60 * NS, key("pdu2"), 1.0),            # late (before 100 - 30)
        (T0 + 70 * NS, key("pdu2"), 1.0),            # exactly at the watermark: ok
        (T0 + 86400 * NS + H + 1, key("pdu1"), 1.0),  # from the future (clock + 1 d)
    ]
    p, outs = feed(cfg, keys, [rows], clock_ns=lambda: T0 + H, defer=defer)
    out = outs[0]
    assert out.rejected_index.tolist() == [1, 2, 3, 4, 5, 6, 8]
    assert out.rejected_reason == ["unknown_series", "unknown_series", "invalid_value",
                                   "invalid_value", "spike", "late", "future"]
    q = frames(outs, "quality")
    counts = dict(q.group_by("kind").agg(pl.col("count").sum()).iter_rows())
    assert counts["unknown_series"] == 2
    assert counts["invalid_value"] == 2
    assert counts["spike"] == 1
    assert counts["late"] == 1
    assert counts["future"] == 1
    assert p.stats == {"readings_in": 9, "readings_ok": 2, "readings_rejected": 7}


def test_identical_rejections_fold_into_one_row_with_a_count():
    cfg, _, keys = setup(windows=("1m",))
    rows = [(T0, ("s1", "nope", "v"), 1.0)] * 3
    _, outs = feed(cfg, keys, [rows], finalize=False)
    q = outs[0].quality
    assert q.height == 1
    assert q["count"][0] == 3
    assert outs[0].rejected_index.tolist() == [0, 1, 2]


@pytest.mark.parametrize("defer", [False, True])
def test_identical_rejections_fold_within_a_call_not_across_calls(defer):
    """Replay (``defer``) builds quality rows once at the end: still one row per call."""
    cfg, _, keys = setup(windows=("1m",))
    bad = ("s1", "nope", "v")
    rows = [(T0, bad, 1.0)] * 3 + [(T0 + NS, bad, 1.0), (T0 + 2 * NS, key("pdu1"), -1.0)]
    _, outs = feed(cfg, keys, [rows, rows[:2]], defer=defer)
    q = frames(outs, "quality").sort("time", "count")
    # by hand: call 1 gives (T0, 3), (T0 + 1 s, 1) and the invalid one; call 2 (T0, 2)
    assert list(zip(q["time"].cast(pl.Int64), q["kind"], q["count"], strict=True)) == [
        (T0, "unknown_series", 2), (T0, "unknown_series", 3),
        (T0 + NS, "unknown_series", 1), (T0 + 2 * NS, "invalid_value", 1)]
    assert q.filter(pl.col("kind") == "invalid_value")["device"].to_list() == ["pdu1"]


@pytest.mark.parametrize("defer", [False, True])
def test_duplicates_keep_the_smallest_value_and_are_reported(defer):
    cfg, _, keys = setup(windows=("1m",))
    rows = [(T0, key("pdu1"), 100.0), (T0 + 30 * NS, key("pdu1"), 300.0),
            (T0 + 30 * NS, key("pdu1"), 200.0), (T0 + 60 * NS, key("pdu1"), 100.0)]
    _, outs = feed(cfg, keys, [rows], defer=defer)
    q = frames(outs, "quality")
    dup = q.filter(q["kind"] == "duplicate")
    assert dup.height == 1
    assert dup["value"][0] == 300.0
    row = kpi_sorted(outs).row(0, named=True)
    assert row["it_kwh"] == pytest.approx((150 + 150) * 0.5 / 60, rel=1e-12)


# --------------------------------------------------------------------------- closing


def test_window_waits_for_the_watermark_then_is_emitted_once():
    cfg, _, keys = setup(windows=("1m",), grace="10s", specs={"pdu1": SPECS["pdu1"]})
    k = key("pdu1")
    p, outs = feed(cfg, keys, [[(T0, k, 60.0), (T0 + 30 * NS, k, 60.0)],
                               [(T0 + 60 * NS, k, 60.0)],      # wm 50 s: nothing closes
                               [(T0 + 75 * NS, k, 60.0)],      # wm 65 s: 60 s in, [0, 60) closes
                               [(T0 + 125 * NS, k, 60.0)]],    # wm 115 s: held by 75 s
                   finalize=False)
    assert [o.kpi is None for o in outs] == [True, True, False, True]
    first = outs[2].kpi
    assert first.height == 1
    assert first["time"].dt.epoch("ns")[0] == T0
    assert first["it_kwh"][0] == pytest.approx(1.0, rel=1e-12)
    assert first["coverage"][0] == 1.0
    fin = p.finalize().kpi
    assert fin["time"].dt.epoch("ns").to_list() == [T0 + M, T0 + 2 * M]
    assert len(p.pending) == 0


def test_interval_of_exactly_max_gap_is_not_lost():
    """A reading at the watermark is accepted and an interval of exactly max_gap is filled,
    so the bucket before it must not close before that reading is integrated.

    Power at t=0 and t=60 s (max_gap 60 s); a second series at 60 s moves the watermark
    (grace 0) to 60 s. The 60 s reading arrives next: the [0, 60 s) energy belongs to the
    first minute.
    """
    cfg, _, keys = setup(windows=("1m",), specs={"pdu1": SPECS["pdu1"], "pdu2": SPECS["pdu2"]})
    a, b = key("pdu1"), key("pdu2")
    _, outs = feed(cfg, keys, [[(T0, a, 60.0)], [(T0 + M, b, 60.0)], [(T0 + M, a, 60.0)],
                               [(T0 + 2 * M, b, 60.0), (T0 + 2 * M, a, 60.0)]])
    kpi = kpi_sorted(outs)
    assert kpi["time"].dt.epoch("ns").to_list() == [T0, T0 + M]
    assert kpi["it_kwh"].to_list() == pytest.approx([1.0, 2.0], rel=1e-12)


def test_interval_of_exactly_max_gap_is_not_lost_register():
    spec = {"inc": {"role": "facility", "kind": "register", "max_gap": 3600},
            "pdu1": SPECS["pdu1"]}
    cfg, _, keys = setup(windows=("1h",), specs=spec)
    i = key("inc")
    _, outs = feed(cfg, keys, [[(T0, i, 0.0)], [(T0 + H, i, 500.0)]])
    kpi = kpi_sorted(outs)
    assert kpi["facility_kwh"].to_list() == [500.0]


def test_samples_exactly_max_gap_apart_conserve_energy():
    """The everyday form of the case above: a meter sampled every max_gap with grace 0.
    100 kW for 10 minutes is 16.67 kWh, all of it inside the hour, none after the data."""
    cfg, _, keys = setup(windows=("1m", "1h"), specs={"pdu1": SPECS["pdu1"]})
    k = key("pdu1")
    _, outs = feed(cfg, keys, [[(T0 + i * M, k, 100.0) for i in range(11)]])
    kpi = kpi_sorted(outs)
    hour = kpi.filter(kpi["window"] == "1h")
    assert hour["it_kwh"].to_list() == pytest.approx([1000 / 60], rel=1e-12)
    minutes = kpi.filter(kpi["window"] == "1m")
    assert minutes["time"].dt.epoch("ns").to_list() == [T0 + i * M for i in range(10)]
    assert minutes["it_kwh"].to_list() == pytest.approx([100 / 60] * 10, rel=1e-12)


@pytest.mark.parametrize("defer", [False, True])
def test_reset_after_a_gap_reports_both_events(defer):
    """A register that resets while it was silent longer than max_gap shows a reset *and* a
    gap; released on its own, the reading must still yield both (quality rows and counts)."""
    spec = {"inc": {"role": "facility", "kind": "register", "max_gap": 900},
            "pdu1": SPECS["pdu1"]}
    cfg, _, keys = setup(windows=("1h",), specs=spec)
    i = key("inc")
    _, outs = feed(cfg, keys, [[(T0, i, 5000.0)], [(T0 + H, i, 10.0)],
                               [(T0 + H + M, i, 11.0)]], defer=defer)
    kpi = kpi_sorted(outs)
    assert kpi["facility_kwh"].to_list() == [0.0, 11.0]
    assert kpi["resets"].to_list() == [0, 1]
    assert kpi["gaps"].to_list() == [0, 1]
    q = frames(outs, "quality")
    ev = q.filter(q["kind"].is_in(["reset", "gap"])).sort("kind")
    assert ev["kind"].to_list() == ["gap", "reset"]
    assert ev["time"].cast(pl.Int64).to_list() == [T0 + H, T0 + H]
    assert ev["device"].to_list() == ["inc", "inc"]


def test_advance_watermark_closes_a_quiet_feed():
    cfg, _, keys = setup(windows=("1m",), specs={"pdu1": SPECS["pdu1"]})
    k = key("pdu1")
    p, outs = feed(cfg, keys, [[(T0, k, 60.0), (T0 + 30 * NS, k, 60.0)]], finalize=False)
    assert outs[0].kpi is None
    # the quiet minutes after the data close too, with nothing in them
    assert p.advance_watermark({0: T0 + 200 * NS}).kpi["it_kwh"].to_list() == \
        pytest.approx([0.5, 0.0, 0.0], rel=1e-12)
    assert p.advance_watermark({0: T0}).kpi is None          # never backwards


def test_day_window_at_local_midnight():
    cfg, meters, keys = setup(windows=("15m", "1h", "1d"), tz="Africa/Casablanca",
                              specs={"pdu1": SPECS["pdu1"]})
    k = key("pdu1")
    day = 1_719_792_000 * NS                # 2024-07-01 00:00 UTC = 01:00 in Casablanca
    t = day - 2 * H + np.arange(0, 4 * H + 1, 30 * NS)
    _, outs = feed(cfg, keys, [[(int(x), k, 100.0) for x in t]])
    kpi = kpi_sorted(outs)
    days = kpi.filter(kpi["window"] == "1d")
    assert days["time"].dt.epoch("ns").to_list() == [day - 25 * H, day - H]
    assert days["it_kwh"].to_list() == pytest.approx([100.0, 300.0], rel=1e-12)
    want = naive.kpi_rows([(int(x), "pdu1", 100.0) for x in t], meters, ["15m", "1h", "1d"],
                          ZoneInfo("Africa/Casablanca"), co2_kg_per_kwh=0.4)
    assert_matches_naive(kpi, want)


def test_silent_meter_lowers_coverage():
    specs = {"pdu1": SPECS["pdu1"], "pdu2": SPECS["pdu2"]}
    cfg, meters, keys = setup(windows=("1m", "15m"), specs=specs)
    rows = [(T0 + s * NS, key("pdu1"), 100.0) for s in range(0, 15 * 60 + 1, 30)]
    rows += [(T0 + s * NS, key("pdu2"), 100.0) for s in range(0, 5 * 60 + 1, 30)]
    rows.sort(key=lambda r: r[0])
    _, outs = feed(cfg, keys, [rows])
    kpi = kpi_sorted(outs)
    q = kpi.filter(kpi["window"] == "15m")
    assert q["coverage"][0] == pytest.approx((15 + 5) / 30, rel=1e-12)
    assert_matches_naive(kpi, naive.kpi_rows([(t, k[1], v) for t, k, v in rows], meters,
                                             ["1m", "15m"], ZoneInfo("UTC"), 0.4))


# --------------------------------------------------------------------------- end to end


def scenario():
    """Two hours of a small site with gaps, a reset, a rollover, jitter and a sensor."""
    rng = np.random.default_rng(2024)
    rows = []
    t = T0 + 7 * NS
    inc = 999_900.0
    chl = 50.0
    while t < T0 + 2 * H:
        dt = int(rng.choice([10, 15, 30, 45, 200])) * NS + int(rng.integers(0, 10**6))
        t += dt
        for dev in ("pdu1", "pdu2", "cdu", "pv"):
            if rng.random() < 0.85:
                rows.append((t + int(rng.integers(0, 3 * NS)), dev, float(rng.uniform(50, 900))))
        inc += rng.uniform(0, 3)
        if inc > 1e6:
            inc -= 1e6                                   # rollover
        rows.append((t, "inc", inc - (0.3 if rng.random() < 0.1 else 0.0)))   # jitter
        chl += rng.uniform(0, 1)
        if rng.random() < 0.01:
            chl = 0.5                                     # reset
        rows.append((t, "chl", chl))
        rows.append((t, "sup", float(rng.uniform(18, 30))))
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


@pytest.mark.parametrize("tz", ["UTC", "Europe/Madrid"])
def test_end_to_end_against_naive(tz):
    windows = ["1m", "15m", "1h", "1d"]
    cfg, meters, keys = setup(windows=windows, tz=tz)
    rows = scenario()
    _, outs = feed(cfg, keys, [[(t, key(d), v) for t, d, v in rows]])
    kpi = kpi_sorted(outs)
    want = naive.kpi_rows(rows, meters, windows, ZoneInfo(tz), co2_kg_per_kwh=0.4)
    assert kpi["rollovers"].sum() >= 1 * len(windows)
    assert_matches_naive(kpi, want)
    q = frames(outs, "quality")
    flagged = {(r["point"], r["time"]) for r in q.iter_rows(named=True)
               if r["kind"] in ("non_positive_it", "better_than_perfect")}
    want_flagged = {(w, t) for (w, t), r in want.items() if r["_flag"]}
    assert {(w, int(t.timestamp()) * NS) for w, t in flagged} == want_flagged


def test_end_to_end_in_batches_of_one():
    windows = ["1m", "15m"]
    cfg, meters, keys = setup(windows=windows, grace="20s")
    rows = scenario()[:400]
    _, outs = feed(cfg, keys, [[(t, key(d), v)] for t, d, v in rows])
    want = naive.kpi_rows(rows, meters, windows, ZoneInfo("UTC"), co2_kg_per_kwh=0.4)
    assert_matches_naive(kpi_sorted(outs), want)


def test_empty_batches_and_finalize_without_data():
    cfg, _, keys = setup()
    p = Pipeline(cfg)
    out = p.process(Batch.empty())
    assert out.kpi is None
    assert out.quality is None
    assert len(out.rejected_index) == 0
    fin = p.finalize()
    assert fin.kpi is None


def test_restore_resets_series_the_snapshot_does_not_know():
    """State restored into a pipeline that already saw other series of the same site must
    not keep those series' stale last readings (they would integrate across the restore)."""
    from tests.conftest import FAR_CLOCK

    rules, _, _ = meter_rules({"pdu1": SPECS["pdu1"], "pdu2": SPECS["pdu2"]})
    cfg = build_config(rules, windows=("1m",))
    fresh = Pipeline(cfg, clock_ns=FAR_CLOCK)
    a = fresh.registry.id("s1", "pdu1", "v")
    fresh.process(Batch(np.array([T0]), np.array([a]), np.array([60.0])))
    blob = fresh.snapshot(["s1"])

    used = Pipeline(cfg, clock_ns=FAR_CLOCK)
    b = used.registry.id("s1", "pdu2", "v")
    # the first reading is released (older than the watermark) and becomes pdu2's state
    used.process(Batch(np.array([T0 - 50 * NS, T0 - 40 * NS]), np.array([b, b]),
                       np.array([600.0, 600.0])))
    assert used.last_t[b] == T0 - 50 * NS
    used.restore(blob)
    assert used.last_t[b] == np.iinfo(np.int64).min
    a2 = used.registry.id("s1", "pdu1", "v")
    out = used.process(Batch(np.array([T0 + 5 * NS, T0 + 30 * NS, T0 + 90 * NS]),
                             np.array([b, a2, a2]), np.array([60.0, 60.0, 60.0])))
    fin = used.finalize().kpi
    got = sum(df["it_kwh"].sum() for df in (out.kpi, fin) if df is not None)
    # pdu1: 60 kW for 90 s = 1.5 kWh; pdu2 starts afresh at +5 s (nothing before it)
    assert got == pytest.approx(1.5, rel=1e-12)
