"""File sources and writers: round trips, chunking, filtering, structural errors."""

from __future__ import annotations

import gzip
import math
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pueflow.config.load import load_config
from pueflow.connectors.files import _read_ahead, format_of, iter_file, telemetry_files
from pueflow.connectors.telemetry_writer import TelemetryWriter, write_telemetry
from pueflow.exceptions import InputFormatError
from pueflow.schema.batch import Batch
from pueflow.schema.registry import Registry

CONFIG = Path(__file__).resolve().parents[3] / "config" / "tetouan-7.5mw.toml"
T0 = 1_714_564_800 * 10**9  # 2024-05-01T12:00:00Z
FORMATS = ["parquet", "csv", "jsonl", "lp", "csv.gz", "jsonl.gz", "lp.gz"]


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIG)


@pytest.fixture
def reg(cfg):
    return Registry(cfg)


def telemetry(n_t=6, devices=("pdu-1", "pdu-2", "cdu-1"), points=("power_kw", "energy_kwh"),
              step_ns=15 * 10**9):
    rows = [(T0 + k * step_ns, "tetouan-1", d, p, float(100 * k + 10 * i + j) + 0.5)
            for k in range(n_t) for i, d in enumerate(devices) for j, p in enumerate(points)]
    t, s, d, p, v = zip(*rows, strict=True)
    return pl.DataFrame({"time": pl.Series(t).cast(pl.Datetime("ns", "UTC")), "site": s,
                         "device": d, "point": p, "value": v})


def read_all(path, reg, **kw):
    chunks = list(iter_file(path, reg, **kw))
    return Batch.concat([c.batch for c in chunks]), chunks


def as_rows(batch, reg):
    """Readings as sorted tuples; NaN compared by its repr."""
    return sorted((int(t), *reg.keys[s], repr(float(v)))
                  for t, s, v in zip(batch.time_ns, batch.series, batch.value, strict=True))


def df_rows(df):
    return sorted((int(t), s, d, p, repr(float(v))) for t, s, d, p, v in
                  df.with_columns(pl.col("time").dt.epoch("ns")).iter_rows())


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path, reg, fmt):
    df = telemetry()
    path = write_telemetry(df, tmp_path / f"t.{fmt}")
    batch, chunks = read_all(path, reg)
    assert as_rows(batch, reg) == df_rows(df)
    assert chunks[-1].fraction == pytest.approx(1.0)
    assert all(not c.errors for c in chunks)


@pytest.mark.parametrize("fmt", FORMATS)
def test_chunking_gives_the_same_readings(tmp_path, reg, fmt):
    df = telemetry(n_t=9)
    path = write_telemetry(df, tmp_path / f"t.{fmt}")
    small, chunks = read_all(path, reg, chunk_rows=7)
    big, _ = read_all(path, reg, chunk_rows=10**6)
    assert len(chunks) > 1
    assert all(c.rows <= 7 for c in chunks)
    for name in ("time_ns", "series", "value"):
        np.testing.assert_array_equal(getattr(small, name), getattr(big, name))
    fractions = [c.fraction for c in chunks]
    assert fractions == sorted(fractions)
    assert fractions[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_time_filter(tmp_path, reg, fmt):
    df = telemetry(n_t=10)
    path = write_telemetry(df, tmp_path / f"t.{fmt}", **({"row_group_rows": 6} if fmt == "parquet" else {}))
    lo, hi = T0 + 30 * 10**9, T0 + 90 * 10**9
    batch, _ = read_all(path, reg, chunk_rows=5, time_from_ns=lo, time_to_ns=hi)
    want = df.filter((pl.col("time").dt.epoch("ns") >= lo) & (pl.col("time").dt.epoch("ns") < hi))
    assert as_rows(batch, reg) == df_rows(want)
    assert len(batch) == 4 * 6


def test_parquet_row_groups_outside_the_window_are_skipped(tmp_path, reg):
    df = telemetry(n_t=10)
    path = write_telemetry(df, tmp_path / "t.parquet", row_group_rows=6)
    assert pq.ParquetFile(path).metadata.num_row_groups == 10
    chunks = list(iter_file(path, reg, time_from_ns=T0 + 120 * 10**9))
    assert sum(c.rows for c in chunks) == 12  # only the last two groups are read
    assert sum(len(c.batch) for c in chunks) == 12


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_data_errors_flow_through(tmp_path, reg, fmt):
    """NaN, inf, negative, unknown series, duplicates and disorder are the pipeline's to count."""
    t = [T0 + 60 * 10**9, T0, T0, T0, T0 + 10**9, T0 + 2 * 10**9]
    df = pl.DataFrame({
        "time": pl.Series(t).cast(pl.Datetime("ns", "UTC")),
        "site": ["tetouan-1", "tetouan-1", "tetouan-1", "nowhere", "tetouan-1", ""],
        "device": ["pdu-1", "pdu-1", "pdu-1", "x", "pdu-2", "pdu-3"],
        "point": ["power_kw", "power_kw", "power_kw", "y", "power_kw", "power_kw"],
        "value": [float("nan"), -5.0, -5.0, 1.0, float("inf"), 2.0]})
    path = write_telemetry(df, tmp_path / f"t.{fmt}")
    batch, chunks = read_all(path, reg)
    assert as_rows(batch, reg) == df_rows(df)
    assert batch.time_ns[0] > batch.time_ns[1]  # order kept, not sorted
    unknown = [reg.role[s] for s in batch.series if reg.keys[s][0] in ("nowhere", "")]
    assert unknown == [-1, -1]
    assert not any(c.errors for c in chunks)


def test_writer_in_chunks_equals_one_write(tmp_path, reg):
    df = telemetry(n_t=20)
    one = write_telemetry(df, tmp_path / "one.parquet")
    with TelemetryWriter(tmp_path / "many.parquet", row_group_rows=50) as w:
        for part in df.iter_slices(17):
            w.write(part)
    meta = pq.ParquetFile(tmp_path / "many.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [50, 50, 20]
    col = meta.row_group(0).column(2)
    assert "dict" in str(col.encodings).lower()
    assert col.compression == "ZSTD"
    a, _ = read_all(one, reg)
    b, _ = read_all(tmp_path / "many.parquet", reg)
    assert as_rows(a, reg) == as_rows(b, reg)
    for fmt in ("csv", "jsonl", "lp"):
        with TelemetryWriter(tmp_path / f"many.{fmt}") as w:
            for part in df.iter_slices(17):
                w.write(part)
        c, _ = read_all(tmp_path / f"many.{fmt}", reg)
        assert as_rows(c, reg) == as_rows(a, reg), fmt


def test_directory_with_hive_partitions(tmp_path, reg):
    df = telemetry(n_t=4)
    for day, part in enumerate(df.iter_slices(12)):
        folder = tmp_path / "site=tetouan-1" / f"date=2024-05-0{day + 1}"
        folder.mkdir(parents=True)
        pq.write_table(part.drop("site").to_arrow(), folder / "part-0.parquet")  # site from path
    (tmp_path / "site=tetouan-1" / "_SUCCESS").write_text("")
    (tmp_path / "site=tetouan-1" / ".part.tmp.parquet").write_text("junk")
    files = telemetry_files(tmp_path)
    assert [f.parent.name for f in files] == ["date=2024-05-01", "date=2024-05-02"]
    batch, chunks = read_all(tmp_path, reg, chunk_rows=5)
    assert as_rows(batch, reg) == df_rows(df)
    assert {c.path for c in chunks} == {str(f) for f in files}
    assert chunks[-1].fraction == pytest.approx(1.0)


def test_date_partitions_outside_the_window_are_not_opened(tmp_path, reg):
    df = telemetry(n_t=2)
    for day in ("2024-04-20", "2024-05-01"):
        folder = tmp_path / f"date={day}"
        folder.mkdir()
        write_telemetry(df, folder / "part-0.parquet")
    (tmp_path / "date=2024-04-20" / "part-0.parquet").write_bytes(b"corrupt: never read")
    batch, chunks = read_all(tmp_path, reg, time_from_ns=T0 - 10**9)
    assert {Path(c.path).parent.name for c in chunks} == {"date=2024-05-01"}
    assert len(batch) == df.height


def test_polars_default_microseconds_and_other_time_zones(tmp_path, reg):
    df = telemetry(n_t=2).with_columns(
        pl.col("time").cast(pl.Datetime("us", "UTC")).dt.convert_time_zone("Africa/Casablanca"))
    df.write_parquet(tmp_path / "t.parquet")
    df.write_csv(tmp_path / "t.csv")
    for name in ("t.parquet", "t.csv"):
        batch, _ = read_all(tmp_path / name, reg)
        assert as_rows(batch, reg) == df_rows(telemetry(n_t=2)), name


def test_integer_time_column_uses_timestamp_unit(tmp_path, reg):
    df = telemetry(n_t=2).with_columns(pl.col("time").dt.epoch("ms"))
    pq.write_table(df.to_arrow(), tmp_path / "t.parquet")
    batch, _ = read_all(tmp_path / "t.parquet", reg, timestamp_unit="ms")
    assert batch.time_ns[0] == T0


def test_text_formats_report_bad_lines_by_number(tmp_path, reg):
    good = b'{"name":"m","tags":{"site":"tetouan-1","device":"pdu-1"},"fields":{"power_kw":1},"timestamp":%d}\n'
    (tmp_path / "t.jsonl").write_bytes(good % 1 + b"\n{oops\n" + good % 2 + b'{"tags":{}}\n')
    batch, chunks = read_all(tmp_path / "t.jsonl", reg, chunk_rows=2)
    assert batch.time_ns.tolist() == [1, 2]
    errs = [e for c in chunks for e in c.errors]
    assert [e[0] for e in errs] == [3, 5]
    assert "invalid JSON" in errs[0][1]
    lp = b"m,site=tetouan-1 f=1 1\n# comment\nm,site=tetouan-1 f=x 2\n\nm,site=tetouan-1 f=3\n"
    with gzip.open(tmp_path / "t.lp.gz", "wb") as fh:
        fh.write(lp)
    batch, chunks = read_all(tmp_path / "t.lp.gz", reg, chunk_rows=2)
    errs = [e for c in chunks for e in c.errors]
    assert batch.value.tolist() == [1.0]
    assert [e[0] for e in errs] == [3, 5]
    assert "no timestamp" in errs[1][1]


# --------------------------------------------------------------------------- structural errors


def test_missing_column_suggests_the_closest_name(tmp_path, reg):
    df = telemetry(n_t=1).rename({"time": "timestamp"})
    pq.write_table(df.to_arrow(), tmp_path / "t.parquet")
    df.write_csv(tmp_path / "t.csv")
    for name in ("t.parquet", "t.csv"):
        with pytest.raises(InputFormatError) as ei:
            list(iter_file(tmp_path / name, reg))
        msg = str(ei.value)
        assert name in msg
        assert "column 'time' not found" in msg
        assert "did you mean 'timestamp'" in msg
        assert "expected columns time, site" in msg
        assert ei.value.column == "time"


def test_value_of_strings_is_rejected(tmp_path, reg):
    df = telemetry(n_t=1).with_columns(pl.col("value").cast(pl.String))
    pq.write_table(df.to_arrow(), tmp_path / "t.parquet")
    with pytest.raises(InputFormatError, match=r"t\.parquet, column 'value'.*must be numbers"):
        list(iter_file(tmp_path / "t.parquet", reg))
    text = "time,site,device,point,value\n" + "2024-05-01T12:00:00Z,tetouan-1,pdu-1,power_kw,1\n" * 3
    text += "2024-05-01T12:00:01Z,tetouan-1,pdu-1,power_kw,high\n"
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(InputFormatError) as ei:
        list(iter_file(tmp_path / "t.csv", reg, chunk_rows=2))
    assert (ei.value.row, ei.value.column) == (4, "value")
    assert "t.csv, row 4, column 'value'" in str(ei.value)
    assert "'high'" in str(ei.value)


def test_naive_timestamps_are_rejected(tmp_path, reg):
    df = telemetry(n_t=1).with_columns(pl.col("time").dt.replace_time_zone(None))
    pq.write_table(df.to_arrow(), tmp_path / "t.parquet")
    with pytest.raises(InputFormatError, match=r"t\.parquet, column 'time'.*without a time zone.*UTC"):
        list(iter_file(tmp_path / "t.parquet", reg))
    text = ("time,site,device,point,value\n2024-05-01T12:00:00Z,tetouan-1,pdu-1,power_kw,1\n"
            "2024-05-01 12:00:01,tetouan-1,pdu-1,power_kw,2\n")
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(InputFormatError) as ei:
        list(iter_file(tmp_path / "t.csv", reg))
    msg = str(ei.value)
    assert "t.csv, row 2, column 'time'" in msg
    assert "no time zone" in msg
    assert "line 3" in msg


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
def test_unparseable_time_names_the_row(tmp_path, reg, name):
    rows = "".join(f"2024-05-01T12:00:{s:02d}Z,tetouan-1,pdu-1,power_kw,{s}\n" for s in range(30))
    text = ("time,site,device,point,value\n" + rows + "yesterday,tetouan-1,pdu-1,power_kw,1\n").encode()
    (tmp_path / name).write_bytes(gzip.compress(text) if name.endswith(".gz") else text)
    chunks = iter_file(tmp_path / name, reg, chunk_rows=8)
    with pytest.raises(InputFormatError) as ei:
        list(chunks)
    assert (ei.value.row, ei.value.column) == (31, "time")
    assert f"{name}, row 31, column 'time'" in str(ei.value)
    assert "'yesterday'" in str(ei.value)
    # null time in Parquet
    t = pa.array([T0, None], pa.timestamp("ns", "UTC"))
    tbl = pa.table({"time": t, "site": ["tetouan-1"] * 2, "device": ["pdu-1"] * 2,
                    "point": ["power_kw"] * 2, "value": [1.0, 2.0]})
    pq.write_table(tbl, tmp_path / "n.parquet")
    with pytest.raises(InputFormatError, match=r"n\.parquet, row 2, column 'time': time is empty"):
        list(iter_file(tmp_path / "n.parquet", reg))


def test_null_keys_and_short_rows_are_row_errors(tmp_path, reg):
    tbl = pa.table({"time": pa.array([T0, T0, T0], pa.timestamp("ns", "UTC")),
                    "site": ["tetouan-1", None, "tetouan-1"], "device": ["pdu-1", "pdu-1", "pdu-2"],
                    "point": ["power_kw"] * 3, "value": [1.0, None, 3.0]})
    pq.write_table(tbl, tmp_path / "t.parquet")
    batch, chunks = read_all(tmp_path / "t.parquet", reg)
    assert batch.value.tolist() == [1.0, 3.0]
    assert chunks[0].errors == [(2, "site is empty (null); row skipped")]
    text = ("time,site,device,point,value\n2024-05-01T12:00:00Z,tetouan-1,pdu-1,power_kw,1\n"
            "2024-05-01T12:00:00Z,tetouan-1,pdu-1\n2024-05-01T12:00:01Z,tetouan-1,pdu-1,power_kw,\n")
    (tmp_path / "t.csv").write_text(text)
    batch, chunks = read_all(tmp_path / "t.csv", reg)
    assert batch.value[0] == 1.0
    assert math.isnan(batch.value[1])
    errs = [e for c in chunks for e in c.errors]
    assert len(errs) == 1
    assert errs[0][0] == 2
    assert "expected 5 fields, got 3" in errs[0][1]


def test_csv_columns_in_any_order_and_a_file_of_bad_rows(tmp_path, reg):
    text = "value,extra,time,site,device,point\n1,x,2024-05-01T12:00:00Z,tetouan-1,pdu-1,power_kw\n"
    (tmp_path / "t.csv").write_text(text)
    batch, _ = read_all(tmp_path / "t.csv", reg)
    assert batch.time_ns.tolist() == [T0]
    assert batch.value.tolist() == [1.0]
    (tmp_path / "t.csv").write_text(text + "zz,x,2024-05-01T12:00:00Z,tetouan-1,pdu-1,power_kw\n")
    with pytest.raises(InputFormatError) as ei:
        list(iter_file(tmp_path / "t.csv", reg))
    assert (ei.value.row, ei.value.column) == (2, "value")
    (tmp_path / "b.csv").write_text("time,site,device,point,value\n1,2\n3\n")
    _, chunks = read_all(tmp_path / "b.csv", reg)
    assert [e[0] for c in chunks for e in c.errors] == [1, 2]


def test_wrong_key_type_and_unknown_extension(tmp_path, reg):
    df = telemetry(n_t=1).with_columns(pl.lit(7).alias("device"))
    pq.write_table(df.to_arrow(), tmp_path / "t.parquet")
    with pytest.raises(InputFormatError, match="device column has type int"):
        list(iter_file(tmp_path / "t.parquet", reg))
    with pytest.raises(InputFormatError, match="unknown telemetry file type"):
        format_of(tmp_path / "t.xlsx")
    with pytest.raises(InputFormatError, match="no such file"):
        list(iter_file(tmp_path / "missing.parquet", reg))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFormatError, match="holds no"):
        list(iter_file(tmp_path / "empty", reg))


def test_writer_rejects_naive_time(tmp_path):
    df = pl.DataFrame({"time": [datetime(2024, 5, 1, tzinfo=UTC).replace(tzinfo=None)], "site": ["s"],
                       "device": ["d"], "point": ["p"], "value": [1.0]})
    with pytest.raises(InputFormatError, match="Datetime"):
        write_telemetry(df, tmp_path / "t.parquet")


def test_read_ahead_keeps_order_raises_in_order_and_stops_when_closed():
    def failing():
        yield 1
        yield 2
        raise ValueError("boom")

    it = _read_ahead(failing())
    assert [next(it), next(it)] == [1, 2]
    with pytest.raises(ValueError, match="boom"):
        next(it)
    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    it = _read_ahead(endless())
    assert next(it) == 0
    it.close()
    n = len(produced)
    time.sleep(0.1)
    assert len(produced) == n <= 3
    assert not any(t.name == "pueflow-read-ahead" for t in threading.enumerate())



@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 100])
def test_lp_record_with_a_raw_newline_across_chunks_reads_as_one(tmp_path, reg, chunk_rows):
    """Telegraf writes newlines in string fields raw: wherever the file is cut into chunks,
    the record keeps its numeric fields and the line numbers of later errors stay right."""
    t = 1_782_864_000 * 10**9
    text = (f"m,site=tetouan-1,device=pdu-1 power_kw=1 {t}\n"
            f'm,site=tetouan-1,device=pdu-1 note="one\ntwo\nthree",power_kw=2 {t + 10**10}\n'
            f"m,site=tetouan-1,device=pdu-1 power_kw=3 {t + 2 * 10**10}\n"
            f"m,site=tetouan-1,device=pdu-1 power_kw=oops {t + 3 * 10**10}\n"
            f"m,site=tetouan-1,device=pdu-1 power_kw=5 {t + 4 * 10**10}\n")
    path = tmp_path / "t.lp"
    path.write_text(text)
    chunks = list(iter_file(path, reg, chunk_rows=chunk_rows))
    values = [v for c in chunks for v in c.batch.value.tolist()]
    errors = [(r, why) for c in chunks for r, why in c.errors]
    assert values == [1.0, 2.0, 3.0, 5.0]
    assert [r for r, why in errors if "string" not in why] == [6]  # the file's 6th line
