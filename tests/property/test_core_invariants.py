"""Hypothesis: invariants of the ``process(batch)`` core.

(a) sorted input, cut anywhere, equals the naive end-to-end reference;
(b) cutting the input into batches anywhere gives identical kpi rows (bit for bit);
(c) shuffling readings within the grace period gives identical kpi rows;
(d) ratio of sums over the 1m windows of an hour equals the 1h window's PUE;
(e) every reading is accounted for exactly once: integrated + rejected + duplicate = in;
(f) rows built once at the end (``defer_rows``, as replay does) equal rows built per batch.
"""

from __future__ import annotations

import math
from collections import Counter
from zoneinfo import ZoneInfo

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import naive
from tests.conftest import (
    NS,
    T0,
    assert_matches_naive,
    build_config,
    examples,
    frames,
    meter_rules,
    run,
)

SETTINGS = settings(max_examples=examples(40), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
M = 60 * NS
DTS = [1, 5, 10, 30, 59, 60, 61, 90, 120, 300, 700, 1000]
SPECS = {
    "inc": {"role": "facility", "kind": "register", "register_max": 1e4, "jitter_kwh": 0.5,
            "max_gap": 300, "max_kw": 5000.0},
    "pdu1": {"role": "it", "kind": "power", "max_gap": 60, "max_kw": 3000.0},
    "pdu2": {"role": "it", "kind": "power", "max_gap": 120, "max_kw": 3000.0},
    "cdu": {"role": "cooling.cdu_pump", "kind": "power", "max_gap": 90, "max_kw": 3000.0},
    "chl": {"role": "cooling.chiller", "kind": "register", "max_gap": 600},
    "bat": {"role": "battery", "kind": "power", "max_gap": 60, "max_kw": 1000.0},
    "sup": {"role": "supply_temp_c", "kind": "sensor"},
}
RULES, METERS, KEYS = meter_rules(SPECS)
WINDOWS = ["1m", "15m", "1h", "1d"]


def config(grace_s: int, windows=WINDOWS, tz="Europe/Madrid", two_sites=False):
    if not two_sites:
        return build_config(RULES, windows=windows, grace=f"{grace_s}s", tz=tz, co2=0.3)
    sites = [{"id": sid, "jurisdiction": j, "timezone": z, "latitude": 0.0, "longitude": 0.0,
              "it_capacity_kw": 10_000.0, "grid_co2_kg_per_kwh": 0.3, "meters": RULES}
             for sid, j, z in (("s1", "ES", tz), ("s2", "SN", "Africa/Dakar"))]
    return build_config([], windows=windows, grace=f"{grace_s}s", sites=sites)


@st.composite
def device_readings(draw, dev, t_start, n_max):
    """One device's readings: either irregular (random steps with sub-second offsets) or
    on a 10 s grid at a fixed period (often exactly max_gap) with dropped samples."""
    sp = SPECS[dev]
    n = draw(st.integers(0, n_max))
    regular = draw(st.booleans())
    gap_s = sp.get("max_gap", 60)
    period = draw(st.sampled_from([gap_s, gap_s, max(gap_s // 2, 10), 10]))
    if regular:
        t = t_start + draw(st.integers(0, 12)) * 10 * NS
    else:
        t = t_start + draw(st.integers(0, 120)) * NS + draw(st.sampled_from([0, 1, 500_000_000]))
    cur = draw(st.floats(0, 9000.0)) if sp["kind"] == "register" else 0.0
    out = []
    for _ in range(n):
        if regular:
            t += period * NS * draw(st.sampled_from([1, 1, 1, 1, 2, 3]))
        else:
            t += draw(st.sampled_from(DTS)) * NS + draw(st.sampled_from([0, 0, 1, 250_000_000]))
        if sp["kind"] == "register":
            op = draw(st.sampled_from(["inc"] * 8 + ["jitter", "reset", "near_max", "spike",
                                                     "drop", "bad"]))
            if op == "inc":
                cur += draw(st.floats(0, 2))
                cur = cur - sp.get("register_max", 1e12) if cur >= sp.get(
                    "register_max", 1e12) else cur
                v = cur
            elif op == "jitter":
                v = cur - draw(st.floats(0, 0.5))
            elif op == "reset":
                cur = v = draw(st.floats(0, 0.001))
            elif op == "near_max":
                cur = v = sp.get("register_max", 1e12) - draw(st.floats(0.001, 3))
            elif op == "spike":
                v = cur + 1e6
            elif op == "drop":                          # a reset to anything lower
                cur = v = draw(st.floats(0, max(cur, 0.0)))
            else:
                v = draw(st.sampled_from([math.nan, -1.0, math.inf]))
        elif sp["kind"] == "power":
            lo = -900.0 if dev == "bat" else 0.0
            v = draw(st.one_of(st.floats(lo, 900.0), st.floats(lo, 900.0),
                               st.sampled_from([0.0, math.nan, -5.0, 1e5])))
        else:
            v = draw(st.floats(-10, 60))
        out.append((t, ("s1", dev, "v"), float(v)))
    return out


@st.composite
def stream(draw, n_max=20, two_sites=False):
    """Readings of every device in time order, with a few duplicates (other values)."""
    rows = []
    devices = draw(st.sets(st.sampled_from(list(SPECS)), min_size=1))
    for dev in SPECS:
        if dev in devices:
            rows += draw(device_readings(dev, T0, n_max))
    if two_sites:
        for dev in sorted(draw(st.sets(st.sampled_from(["inc", "pdu1", "sup"])))):
            rows += [(t, ("s2", d, p), v)
                     for t, (_, d, p), v in draw(device_readings(dev, T0 + 7 * M, n_max))]
        rows += [(T0 + draw(st.integers(0, 3600)) * NS, ("s1", "ghost", "v"), 1.0)
                 for _ in range(draw(st.integers(0, 2)))]
    rows.sort(key=lambda r: (r[0], r[1]))
    if rows:
        for i in draw(st.lists(st.integers(0, len(rows) - 1), max_size=4)):
            t, k, v = rows[i]
            rows.insert(i + 1, (t, k, draw(st.sampled_from([v, v + 1.0, v - 0.25]))))
    return rows


def cut(draw, rows):
    n = len(rows)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    return [rows[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)]


def all_keys(two_sites=False):
    keys = list(KEYS)
    if two_sites:
        keys += [("s2", d, "v") for d in SPECS]
    return keys


def kpi_of(cfg, batches, two_sites=False):
    p, outs = run(cfg, batches, all_keys(two_sites))
    kpi = frames(outs, "kpi")
    kpi = kpi.sort("site", "window", "time") if kpi is not None else None
    assert len(p.pending) == 0
    return kpi, outs


def quality_counts(outs) -> pl.DataFrame | None:
    """Quality events keyed by identity with summed counts (split-independent form)."""
    q = frames(outs, "quality")
    if q is None:
        return None
    return (q.group_by("time", "site", "kind", "device", "point", "run")
            .agg(pl.col("count").sum()).sort("time", "site", "kind", "device", "point"))


def fleet_of(outs) -> pl.DataFrame | None:
    df = frames(outs, "fleet")
    return None if df is None else df.sort("scope", "window", "time")


def same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.equals(b)


# --------------------------------------------------------------------------- (a)


@SETTINGS
@given(st.data(), st.sampled_from([0, 10, 60]), st.sampled_from(["UTC", "Europe/Madrid"]))
def test_core_equals_naive_reference(data, grace_s, tz):
    rows = data.draw(stream())
    batches = cut(data.draw, rows)
    kpi, _ = kpi_of(config(grace_s, tz=tz), batches)
    want = naive.kpi_rows([(t, k[1], v) for t, k, v in rows], METERS, WINDOWS, ZoneInfo(tz),
                          co2_kg_per_kwh=0.3)
    if kpi is None:
        assert want == {}
    else:
        assert_matches_naive(kpi, want)


# --------------------------------------------------------------------------- (b)


@st.composite
def arrival(draw, rows, grace_ns, late=True):
    """An arrival order: each reading delayed by up to grace (never late), and with ``late``
    a few delayed much more (late beyond grace, rejected)."""
    keyed = []
    for i, r in enumerate(rows):
        d = draw(st.integers(0, grace_ns)) if grace_ns else 0
        if late and draw(st.integers(0, 20)) == 0:
            d += draw(st.integers(0, 600)) * NS
        keyed.append((r[0] + d, i, r))
    keyed.sort(key=lambda x: (x[0], x[1]))
    return [r for *_, r in keyed]


def late_arrivals(data, grace_s):
    """Two sites' readings arriving up to grace late (a few later), the batches they are
    cut into, and the config with that grace."""
    rows = data.draw(stream(two_sites=True))
    rows = data.draw(arrival(rows, grace_s * NS, late=True))
    return rows, cut(data.draw, rows), config(grace_s, two_sites=True)


@SETTINGS
@given(st.data(), st.sampled_from([0, 5, 30]))
def test_batch_splits_give_identical_rows(data, grace_s):
    rows = data.draw(stream(two_sites=True))
    rows = data.draw(arrival(rows, grace_s * NS, late=True))
    cfg = config(grace_s, two_sites=True)
    one_kpi, one_outs = kpi_of(cfg, [rows], two_sites=True)
    many_kpi, many_outs = kpi_of(cfg, cut(data.draw, rows), two_sites=True)
    assert same(one_kpi, many_kpi)
    assert same(fleet_of(one_outs), fleet_of(many_outs))
    assert same(quality_counts(one_outs), quality_counts(many_outs))


# --------------------------------------------------------------------------- (c)


@SETTINGS
@given(st.data(), st.sampled_from([1, 10, 60, 300]))
def test_shuffle_within_grace_gives_identical_rows(data, grace_s):
    rows = data.draw(stream(two_sites=True))
    cfg = config(grace_s, two_sites=True)
    sorted_kpi, sorted_outs = kpi_of(cfg, [rows], two_sites=True)
    shuffled = data.draw(arrival(rows, grace_s * NS, late=False))
    shuf_kpi, shuf_outs = kpi_of(cfg, cut(data.draw, shuffled), two_sites=True)
    assert same(sorted_kpi, shuf_kpi)
    assert same(quality_counts(sorted_outs), quality_counts(shuf_outs))


# --------------------------------------------------------------------------- (d)


@SETTINGS
@given(st.data(), st.sampled_from([0, 30]))
def test_ratio_of_sums_over_minutes_is_the_hour_pue(data, grace_s):
    rows = data.draw(stream(n_max=50))
    cfg = config(grace_s, windows=["1m", "1h"])
    kpi, _ = kpi_of(cfg, cut(data.draw, rows))
    if kpi is None:
        return
    minutes = kpi.filter(pl.col("window") == "1m")
    for h in kpi.filter(pl.col("window") == "1h").iter_rows(named=True):
        inside = minutes.filter((pl.col("time") >= h["time"])
                                & (pl.col("time") < h["time"] + pl.duration(hours=1)))
        fac = sum(inside["facility_kwh"].to_list())
        it = sum(inside["it_kwh"].to_list())
        assert math.isclose(fac, h["facility_kwh"], rel_tol=1e-12, abs_tol=1e-9)
        assert math.isclose(it, h["it_kwh"], rel_tol=1e-12, abs_tol=1e-9)
        if h["pue"] is not None:
            assert math.isclose(fac / it, h["pue"], rel_tol=1e-12)


# --------------------------------------------------------------------------- (e)


@SETTINGS
@given(st.data(), st.sampled_from([0, 20]))
def test_every_reading_accounted_for_once(data, grace_s):
    rows, batches, cfg = late_arrivals(data, grace_s)
    p, outs = run(cfg, batches, all_keys(True))
    rejected = set()
    offset = 0
    for b, o in zip(batches, outs, strict=False):
        idx = o.rejected_index.tolist()
        assert len(set(idx)) == len(idx) == len(o.rejected_reason)
        assert all(0 <= i < len(b) for i in idx)
        rejected |= {offset + i for i in idx}
        offset += len(b)
    assert len(outs[-1].rejected_index) == 0             # finalize rejects nothing
    q = frames(outs, "quality")
    if q is None:
        q = pl.DataFrame(schema={"kind": pl.Utf8, "device": pl.Utf8, "count": pl.Int64})
    dups = int(q.filter(pl.col("kind") == "duplicate")["count"].sum())
    reasons = Counter(r for o in outs for r in o.rejected_reason)
    reported = dict(q.group_by("kind").agg(pl.col("count").sum()).iter_rows())
    for kind in ("unknown_series", "future", "invalid_value", "late"):
        assert reported.get(kind, 0) == reasons[kind], kind
    # "spike" rows are power readings rejected at screening and register deltas excluded
    # when integrating (those readings are accepted: they move no state but were seen)
    assert reported.get("spike", 0) >= reasons["spike"]
    assert sum(reasons.values()) == len(rejected)
    accepted = [r for i, r in enumerate(rows) if i not in rejected]
    distinct = {(r[0], r[1]) for r in accepted}
    assert dups == len(accepted) - len(distinct)
    assert len(distinct) + len(rejected) + dups == len(rows)
    assert p.stats["readings_in"] == len(rows)
    assert p.stats["readings_rejected"] == len(rejected)
    assert p.stats["readings_ok"] == len(distinct) + dups
    assert len(p.pending) == 0


# --------------------------------------------------------------------------- (f)


@SETTINGS
@given(st.data(), st.sampled_from([0, 30]))
def test_rows_built_once_equal_rows_built_per_batch(data, grace_s):
    _, batches, cfg = late_arrivals(data, grace_s)
    _, per_batch = run(cfg, batches, all_keys(True))
    p, once = run(cfg, batches, all_keys(True), defer=True)
    assert all(o.kpi is None and o.fleet is None for o in once[:-1])  # nothing built early
    kpi = [frames(outs, "kpi") for outs in (per_batch, once)]
    assert same(*(None if k is None else k.sort("site", "window", "time") for k in kpi))
    assert same(fleet_of(per_batch), fleet_of(once))
    assert same(quality_counts(per_batch), quality_counts(once))
    assert not p._deferred
