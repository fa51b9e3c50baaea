"""Campus scale end to end: three consume processes and one aggregate process on a real broker.

The fleet rows the aggregator writes to the Parquet store, and the setpoints the consumers
publish (``--dispatch mpc``), equal those of the same telemetry through one in-process core
with a dispatcher (the replay path), value for value; also when a consumer and the
aggregator are killed with SIGKILL at random points and restarted.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pueflow.config.load import parse_config
from pueflow.connectors.kafka import ensure_topics
from pueflow.connectors.parquet_store import read_store
from pueflow.modes.produce import produce_frame
from pueflow.optimizers.dispatcher import Dispatcher
from pueflow.pipeline.core import Pipeline
from pueflow.schema.batch import Batch
from tests.integration.conftest import ROOT, _stop
from tests.integration.helpers import (
    _toml,
    make_config,
    recent_start,
    site_ids,
    telemetry,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NS = 10**9


def _config(tmp_path: Path, broker, names, idle_timeout: str = "3s"):
    base = make_config(tmp_path / "base.toml", bootstrap=broker.bootstrap, names=names, vm_url=None,
                       n_sites=3, windows=("1m", "15m", "1h"), idle_timeout=idle_timeout)
    doc = base.model_dump(mode="json", exclude_none=True, exclude={"tune"})
    doc["kafka"].update({"kpi_topic": names.topic + ".kpi", "aggregate_group_id": names.group + ".agg",
                         "kpi_topic_jurisdiction": "MA", "kpi_deadline": "2m",
                         "kpi_allowed_lateness": "1d"})
    doc["sinks"] = [{"name": "store", "type": "parquet", "path": str(tmp_path / "store"),
                     "jurisdiction": "MA"}]
    path = tmp_path / "campus.toml"
    path.write_text(_toml(doc))
    return path, parse_config(doc, str(path))


def _replay(cfg, df: pl.DataFrame):
    p = Pipeline(cfg, dispatcher=Dispatcher(cfg, "mpc"))
    keys = list(zip(df["site"].to_list(), df["device"].to_list(), df["point"].to_list(), strict=True))
    series = np.array([p.registry.id(*k) for k in keys], np.int32)
    out = p.process(Batch(df["time"].dt.epoch("ns").to_numpy(), series, df["value"].to_numpy()))
    return out.fleet, out.setpoint


def _proc(verb: str, config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    extra = ["--dispatch", "mpc"] if verb == "consume" else []
    cmd = [sys.executable, "-m", "pueflow.cli", verb, "--config", str(config), "--session-timeout-ms", "6000",
           *extra]
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


@pytest.mark.parametrize("kill", [False, True], ids=["clean", "sigkill"])
def test_three_consumers_and_an_aggregator_write_the_replay_rows(broker, names, tmp_path, kill):
    path, cfg = _config(tmp_path, broker, names)
    ensure_topics(cfg.kafka, {names.topic: (3, {})})
    df = telemetry(site_ids(3), recent_start(5), 70)
    produce_frame(cfg, df, per_message=4)
    want, want_sp = _replay(cfg, df)
    assert want_sp is not None
    assert want_sp.height > 0
    assert want is not None
    assert want.height >= 2 * 30  # the fleet and MA scopes, 1m and 15m windows
    procs = [_proc("consume", path, tmp_path / f"consume-{i}.log") for i in range(3)]
    procs.append(_proc("aggregate", path, tmp_path / "aggregate.log"))
    store = tmp_path / "store"
    keys = ["scope", "window", "time"]

    def have_all() -> bool:
        try:
            got = read_store(store, "fleet")
            sp = read_store(store, "setpoint")
        except Exception:  # noqa: BLE001 - the store is still empty
            return False
        sk = ["time", "site", "asset"]
        return (want.select(keys).join(got.select(keys), on=keys, how="anti").height == 0
                and want_sp.select(sk).join(sp.select(sk), on=sk, how="anti").height == 0)

    try:
        if kill:  # one consumer and the aggregator, each at a random point, then restarted
            rng = random.Random()
            for i in (0, 2):
                time.sleep(rng.uniform(1.0, 6.0))
                procs[i].kill()
                procs[i].wait()
                procs[i] = _proc("consume" if i == 0 else "aggregate", path, tmp_path / f"restart-{i}.log")
        wait_for(have_all, 240, what="every fleet window and setpoint of the replay in the store")
    finally:
        for p in procs:
            _stop(p, 30)
    got = read_store(store, "fleet")
    joined = want.join(got, on=keys, how="left", suffix="_got")
    for col in ("facility_kwh", "it_kwh", "renewable_kwh", "co2_kg", "water_l", "pue", "sites_reporting",
                "sites_expected"):
        a, b = joined[col].to_list(), joined[col + "_got"].to_list()
        assert a == b, col
    sp = read_store(store, "setpoint")
    sk = ["time", "site", "asset"]
    # every setpoint step the replay published is in the store, with the same values
    js = want_sp.join(sp, on=sk, how="left", suffix="_got")
    for col in ("battery_kw", "grid_import_kw", "flex_it_cap_kw", "cooling_supply_c", "plan_cost"):
        assert js[col].to_list() == js[col + "_got"].to_list(), col


def test_a_silent_site_closes_at_the_deadline_and_its_late_rows_restate(broker, names, tmp_path):
    path, cfg = _config(tmp_path, broker, names, idle_timeout="10m")  # stage 1 keeps its windows open
    ensure_topics(cfg.kafka, {names.topic: (3, {})})
    sites = site_ids(3)
    df = telemetry(sites, recent_start(5), 40)
    cut = df["time"].min() + pl.duration(minutes=10)
    silent = (pl.col("site") == sites[2]) & (pl.col("time") >= cut)
    produce_frame(cfg, df.filter(~silent), per_message=4)
    want, _ = _replay(cfg, df)
    procs = [_proc("consume", path, tmp_path / "consume.log"), _proc("aggregate", path, tmp_path / "agg.log")]
    store = tmp_path / "store"
    late_key = ("fleet", "1m", cut + pl.duration(minutes=15))

    def fleet_row(key):
        try:
            got = read_store(store, "fleet", scope=key[0], window=key[1])
        except Exception:  # noqa: BLE001 - the store is still empty
            return None
        at = got.filter(pl.col("time") == pl.select(key[2]).item())
        return at.row(0, named=True) if at.height else None

    try:
        wait_for(lambda: fleet_row(late_key) is not None, 120, what="a fleet window closed at its deadline")
        row = fleet_row(late_key)
        assert (row["sites_reporting"], row["sites_expected"]) == (2, 3)
        produce_frame(cfg, df.filter(silent), per_message=4)  # the site's data arrives late
        wait_for(lambda: (fleet_row(late_key) or {}).get("sites_reporting") == 3, 120,
                 what="the late site's rows restating the fleet window")
    finally:
        for p in procs:
            _stop(p, 30)
    got = read_store(store, "fleet")
    keys = ["scope", "window", "time"]
    joined = want.join(got, on=keys, how="left", suffix="_got")
    # every window closed with the site's data now equals the replay's (restated in place)
    done = joined.filter(pl.col("time") < pl.select(cut + pl.duration(minutes=25)).item())
    for col in ("facility_kwh", "it_kwh", "pue", "sites_reporting"):
        assert done[col].to_list() == done[col + "_got"].to_list(), col
