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
import tomllib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pueflow.config.load import parse_config
from pueflow.connectors.kafka import ensure_topics
from pueflow.connectors.parquet_store import identity_columns, read_store
from pueflow.modes.produce import produce_frame
from pueflow.optimizers.dispatcher import Dispatcher
from pueflow.pipeline.core import Pipeline
from pueflow.schema.batch import Batch
from pueflow.sovereignty.audit import AuditLog
from pueflow.sovereignty.router import Router
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


def _fleet_config(tmp_path: Path, broker, names):
    """config/fleet-4-countries.toml on the test broker, stores in ``tmp_path``, the KPI topic
    and its aggregator in MA."""
    doc = tomllib.loads((ROOT / "config" / "fleet-4-countries.toml").read_text())
    doc["pipeline"].update({"idle_timeout": "3s", "checkpoint_interval": "2s"})
    doc["kafka"] = {"bootstrap_servers": [broker.bootstrap], "topics": [names.topic],
                    "group_id": names.group, "format": "json", "timestamp_unit": "ms",
                    "dlq_topic": names.dlq, "state_topic": names.state,
                    "kpi_topic": names.topic + ".kpi", "aggregate_group_id": names.group + ".agg",
                    "kpi_topic_jurisdiction": "MA", "kpi_deadline": "2m", "kpi_allowed_lateness": "1d"}
    for sink in doc["sinks"]:
        sink["path"] = str(tmp_path / sink["name"])
    doc["routing"] = {"audit_log": str(tmp_path / "audit.jsonl")}
    for site in doc["sites"]:  # the test's TOML writer knows no dates: ISO strings parse the same
        for g in site.get("guarantees_of_origin", []):
            g.update({k: g[k].isoformat() for k in ("start", "end")})
    path = tmp_path / "fleet.toml"
    path.write_text(_toml(doc))
    return path, parse_config(doc, str(path))


def _expected(cfg, df: pl.DataFrame, tmp_path: Path) -> dict[tuple[str, str], pl.DataFrame]:
    """The replay's rows each store receives: (sink, measurement) -> rows.

    One aggregator in MA sees the other countries' sites only at windows >= 1 h (the default
    cross-border rule), so it writes the MA aggregate at every window and the fleet, ES, US
    and SN aggregates at 1 h and 1 d; a finer aggregate of another country would need an
    aggregator in that country.
    """
    p = Pipeline(cfg, dispatcher=Dispatcher(cfg, "mpc"))
    keys = list(zip(df["site"].to_list(), df["device"].to_list(), df["point"].to_list(), strict=True))
    series = np.array([p.registry.id(*k) for k in keys], np.int32)
    out = p.process(Batch(df["time"].dt.epoch("ns").to_numpy(), series, df["value"].to_numpy()))
    assert out.fleet is not None
    assert out.setpoint is not None
    fleet = out.fleet.filter((pl.col("scope") == "MA") | pl.col("window").is_in(["1h", "1d"]))
    router = Router(cfg, AuditLog(tmp_path / "replay-audit.jsonl"))
    want = {}
    for sink in cfg.sinks:
        for m, rows in (("kpi", out.kpi), ("fleet", fleet), ("setpoint", out.setpoint)):
            got = router.rows_for(sink, m, rows)
            if got is not None:
                want[(sink.name, m)] = got
    assert router.refused_total == 0
    return want


def _missing(tmp_path: Path, want: dict) -> list[str]:
    """(sink, measurement) whose store lacks some row of ``want``."""
    out = []
    for (sink, m), rows in want.items():
        ident = identity_columns(m)
        try:
            got = read_store(tmp_path / sink, m)
        except Exception:  # noqa: BLE001 - the store is still empty
            out.append(f"{sink}/{m}")
            continue
        if rows.select(ident).join(got.select(ident), on=ident, how="anti").height:
            out.append(f"{sink}/{m}")
    return out


@pytest.mark.parametrize("kill", [False, True], ids=["clean", "sigkill"])
def test_three_consumers_and_an_aggregator_write_the_replay_rows(broker, names, tmp_path, kill):
    path, cfg = _fleet_config(tmp_path, broker, names)
    ensure_topics(cfg.kafka, {names.topic: (3, {})})
    sites = [s.id for s in cfg.sites]
    df = telemetry(sites, recent_start(5), 130, step_s=60)  # two whole hours and a bit
    produce_frame(cfg, df, per_message=4)
    want = _expected(cfg, df, tmp_path)
    fleet = want[("ma-local", "fleet")]
    # the MA aggregate at 1 min and 15 min, every scope at 1 h (two hours)
    assert fleet.filter(pl.col("window") == "1m").height >= 120
    assert set(fleet.filter(pl.col("window") == "1h")["scope"]) == {"fleet", "MA", "ES", "US", "SN"}
    assert set(want[("group", "fleet")]["window"]) == {"1h"}
    for sink in ("ma-local", "es-local", "us-local", "sn-local"):
        assert want[(sink, "setpoint")].height > 0, sink
        assert want[(sink, "kpi")].height > 0, sink
    procs = [_proc("consume", path, tmp_path / f"consume-{i}.log") for i in range(3)]
    procs.append(_proc("aggregate", path, tmp_path / "aggregate.log"))
    try:
        if kill:  # one consumer and the aggregator, each at a random point, then restarted
            rng = random.Random()
            for i in (0, 3):
                time.sleep(rng.uniform(1.0, 6.0))
                procs[i].kill()
                procs[i].wait()
                procs[i] = _proc("consume" if i == 0 else "aggregate", path, tmp_path / f"restart-{i}.log")
        wait_for(lambda: not _missing(tmp_path, want), 300,
                 what="every kpi, fleet and setpoint row of the replay in its store")
    finally:
        for p in procs:
            _stop(p, 30)
    for (sink, m), rows in want.items():
        ident = identity_columns(m)
        got = read_store(tmp_path / sink, m)
        joined = rows.join(got, on=ident, how="left", suffix="_got")
        cols = [c for c in rows.columns if c not in ident and c != "run" and c + "_got" in joined.columns]
        assert cols, (sink, m)
        for col in cols:
            assert joined[col].to_list() == joined[col + "_got"].to_list(), (sink, m, col)


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
