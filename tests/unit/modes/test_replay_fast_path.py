"""A time-ordered or nearly ordered Parquet file streams into the core: no spill, same rows.

The reference is the streaming core fed the strictly time-sorted file in file order
(``as_streamed``, grace 0s): nothing is late there, so it does not use the code under test.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from pueflow.connectors.files import grace_bound, iter_file, time_lateness
from pueflow.modes.replay import replay
from pueflow.modes.spill import BYTES_PER_READING
from pueflow.schema.registry import Registry
from tests.conftest import T0
from tests.unit.modes.test_replay_memory import _peak_rss, _series_major
from tests.unit.modes.test_replay_order import _config, _readings, _rows

NS = 10**9


def _same(got, want):
    for m in want:
        assert_frame_equal(got[m], want[m], check_column_order=False)


def test_lateness_of_ordered_nearly_ordered_and_series_major_files(tmp_path):
    t = T0 + 10 * NS * np.arange(1000, dtype=np.int64)
    df = pl.DataFrame({"time": t, "site": "s1", "device": "d", "point": "kw", "value": 1.0})
    df = df.with_columns(pl.col("time").cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"))
    df.write_parquet(tmp_path / "a.parquet")
    assert time_lateness([tmp_path / "a.parquet"]) == 0
    # one reading 70 s late: lateness is how far it trails the latest reading before it
    late = df.with_columns(pl.Series("time", np.r_[t[:500], t[507], t[500:507], t[508:]])
                           .cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"))
    late.write_parquet(tmp_path / "b.parquet")
    assert time_lateness([tmp_path / "b.parquet"], chunk_rows=64) == 70 * NS
    # two files read in order: the second starting before the first ended is lateness too
    assert time_lateness([tmp_path / "a.parquet", tmp_path / "a.parquet"]) == 9990 * NS
    # ... unless it spans more readings than allowed: then None (take the spill path)
    assert time_lateness([tmp_path / "a.parquet", tmp_path / "a.parquet"],
                         max_rows_behind=100) is None
    df.write_csv(tmp_path / "c.csv")
    assert time_lateness([tmp_path / "c.csv"]) is None  # text: would need a full parse


def test_nearly_ordered_file_streams_with_the_same_rows(tmp_path):
    cfg = _config()
    df = _readings(7, 240, 2).sort("time", maintain_order=True)
    df.write_parquet(tmp_path / "sorted.parquet")
    want = _rows(replay(cfg, [tmp_path / "sorted.parquet"], progress=False, write=False,
                        as_streamed=True))
    # move a tenth of the readings up to 40 rows later in the file
    rng = np.random.default_rng(3)
    idx = np.arange(df.height)
    moved = rng.choice(df.height - 50, size=df.height // 10, replace=False)
    key = idx.astype(np.float64)
    key[moved] += rng.uniform(1, 40, len(moved))
    nearly = df[np.argsort(key, kind="stable")]
    nearly.write_parquet(tmp_path / "nearly.parquet")
    assert time_lateness([tmp_path / "nearly.parquet"]) > 0
    # the config's grace is 0s: streamed as is, the delayed readings would be late
    streamed = replay(cfg, [tmp_path / "nearly.parquet"], progress=False, write=False,
                      as_streamed=True)
    assert streamed.quality.filter(pl.col("kind") == "late").height > 0
    for mem in (1024.0, 0.05):  # 0.05 MiB = 2,621 readings: the held-back ones fit
        res = replay(cfg, [tmp_path / "nearly.parquet"], progress=False, write=False,
                     memory_mb=mem, chunk_rows=500)
        assert not res.spilled
        _same(_rows(res), want)


def test_time_ordered_file_larger_than_the_memory_setting_streams_within_it(tmp_path):
    """Doubling a time-ordered file does not grow the replay's peak memory by the readings it
    adds (a replay that held them would grow by BYTES_PER_READING each); the reader's and the
    allocator's fixed overhead cancels in the difference."""
    half, big, ordered_half, ordered = (tmp_path / f"{n}.parquet"
                                        for n in ("half", "big", "ordered-half", "ordered"))
    n_half = _series_major(half, 40, 50_000)
    n = _series_major(big, 40, 100_000)
    for src, dst in ((half, ordered_half), (big, ordered)):
        pl.read_parquet(src).sort("time", maintain_order=True).write_parquet(
            dst, row_group_size=100_000)
    peak_half, _ = _peak_rss(ordered_half, 4.0)
    peak, out = _peak_rss(ordered, 4.0)
    _, spilled = _peak_rss(big, 4.0)
    assert out[:2] == [str(n), "0"]  # every reading, and no spill
    assert spilled[1] == "1"  # the series-major one spills ...
    assert spilled[2] == out[2]  # ... and gives as many kpi rows
    held = (n - n_half) * BYTES_PER_READING  # what holding the added readings would cost
    assert peak - peak_half < held // 2, (
        f"peak grew {(peak - peak_half) / 2**20:.0f} MiB for {(n - n_half):,} more readings "
        f"(holding them: {held / 2**20:.0f} MiB)")


def _nearly(df: pl.DataFrame, seed: int, spread: int) -> pl.DataFrame:
    """``df`` with a tenth of its rows moved up to ``spread`` rows later in the file."""
    rng = np.random.default_rng(seed)
    key = np.arange(df.height, dtype=np.float64)
    moved = rng.choice(df.height - spread, size=df.height // 10, replace=False)
    key[moved] += rng.uniform(1, spread, len(moved))
    return df[np.argsort(key, kind="stable")]


def test_chunk_grace_from_statistics_covers_every_later_reading(tmp_path):
    """The grace given to each chunk is at least how far any later reading (in the chunk or
    after it, across row groups and files) trails one of the chunk's readings: checked by
    brute force over every pair of readings."""
    cfg = _config()
    df = _nearly(_readings(11, 200, 2).sort("time", maintain_order=True), 5, 300)
    df.write_parquet(tmp_path / "a.parquet", row_group_size=700)
    df.tail(900).write_parquet(tmp_path / "b.parquet", row_group_size=400)
    inputs = [tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "a.parquet"]
    bound = grace_bound(inputs, max_rows_behind=10**9)
    assert bound is not None
    reg = Registry(cfg)
    chunks = [c for p in inputs for c in iter_file(p, reg, chunk_rows=256)]
    graces = [bound.grace(c) for c in chunks]
    times = [c.batch.time_ns for c in chunks]
    assert sum(len(t) for t in times) == 2 * df.height + 900
    later_min = np.inf
    for k in range(len(chunks) - 1, -1, -1):
        t = times[k]
        # the most any reading after t[i] (in this chunk or a later one) trails it
        after = np.minimum.accumulate(np.r_[t[1:], later_min][::-1])[::-1]
        need = max(float((t - after).max()), 0.0)
        assert graces[k] >= need, f"chunk {k}: grace {graces[k]} < {need}"
        assert graces[k] <= bound.bound_ns
        later_min = min(later_min, float(t.min()))
    # a nearly ordered file's chunks get far less than the whole file's span
    span = int(df["time"].cast(pl.Int64).max() - df["time"].cast(pl.Int64).min())
    assert max(graces[:3]) < span // 2


def test_statistics_bound_past_the_memory_setting_reads_the_times_instead(tmp_path):
    df = _readings(7, 240, 2).sort("time", maintain_order=True)
    df.write_parquet(tmp_path / "one.parquet", row_group_size=df.height)
    df.write_parquet(tmp_path / "many.parquet", row_group_size=200)
    # one row group: its statistics bound the lateness by the whole span, not 100 readings
    assert grace_bound([tmp_path / "one.parquet"], max_rows_behind=100) is None
    assert grace_bound([tmp_path / "many.parquet"], max_rows_behind=300) is not None
    df.write_csv(tmp_path / "c.csv")
    assert grace_bound([tmp_path / "c.csv"], max_rows_behind=10**9) is None


def test_nearly_ordered_row_groups_stream_with_a_grace_per_chunk_and_the_same_rows(tmp_path):
    cfg = _config()
    df = _readings(13, 300, 3).sort("time", maintain_order=True)
    want = _rows(replay(cfg, [_write(df, tmp_path / "sorted.parquet")], progress=False,
                        write=False, as_streamed=True))
    nearly = _nearly(df, 4, 120)
    # a few readings moved 250 rows on, into later chunks whose own order is perfect: only
    # the earlier chunks' grace keeps them on time
    key = np.arange(df.height, dtype=np.float64)
    key[[100, 480, 900, 1300, 2000]] += 250.5
    sparse = df[np.argsort(key, kind="stable")]
    for name, src, rg, chunk in (("nearly", nearly, 500, 500), ("nearly", nearly, 500, 180),
                                 ("nearly", nearly, 1500, 400), ("sparse", sparse, 500, 500),
                                 ("sparse", sparse, 1000, 250)):
        path = _write(src, tmp_path / f"{name}-{rg}-{chunk}.parquet", rg)
        assert grace_bound([path], max_rows_behind=10**9) is not None
        res = replay(cfg, [path], progress=False, write=False, chunk_rows=chunk)
        assert not res.spilled
        assert res.quality.filter(pl.col("kind") == "late").height == 0
        _same(_rows(res), want)


def test_per_chunk_grace_with_a_time_filter_and_several_files(tmp_path):
    """Row groups skipped by the time filter, and files of a folder read in path order:
    the grace still covers what comes after each chunk."""
    cfg = _config()
    df = _readings(17, 300, 2).sort("time", maintain_order=True)
    t = df["time"].cast(pl.Int64)
    lo, hi = int(t.quantile(0.3)), int(t.quantile(0.8))
    ref = _write(df, tmp_path / "sorted.parquet")
    want = _rows(replay(cfg, [ref], progress=False, write=False, as_streamed=True,
                        time_from_ns=lo, time_to_ns=hi))
    key = np.arange(df.height, dtype=np.float64)
    key[np.arange(40, df.height - 300, 97)] += 280.5  # readings late into later chunks
    nearly = df[np.argsort(key, kind="stable")]
    folder = tmp_path / "parts"
    folder.mkdir()
    half = nearly.height // 2
    _write(nearly[:half + 100], folder / "a.parquet", 400)  # overlaps the next file
    _write(nearly[half + 100:], folder / "b.parquet", 300)
    assert grace_bound([folder], max_rows_behind=10**9) is not None
    res = replay(cfg, [folder], progress=False, write=False, chunk_rows=250,
                 time_from_ns=lo, time_to_ns=hi)
    assert not res.spilled
    assert res.quality.filter(pl.col("kind") == "late").height == 0
    _same(_rows(res), want)


def _write(df: pl.DataFrame, path, row_group_size: int | None = None):
    df.write_parquet(path, row_group_size=row_group_size)
    return path
