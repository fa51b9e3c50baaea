"""The hive-partitioned Parquet store: layout, idempotency, restarts, the Sink contract."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pueflow.config.load import load_config
from pueflow.connectors.parquet_store import ParquetStore, read_store, store_files
from pueflow.connectors.sink import Sink, build_sinks
from pueflow.exceptions import SinkError
from pueflow.schema.rows import TIME_DTYPE, identity_columns

CONFIG = Path(__file__).resolve().parents[3] / "config" / "tetouan-7.5mw.toml"
T0 = 1_714_600_800 * 10**9  # 2024-05-01T22:00:00Z: two hours span two UTC dates


def kpi(n=4, pue=1.3, site="tetouan-1", window="1h", run="", step_ns=3600 * 10**9):
    return pl.DataFrame({
        "time": pl.Series([T0 + i * step_ns for i in range(n)]).cast(TIME_DTYPE),
        "site": [site] * n, "window": [window] * n, "category": ["2"] * n, "run": [run] * n,
        "facility_kwh": [1300.0 + i for i in range(n)], "it_kwh": [1000.0] * n,
        "pue": [pue] * n})


def test_layout_is_readable_with_scan_parquet(tmp_path):
    store = ParquetStore(tmp_path, name="local")
    store.write("kpi", kpi())
    store.write("kpi", kpi(site="madrid-1"))
    store.flush()
    dirs = sorted(str(f.parent.relative_to(tmp_path)) for f in store_files(tmp_path, "kpi"))
    assert dirs == ["measurement=kpi/site=madrid-1/date=2024-05-01",
                    "measurement=kpi/site=madrid-1/date=2024-05-02",
                    "measurement=kpi/site=tetouan-1/date=2024-05-01",
                    "measurement=kpi/site=tetouan-1/date=2024-05-02"]
    df = pl.scan_parquet(f"{tmp_path}/measurement=kpi/**/*.parquet", hive_partitioning=True).collect()
    assert df.height == 8
    assert {"measurement", "date", "site", "pue"} <= set(df.columns)
    assert df.schema["time"] == TIME_DTYPE
    assert sorted(df["date"].cast(pl.String).unique().to_list()) == ["2024-05-01", "2024-05-02"]


def test_writing_twice_keeps_one_row_and_the_later_wins(tmp_path):
    store = ParquetStore(tmp_path)
    store.write("kpi", kpi(pue=1.3))
    store.write("kpi", kpi(pue=1.4))  # same identity in the same flush
    store.flush()
    store.write("kpi", kpi(pue=1.5).head(2))  # again in a later flush
    store.flush()
    out = read_store(tmp_path, "kpi")
    assert out.height == 4
    assert out["pue"].to_list() == [1.5, 1.5, 1.4, 1.4]
    assert out.select(identity_columns("kpi")).is_duplicated().sum() == 0


def test_restart_is_a_new_instance_on_the_same_folder(tmp_path):
    first = ParquetStore(tmp_path)
    first.write("kpi", kpi(n=3, pue=1.2))
    first.close()
    second = ParquetStore(tmp_path)  # a restart / a second replay of an overlapping window
    second.write("kpi", kpi(n=4, pue=1.25))
    second.flush()
    out = read_store(tmp_path, "kpi")
    assert out.height == 4
    assert set(out["pue"].to_list()) == {1.25}


def test_run_tag_and_windows_keep_rows_apart(tmp_path):
    store = ParquetStore(tmp_path)
    store.write("kpi", kpi(run=""))
    store.write("kpi", kpi(run="replay-7", pue=9.0))
    store.write("kpi", kpi(window="15m"))
    store.flush()
    assert read_store(tmp_path, "kpi").height == 12
    prod = read_store(tmp_path, "kpi", run="", window="1h")
    assert prod.height == 4
    assert set(prod["pue"].to_list()) == {1.3}
    assert read_store(tmp_path, "kpi", site=["tetouan-1"], run="replay-7")["pue"].to_list() == [9.0] * 4
    assert read_store(tmp_path, "kpi", site="elsewhere").height == 0


def test_fleet_rows_partition_by_scope_and_schemas_may_grow(tmp_path):
    store = ParquetStore(tmp_path)
    fleet = pl.DataFrame({"time": pl.Series([T0]).cast(TIME_DTYPE), "scope": ["fleet"],
                          "window": ["1d"], "pue": [1.2]})  # no run column: taken as ""
    store.write("fleet", fleet)
    store.flush()
    store.write("fleet", fleet.with_columns(pl.lit(5.0).alias("it_kwh"), pl.lit(None).alias("erf")))
    store.flush()
    (f,) = store_files(tmp_path, "fleet")
    assert f.parent.parent.name == "scope=fleet"
    out = read_store(tmp_path, "fleet")
    assert out.height == 1
    assert out["run"].to_list() == [""]
    assert out["it_kwh"].to_list() == [5.0]
    assert out.schema["erf"] == pl.Float64


def test_unflushed_rows_are_not_visible_and_empty_flush_is_a_no_op(tmp_path):
    store = ParquetStore(tmp_path / "out")
    store.flush()
    store.write("quality", pl.DataFrame({
        "time": pl.Series([T0]).cast(TIME_DTYPE), "site": ["tetouan-1"], "kind": ["reset"],
        "device": ["incomer-1"], "point": ["energy_kwh"], "run": [""], "value": [20.0]}))
    assert read_store(tmp_path / "out", "quality").height == 0
    store.flush()
    assert read_store(tmp_path / "out", "quality")["kind"].to_list() == ["reset"]
    assert read_store(tmp_path / "out", "setpoint").columns == ["time", "site", "asset", "run"]


def test_errors(tmp_path):
    store = ParquetStore(tmp_path)
    with pytest.raises(ValueError, match="unknown measurement"):
        store.write("nope", kpi())
    with pytest.raises(SinkError, match="no 'time' column"):
        store.write("kpi", kpi().drop("time"))
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    bad = ParquetStore(blocked)
    bad.write("kpi", kpi())
    with pytest.raises(SinkError, match="cannot write kpi"):
        bad.flush()
    assert bad._buf  # rows kept for the retry


def test_sink_protocol_and_build_sinks(tmp_path):
    cfg = load_config(CONFIG).model_copy(deep=True)
    cfg.sinks[0].path = str(tmp_path / "local")
    sinks = build_sinks(cfg, run="r1")
    assert len(sinks) == 1
    assert isinstance(sinks[0], ParquetStore)
    assert isinstance(sinks[0], Sink)
    assert sinks[0].name == "local"
    assert sinks[0].path == tmp_path / "local"


def test_build_sinks_constructs_every_type_without_connecting(tmp_path):
    cfg = load_config(CONFIG).model_copy(deep=True)
    cfg.sinks[0].path = str(tmp_path / "local")
    spec = cfg.sinks[0]
    cfg.sinks += [spec.model_copy(update={"name": "ts", "type": "influx", "url": "http://127.0.0.1:9",
                                          "bucket": "b"}),
                  spec.model_copy(update={"name": "bus", "type": "kafka", "topic": "out"})]
    sinks = build_sinks(cfg, run="r1")
    assert [s.name for s in sinks] == ["local", "ts", "bus"]
    assert all(isinstance(s, Sink) for s in sinks)

