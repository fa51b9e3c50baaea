"""Tuning workers on "two machines" join one study in a real PostgreSQL.

The test starts Debian's PostgreSQL server (package ``postgresql``, installed by ``make
sysdeps``) on 127.0.0.1 in a temporary folder: ``initdb`` + ``pg_ctl``, run as the
``postgres`` system user when the tests run as root (the server refuses to run as root).
Two ``pueflow tune`` processes with separate output folders (so no shared local lock, as on
two machines) join one study through ``--storage postgresql://…``; every trial number is
used once. A third run then writes the report from the shared study.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import free_port, wait_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 8


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        pytest.fail("PostgreSQL server binaries are missing (no /usr/lib/postgresql/*/bin/pg_ctl): "
                    "install Debian's postgresql package with `make sysdeps` "
                    "(apt-get install -y postgresql)", pytrace=False)
    return Path(found[-1]).parent


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root, but there is no 'postgres' system user to run the server as "
                    "(Debian's postgresql package creates it: make sysdeps)", pytrace=False)
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    try:
        import psycopg
    except ImportError:
        pytest.fail("psycopg is missing: install the tune extra (pip install -e '.[tune]')", pytrace=False)
    bindir = _pg_bin()
    base = Path(tempfile.mkdtemp(prefix="pueflow-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for p in (base, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    port = free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 60}
    try:
        subprocess.run(_as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", "tune", "--auth=trust",
                                        "-E", "UTF8", "--no-instructions"]), **run)
        subprocess.run(_as_server_user([
            str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "30",
            "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start"]), **run)
    except subprocess.CalledProcessError as exc:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        pytest.fail(f"PostgreSQL did not start: {exc.stderr or exc.stdout}\n{log}", pytrace=False)
    try:
        wait_port(port, 15)
        with psycopg.connect(host="127.0.0.1", port=port, user="tune", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE optuna")
        yield f"postgresql://tune@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """A config file and a history for the tiny site of the unit tests."""
    from pueflow.modes.tune.best_config import dumps
    from pueflow.optimizers.assets import site_model
    from pueflow.optimizers.synthetic import synthetic_history
    from tests.unit.modes.test_tune import START, tiny_cfg, tiny_data

    d = tmp_path_factory.mktemp("tune-pg")
    tune = {"space": [{"key": "battery.soc_min_pct", "low": 5.0, "high": 50.0},
                      {"key": "horizon", "type": "categorical", "choices": ["4h", "24h"]}]}
    (d / "tiny.toml").write_text(dumps(tiny_data(tune)))
    synthetic_history(site_model(tiny_cfg().sites[0]), START, 8, seed=1).write_parquet(d / "history.parquet")
    return d / "tiny.toml", d / "history.parquet"


def test_two_workers_on_two_machines_join_one_postgres_study(postgres_url, setup, tmp_path):
    import optuna

    cfg, hist = setup
    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", "pueflow.cli", "tune", "--config", str(cfg), "--input", str(hist),
                               "--trials", str(TRIALS), "--storage", postgres_url, "--study", "shared",
                               "--out", str(tmp_path / f"machine-{k}"), "--no-report", "-q"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    nums = sorted(t.number for t in trials)
    # without a shared lock two machines may both start the last trial: at most one over
    assert TRIALS <= len(nums) <= TRIALS + 1
    assert nums == list(range(len(nums)))  # no duplicate, no gap
    assert all(t.state.is_finished() for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes ran trials
    # the coordinator writes the report from the shared study without running more trials
    from pueflow.config.load import load_config
    from pueflow.modes.tune.run import run_tune

    res = run_tune(load_config(cfg), hist, trials=TRIALS, storage=postgres_url, study="shared",
                   out=tmp_path / "report", progress=False)
    assert res.trials == len(nums)
    assert res.storage == postgres_url  # no password in it to hide
    assert res.report_path.exists()
    assert res.config_path.exists()
    assert time.monotonic() - t0 < 60
