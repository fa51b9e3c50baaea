"""Replay puts a file's readings in event-time order itself: row order does not matter.

The reference is the streaming core fed the time-major file in file order (``as_streamed``,
grace 0s): with time-ordered input nothing is late, so that path is trusted and does not
use the reordering code under test.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pueflow.modes.replay import replay
from tests.conftest import T0, build_config, examples

NS = 10**9
SITES = (("s1", "Europe/Madrid"), ("s2", "Africa/Casablanca"))
REG_MAX = 500.0  # small register so rollovers happen within a few hours


def _config(windows=("15m", "1h", "1d")):
    meters = [
        {"device": "fac-*", "point": "kwh", "kind": "register", "role": "facility",
         "register_max": REG_MAX},
        {"device": "pdu-*", "point": "kw", "kind": "power", "role": "it", "max_gap": "180s"},
    ]
    sites = [{"id": s, "jurisdiction": "MA", "timezone": tz, "latitude": 35.0,
              "longitude": -5.0, "it_capacity_kw": 5000.0, "meters": meters}
             for s, tz in SITES]
    return build_config([], windows=windows, grace="0s", sites=sites)


def _readings(seed: int, minutes: int, n_pdu: int) -> pl.DataFrame:
    """Registers (with rollovers) and power (with gaps) on two sites, one row per reading."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"time": [], "site": [], "device": [], "point": [], "value": []}

    def add(t, site, device, point, v):
        rows["time"] += list(t)
        rows["site"] += [site] * len(t)
        rows["device"] += [device] * len(t)
        rows["point"] += [point] * len(t)
        rows["value"] += list(v)

    start = T0 + int(rng.integers(0, 3600)) * NS
    for site, _ in SITES:
        t = start + 60 * NS * np.arange(minutes)
        keep = rng.random(minutes) > 0.1  # a few missing register reads
        kwh = (rng.uniform(0, REG_MAX) + np.cumsum(rng.uniform(0, 40, minutes))) % REG_MAX
        add(t[keep], site, "fac-1", "kwh", kwh[keep])
        for d in range(n_pdu):
            t = start + 30 * NS * np.arange(2 * minutes)
            gap = int(rng.integers(0, 2 * minutes))
            keep = (np.arange(2 * minutes) < gap) | (np.arange(2 * minutes) >= gap + 12)
            add(t[keep], site, f"pdu-{d}", "kw", rng.uniform(50, 400, 2 * minutes)[keep])
    df = pl.DataFrame(rows).with_columns(
        pl.col("time").cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"))
    dup = df.sample(n=3, seed=seed)  # exact duplicate rows: dedup must not depend on order
    return pl.concat([df, dup])


def _rows(res) -> dict[str, pl.DataFrame]:
    out = {}
    for m in ("kpi", "quality", "fleet"):
        df = getattr(res, m)
        out[m] = df.sort(df.columns, nulls_last=True) if df.height else df
    return out


def _same(got, want, label):
    for m in want:
        assert_frame_equal(got[m], want[m], check_column_order=False), f"{label}: {m} differs"


@settings(max_examples=examples(6), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), minutes=st.integers(90, 300), n_pdu=st.integers(1, 3),
       n_files=st.integers(2, 4))
def test_any_row_order_gives_identical_rows(tmp_path_factory, seed, minutes, n_pdu, n_files):
    cfg = _config()
    df = _readings(seed, minutes, n_pdu)
    d = tmp_path_factory.mktemp("order")
    files = {
        "time-major": df.sort("time", maintain_order=True),
        "series-major": df.sort("site", "device", "point", "time", maintain_order=True),
        "shuffled": df.sample(fraction=1.0, shuffle=True, seed=seed + 1),
    }
    for name, f in files.items():
        f.write_parquet(d / f"{name}.parquet")
    # the same rows split into overlapping files (each spans the whole period), one folder
    part = np.random.default_rng(seed).integers(0, n_files, df.height)
    split = d / "split"
    split.mkdir()
    for k in range(n_files):
        df.filter(pl.Series(part == k)).sort("device", "time").write_parquet(split / f"{k}.parquet")

    want = _rows(replay(cfg, [d / "time-major.parquet"], progress=False, write=False,
                        as_streamed=True))
    assert want["kpi"].height
    assert not want["quality"].filter(pl.col("kind") == "late").height
    assert want["quality"].filter(pl.col("kind") == "rollover").height  # registers rolled
    for name in files:
        for mem in (1024.0, 0.004):  # in memory, and spilled (0.004 MiB = 209 readings)
            res = replay(cfg, [d / f"{name}.parquet"], progress=False, write=False,
                         memory_mb=mem, chunk_rows=500)
            # a time-ordered file streams straight into the core, whatever the budget
            assert res.spilled == (mem < 1 and name != "time-major")
            _same(_rows(res), want, f"{name} {mem} MiB")
    res = replay(cfg, [split], progress=False, write=False, memory_mb=0.004, chunk_rows=500)
    _same(_rows(res), want, "split files")
    # as streamed, a series-major file makes every meter after the first late (grace 0s)
    late = replay(cfg, [d / "series-major.parquet"], progress=False, write=False,
                  as_streamed=True)
    assert late.quality.filter(pl.col("kind") == "late").height > 0
