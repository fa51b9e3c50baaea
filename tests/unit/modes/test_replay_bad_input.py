"""Bad input to replay: a clear error naming the file (row, column), or a quality row.

Corrupt and truncated Parquet, a CSV with a bad timestamp, a folder of files with different
schemas, a spill folder that cannot be written, a re-run after an interrupted replay, and
rows refused at decoding (which reach the store: under their site, else ``_unknown``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from pueflow.connectors.parquet_store import read_store
from pueflow.exceptions import InputFormatError
from pueflow.modes.replay import UNKNOWN_SITE, replay
from pueflow.modes.spill import SpillError
from tests.unit.modes.test_replay_order import _config, _readings

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def readings() -> pl.DataFrame:
    return _readings(11, 180, 2).sort("time", maintain_order=True)


def _store(path: Path) -> dict[str, pl.DataFrame]:
    out = {}
    for m in ("kpi", "quality", "fleet"):
        df = read_store(path, m)
        out[m] = df.sort(sorted(df.columns), nulls_last=True).select(sorted(df.columns))
    return out


def test_corrupt_parquet_names_the_file_and_row_group(tmp_path, readings):
    path = tmp_path / "hall.parquet"
    readings.write_parquet(path, row_group_size=200, compression="zstd")
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 400] = b"\x55" * 400  # a data page in the middle, footer intact
    path.write_bytes(bytes(data))
    with pytest.raises(InputFormatError, match=r"hall\.parquet, row \d+: row group \d+ "
                                               r"\(rows \d+\.\.\d+\) cannot be decoded"):
        replay(_config(), [path], progress=False, write=False)


def test_truncated_parquet_names_the_file(tmp_path, readings):
    path = tmp_path / "cut.parquet"
    readings.write_parquet(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputFormatError, match=r"cut\.parquet: not a readable Parquet file"):
        replay(_config(), [path], progress=False, write=False)


def test_csv_with_a_bad_timestamp_names_row_and_column(tmp_path, readings):
    path = tmp_path / "h.csv"
    readings.head(50).write_csv(path)
    lines = path.read_text().splitlines()
    lines[31] = "2024-13-45T99:00:00Z" + lines[31][lines[31].index(","):]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFormatError, match=r"h\.csv, row 31, column 'time': cannot parse "
                                               r"time '2024-13-45T99:00:00Z' \(line 32\)"):
        replay(_config(), [path], progress=False, write=False)


def test_folder_of_files_with_different_schemas(tmp_path, readings):
    """Compatible schemas replay together; an incompatible file is named, not the folder."""
    folder = tmp_path / "in"
    folder.mkdir()
    a, b = readings.head(readings.height // 2), readings.tail(readings.height - readings.height // 2)
    a.write_parquet(folder / "a.parquet")
    # integer epoch time in ns, float32 values, an extra column, columns in another order
    b.select(pl.col("time").dt.epoch("ns"), "value", "point", "device", "site",
             extra=pl.lit("x")).with_columns(pl.col("value").cast(pl.Float32)).write_parquet(
        folder / "b.parquet")
    got = replay(_config(), [folder], progress=False, write=False)
    assert got.readings == readings.height
    b.rename({"value": "reading"}).write_parquet(folder / "c.parquet")
    with pytest.raises(InputFormatError, match=r"c\.parquet, column 'value': column 'value' "
                                               r"not found; did you mean 'reading'"):
        replay(_config(), [folder], progress=False, write=False)


def test_spill_folder_that_cannot_be_created_is_named(tmp_path, readings):
    path = tmp_path / "shuffled.parquet"
    readings.sample(fraction=1.0, shuffle=True, seed=1).write_parquet(path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(SpillError, match="cannot create the replay spill folder in .*not-a-folder"):
        replay(_config(), [path], progress=False, write=False, memory_mb=0.004,
               spill_dir=blocker)


CHILD = """
import resource, signal, sys
from pueflow.modes.replay import replay
from pueflow.modes.spill import SpillError
from tests.unit.modes.test_replay_order import _config
cfg = _config()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    replay(cfg, [sys.argv[1]], progress=False, write=False, memory_mb=0.004, spill_dir=sys.argv[2])
except SpillError as exc:
    print("SpillError:", exc)
"""


def test_spill_folder_that_fills_up_is_a_clear_error(tmp_path, readings):
    """A real OS limit (RLIMIT_FSIZE, as a full disk) stops the spill's writes."""
    path = tmp_path / "shuffled.parquet"
    readings.sample(fraction=1.0, shuffle=True, seed=2).write_parquet(path)
    spill = tmp_path / "spill"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(spill)], env=env,
                         capture_output=True, text=True, check=False, cwd=ROOT)
    assert "SpillError: replay spill: cannot write " in out.stdout, out.stdout + out.stderr
    assert str(spill) in out.stdout
    assert "pass --spill-dir, or raise --memory-mb" in out.stdout


def _with_corrupt_values(df: pl.DataFrame, path: Path) -> None:
    """``df`` as Parquet whose value pages are damaged (time intact: the order check passes)."""
    pq.write_table(df.to_arrow(), path, compression={c: "none" if c == "time" else "zstd"
                                                     for c in df.columns})
    md = pq.ParquetFile(path).metadata.row_group(0)
    col = md.column(df.columns.index("value"))
    data = bytearray(path.read_bytes())
    start = col.data_page_offset + 40
    data[start:start + 200] = b"\x55" * 200
    path.write_bytes(bytes(data))


def test_rerun_after_an_interrupted_replay_gives_the_same_store(tmp_path, readings):
    """A replay stopped by a corrupt second file, re-run once the file is fixed, leaves the
    store an uninterrupted replay leaves."""
    folder = tmp_path / "in"
    folder.mkdir()
    half = readings.height // 2
    readings.head(half).write_parquet(folder / "a.parquet")
    good_b = readings.tail(readings.height - half)
    _with_corrupt_values(good_b, folder / "b.parquet")
    once, twice = tmp_path / "once", tmp_path / "twice"
    with pytest.raises(InputFormatError, match=r"b\.parquet"):
        replay(_config(), [folder], progress=False, out_dir=twice)
    assert read_store(twice, "kpi").height  # the interrupted run did write rows
    good_b.write_parquet(folder / "b.parquet")
    replay(_config(), [folder], progress=False, out_dir=twice)
    replay(_config(), [folder], progress=False, out_dir=once)
    got, want = _store(twice), _store(once)
    for m in want:
        assert want[m].height
        assert_frame_equal(got[m], want[m])


def test_rows_refused_at_decoding_reach_the_store(tmp_path, readings):
    path = tmp_path / "h.parquet"
    df = readings.with_row_index("i")
    df = df.with_columns(
        device=pl.when(pl.col("i") == 5).then(None).otherwise(pl.col("device")),  # site known
        site=pl.when(pl.col("i") == 9).then(None).otherwise(pl.col("site")),  # site unknown
    ).with_columns(site=pl.when(pl.col("i") == 12).then(pl.lit("atlantis"))
                   .otherwise(pl.col("site"))).drop("i")
    df.write_parquet(path)
    site5 = df["site"][5]
    out = tmp_path / "store"
    res = replay(_config(), [path], progress=False, out_dir=out)
    bad = res.quality.filter(pl.col("kind") == "decode_error").sort("point")
    assert bad.select("site", "point").rows() == [(UNKNOWN_SITE, "row 10"), (site5, "row 6")]
    assert bad["device"].to_list() == [str(path)] * 2
    assert "device is empty" in bad["detail"][1]
    assert "site is empty" in bad["detail"][0]
    stored = read_store(out, "quality").filter(pl.col("kind") == "decode_error").sort("point")
    assert stored.select("site", "point").rows() == bad.select("site", "point").rows()
    # a row of a site the config does not know is an unknown series, not a decode error
    assert res.quality.filter(pl.col("kind") == "unknown_series")["site"].to_list() == ["atlantis"]
    # ... which no sink keeps (its site is in no jurisdiction); the count says what was kept
    n_stored = read_store(out, "quality").height
    assert res.sink_rows["local"]["quality"] == n_stored == res.quality.height - 1
