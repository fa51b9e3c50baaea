"""Replay on a real Dask cluster (worker processes on 127.0.0.1) equals one process exactly.

Input: two simulated days of the 4-country fleet at 60 s steps around a clock change
(Casablanca's return from Ramadan time on 2026-03-22; Madrid's DST end on 2026-10-25), with
meters silenced across a site's local midnight (a slice cut): a register for 3 h 20 min
(longer than its 15 min ``max_gap`` and than the warm-up, so its state comes from the
look-back) and a power meter for 10 min. The reference is ``replay()`` in this process.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from distributed import Client, LocalCluster

from pueflow.config.load import load_config
from pueflow.connectors.parquet_store import read_store
from pueflow.modes.distributed import DaskError, replay_dask
from pueflow.modes.replay import replay
from pueflow.modes.slices import SliceDataError
from pueflow.sim import simulate_to_file
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / "config" / "fleet-4-countries.toml"
#: (first UTC day, site whose zone changes its clock then, that local midnight)
RUNS = {
    "ramadan": (datetime(2026, 3, 21, tzinfo=UTC), "tetouan-1", "Africa/Casablanca", (2026, 3, 22)),
    "dst": (datetime(2026, 10, 24, tzinfo=UTC), "aragon-1", "Europe/Madrid", (2026, 10, 25)),
}
MEASUREMENTS = ("kpi", "quality", "fleet")


def _silence(df: pl.DataFrame, site: str, device: str, point: str, a: datetime,
             z: datetime) -> pl.DataFrame:
    gone = ((pl.col("site").cast(pl.String) == site) & (pl.col("device").cast(pl.String) == device)
            & (pl.col("point").cast(pl.String) == point) & (pl.col("time") >= a)
            & (pl.col("time") < z))
    return df.filter(~gone)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, tuple[Path, datetime]]:
    cfg = load_config(CFG)
    out = {}
    for name, (start, site, zone, day) in RUNS.items():
        d = tmp_path_factory.mktemp(name)
        raw = d / "raw.parquet"
        simulate_to_file(cfg, start, 2.0, raw, fmt="parquet", step_s=60, progress=False)
        cut = datetime(*day, tzinfo=ZoneInfo(zone)).astimezone(UTC)
        df = pl.read_parquet(raw)
        df = _silence(df, site, "incomer-1", "energy_kwh", cut - timedelta(hours=3),
                      cut + timedelta(minutes=20))
        df = _silence(df, site, "pdu-01", "power_kw", cut - timedelta(minutes=5),
                      cut + timedelta(minutes=5))
        # a whole site silent across its midnight cut, longer than the warm-up, and one that
        # stops 6 h before the others
        dakar = datetime(*day, tzinfo=ZoneInfo("Africa/Dakar")).astimezone(UTC)
        gone = ((pl.col("site").cast(pl.String) == "dakar-1")
                & (pl.col("time") >= dakar - timedelta(hours=2))
                & (pl.col("time") < dakar + timedelta(hours=1)))
        early = ((pl.col("site").cast(pl.String) == "abilene-1")
                 & (pl.col("time") >= start + timedelta(hours=42)))
        df = df.filter(~gone & ~early)
        path = d / "telemetry.parquet"
        df.write_parquet(path, row_group_size=50_000)
        out[name] = (path, cut)
    return out


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as c, Client(c) as client:
        yield c, client


def _sorted(df: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    return df.select(cols).sort(cols, nulls_last=True)


def _assert_same(ref, got, ref_store: Path, got_store: Path) -> None:
    for m in MEASUREMENTS:
        a, b = getattr(ref, m), getattr(got, m)
        assert a.height > 0, m
        assert sorted(a.columns) == sorted(b.columns), m
        assert _sorted(a, a.columns).equals(_sorted(b, a.columns)), m  # bit for bit, nulls too
        stored = 0
        for sink in ("ma-local", "es-local", "us-local", "sn-local", "group"):  # sovereign stores
            sa, sb = read_store(ref_store / sink, m), read_store(got_store / sink, m)
            stored += sa.height
            assert sa.height == sb.height, f"{sink} {m}"
            if sa.height:
                assert _sorted(sa, sa.columns).equals(_sorted(sb, sa.columns)), f"{sink} {m}"
        assert stored > 0, m
    assert got.readings == ref.readings
    assert got.rejected == ref.rejected


def _gaps_at_cut(res, site: str, cut: datetime) -> dict[str, float]:
    """Gap quality rows [s] of the silenced meters: the first reading after each silence."""
    q = res.quality.filter((pl.col("kind") == "gap") & (pl.col("site") == site)
                           & (pl.col("time") > cut) & (pl.col("time") <= cut + timedelta(hours=1)))
    return {r["device"]: r["value"] for r in q.iter_rows(named=True)
            if r["device"] in ("incomer-1", "pdu-01")}


@pytest.mark.parametrize("name", list(RUNS))
def test_dask_replay_equals_one_process(inputs, cluster, tmp_path, name):
    cfg = load_config(CFG)
    path, cut = inputs[name]
    site = RUNS[name][1]
    ref = replay(cfg, [path], out_dir=tmp_path / "one", run="t", progress=False)
    # ramadan: the CLI's local:N path (its own cluster); dst: a running scheduler's address
    address = "local:2" if name == "ramadan" else cluster[0].scheduler_address
    got = replay_dask(cfg, [path], address, out_dir=tmp_path / "dask", run="t", progress=False)
    _assert_same(ref, got, tmp_path / "one", tmp_path / "dask")
    # the cut meters really crossed a slice start: register silent 3 h 20 min, power 10 min
    # (interval from the last reading before the silence to the first after it, by hand)
    assert _gaps_at_cut(got, site, cut) == {"incomer-1": 3 * 3600 + 20 * 60 + 60.0,
                                            "pdu-01": 10 * 60 + 60.0}
    # each slice starts at a local midnight, so the changed day has 23 or 25 hourly rows
    day = got.kpi.filter((pl.col("site") == site) & (pl.col("window") == "1d")
                         & (pl.col("time") == cut))
    assert day.height == 1
    hours = got.kpi.filter((pl.col("site") == site) & (pl.col("window") == "1h")
                           & (pl.col("time") >= cut))
    changed = {"ramadan": 23, "dst": 25}[name]
    assert hours.filter(pl.col("time") < _next_midnight(cut, RUNS[name][2])).height == changed


def _next_midnight(cut: datetime, zone: str) -> datetime:
    local = cut.astimezone(ZoneInfo(zone)).date() + timedelta(days=1)
    return datetime(local.year, local.month, local.day, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def test_killed_worker_rows_still_exact(inputs, cluster, tmp_path):
    """SIGKILL one worker process while it runs a task: the job completes, rows exact."""
    cfg = load_config(CFG)
    path, _ = inputs["dst"]
    c, client = cluster
    ref = replay(cfg, [path], out_dir=tmp_path / "one", run="t", progress=False)
    killed: dict[str, object] = {}

    def kill_one() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = {w: ts for w, ts in client.processing().items() if ts}
            if busy:
                worker = sorted(busy)[0]
                pid = client.run(os.getpid, workers=[worker])[worker]
                killed["tasks"] = list(busy[worker])
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
                return
            time.sleep(0.05)

    t = threading.Thread(target=kill_one)
    t.start()
    got = replay_dask(cfg, [path], c.scheduler_address, out_dir=tmp_path / "dask", run="t",
                      progress=False)
    t.join()
    assert "pid" in killed
    assert any("pueflow-slice" in str(k) for k in killed["tasks"])
    _assert_same(ref, got, tmp_path / "one", tmp_path / "dask")
    client.wait_for_workers(2, timeout=60)  # the nanny brought it back for the next test


def test_data_error_stops_the_job_with_file_and_reason(inputs, cluster, tmp_path):
    cfg = load_config(CFG)
    path, _ = inputs["dst"]
    bad = tmp_path / "bad.parquet"
    pl.read_parquet(path).head(100).with_columns(pl.lit("x").alias("value")).write_parquet(bad)
    with pytest.raises(SliceDataError, match="bad.parquet"):
        replay_dask(cfg, [bad], cluster[0].scheduler_address, out_dir=tmp_path / "out",
                    run="t", progress=False)


def test_scheduler_that_does_not_answer(tmp_path):
    cfg = load_config(CFG)
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(DaskError, match=f"{address}.*no Dask scheduler answered"):
        replay_dask(cfg, [ROOT / "config"], address, out_dir=tmp_path / "out", run="t",
                    progress=False)
    assert not (tmp_path / "out").exists()


def test_csv_with_a_bad_row_gives_the_same_decode_error_once(inputs, cluster, tmp_path):
    """A non-Parquet input (spans found by decoding) with a row that gives no reading."""
    cfg = load_config(CFG)
    path, cut = inputs["dst"]
    df = pl.read_parquet(path).filter((pl.col("time") >= cut - timedelta(hours=3))
                                      & (pl.col("time") < cut + timedelta(hours=3)))
    csv = tmp_path / "six-hours.csv"
    df.with_columns(pl.col(c).cast(pl.String) for c in ("site", "device", "point")).write_csv(csv)
    with csv.open("a") as f:  # a time outside 1970..2260: no reading, a decode_error row
        f.write("1900-01-01T00:00:00Z,aragon-1,pdu-01,power_kw,1.0\n")
    ref = replay(cfg, [csv], out_dir=tmp_path / "one", run="t", progress=False)
    got = replay_dask(cfg, [csv], cluster[0].scheduler_address, out_dir=tmp_path / "dask",
                      run="t", progress=False)
    _assert_same(ref, got, tmp_path / "one", tmp_path / "dask")
    bad = got.quality.filter(pl.col("kind") == "decode_error")
    assert bad.height == 1
    assert bad["point"][0] == f"row {df.height + 1}"
