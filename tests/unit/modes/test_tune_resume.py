"""Studies shared by processes: a race to create one, dead workers, interrupts, the trial count.

Every test counts finished trials in the stored study itself, so "the study holds
--trials finished trials" is checked against Optuna's record, not against what
``run_tune`` reports.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import optuna
import pytest

from pueflow.modes.tune.best_config import dumps
from pueflow.modes.tune.objective import suggest
from pueflow.modes.tune.run import run_tune
from pueflow.modes.tune.study import open_storage, storage_url
from pueflow.modes.tune.trials import claim
from tests.unit.modes.test_tune import history, tiny_cfg, tiny_data  # noqa: F401 - the fixture is used by name

ROOT = Path(__file__).resolve().parents[3]
SOC = {"key": "battery.soc_min_pct", "low": 5.0, "high": 50.0}
TUNE = {"space": [SOC], "validation_days": 0}


def trials_of(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=open_storage(url)).get_trials(deepcopy=False)


def finished(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Trials that ran to an end: complete or pruned (what --trials asks for)."""
    return [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]


@pytest.mark.parametrize("run", [0, 1, 2])
def test_two_processes_started_together_on_a_new_sqlite_file_both_succeed(history, tmp_path, run):  # noqa: F811
    """Two ``pueflow tune`` racing to create one SQLite study; odd runs use two output folders."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(dumps(tiny_data(TUNE)))
    db = tmp_path / "shared" / "tune.db"
    outs = [tmp_path / "shared"] * 2 if run % 2 == 0 else [tmp_path / "a", tmp_path / "b"]
    store = [] if run % 2 == 0 else ["--storage", f"sqlite:///{db}"]
    db.parent.mkdir()
    procs = [subprocess.Popen([sys.executable, "-m", "pueflow.cli", "tune", "--config", str(cfg), "--input",
                               str(history), "--trials", "3", "--study", "race", "--out", str(out), *store,
                               "--no-report", "-q"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
             for out in outs]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    trials = trials_of(f"sqlite:///{db}", "race")
    assert sorted(t.number for t in trials) == [0, 1, 2]  # exactly the total, no second copy
    assert len(finished(trials)) == 3
    assert sum(bool(t.user_attrs.get("configured")) for t in trials) == 1  # queued once


def _start(tmp_path: Path, history: Path, trials: int) -> str:  # noqa: F811
    run_tune(tiny_cfg(TUNE), history, trials=trials, out=tmp_path, study="s", seed=4, progress=False,
             report=False)
    return storage_url(None, tmp_path)


def _age(db: Path, sql: str) -> None:
    with sqlite3.connect(db) as con:
        assert con.execute(sql).rowcount == 1


def _dead_process(url: str, tmp_path: Path) -> None:
    """A worker process of this machine claims a trial, samples it and is killed (SIGKILL)."""
    code = textwrap.dedent(f"""
        import os, signal, optuna
        from pueflow.modes.tune.study import open_storage
        from pueflow.modes.tune.trials import claim
        study = optuna.load_study(study_name="s", storage=open_storage({url!r}))
        trial = claim(study)
        trial.suggest_float("battery.soc_min_pct", 5.0, 50.0)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == -signal.SIGKILL, p.stderr


def _silent_other_machine(url: str, tmp_path: Path) -> None:
    """A worker of another machine whose last heartbeat is an hour old."""
    study = optuna.load_study(study_name="s", storage=open_storage(url))
    trial = claim(study)
    suggest(trial, tiny_cfg(TUNE).tune.space)
    trial.set_user_attr("worker", "another-machine:4242")
    _age(tmp_path / "tune.db", "UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-1 hour') "
                               "WHERE trial_id IN (SELECT trial_id FROM trials WHERE state = 'RUNNING')")


def _killed_while_creating(url: str, tmp_path: Path) -> None:
    """A trial created an hour ago by a worker that never named itself (killed in between)."""
    study = optuna.load_study(study_name="s", storage=open_storage(url))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with optimize"
        trial = study.ask()
    suggest(trial, tiny_cfg(TUNE).tune.space)
    _age(tmp_path / "tune.db", "UPDATE trials SET datetime_start = datetime(datetime_start, '-1 hour') "
                               "WHERE state = 'RUNNING'")


@pytest.mark.parametrize("dead", [_dead_process, _silent_other_machine, _killed_while_creating])
def test_a_dead_workers_running_trial_is_failed_and_rerun_with_its_settings(history, tmp_path, dead):  # noqa: F811
    url = _start(tmp_path, history, 2)
    dead(url, tmp_path)
    stuck = [t for t in trials_of(url, "s") if t.state.name == "RUNNING"]
    assert len(stuck) == 1
    run_tune(tiny_cfg(TUNE), history, trials=4, out=tmp_path, study="s", progress=False, report=False)
    trials = trials_of(url, "s")
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert len(finished(trials)) == 4  # the dead worker's trial did not use up one of the four
    gone = next(t for t in trials if t.number == stuck[0].number)
    assert gone.state.name == "FAIL"
    rerun = [t for t in trials if gone.number in t.system_attrs.get("retry_history", [])]
    assert len(rerun) == 1
    assert rerun[0].params == stuck[0].params  # re-run with the same settings
    assert rerun[0].state.name in ("COMPLETE", "PRUNED")


def test_a_live_trial_of_another_machine_is_left_running(history, tmp_path):  # noqa: F811
    """A fresh heartbeat means a live worker elsewhere: its trial counts and is not touched."""
    url = _start(tmp_path, history, 2)
    study = optuna.load_study(study_name="s", storage=open_storage(url))
    trial = claim(study)
    trial.set_user_attr("worker", "another-machine:4242")
    run_tune(tiny_cfg(TUNE), history, trials=4, out=tmp_path, study="s", progress=False, report=False)
    trials = trials_of(url, "s")
    assert next(t for t in trials if t.number == trial.number).state.name == "RUNNING"
    assert len(finished(trials)) == 3  # the live one is the fourth


def test_ctrl_c_at_trial_creation_leaves_no_running_trial(history, tmp_path, monkeypatch):  # noqa: F811
    """SIGINT arriving while the second trial is being created (inside Optuna's ask)."""
    real = optuna.study.Study.ask
    calls = {"n": 0}

    def ask_then_sigint(self, *a, **k):
        trial = real(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return trial

    monkeypatch.setattr(optuna.study.Study, "ask", ask_then_sigint)
    with pytest.raises(KeyboardInterrupt):
        run_tune(tiny_cfg(TUNE), history, trials=4, out=tmp_path, study="s", progress=False, report=False)
    monkeypatch.setattr(optuna.study.Study, "ask", real)
    url = storage_url(None, tmp_path)
    trials = trials_of(url, "s")
    assert not [t for t in trials if t.state.name == "RUNNING"]
    assert [t.user_attrs.get("interrupted") for t in trials if t.state.name == "FAIL"] == [True]
    run_tune(tiny_cfg(TUNE), history, trials=4, out=tmp_path, study="s", progress=False, report=False)
    assert len(finished(trials_of(url, "s"))) == 4


def test_one_trial_runs_the_configured_settings(history, tmp_path):  # noqa: F811
    res = run_tune(tiny_cfg(TUNE), history, trials=1, out=tmp_path, study="s", progress=False, report=False)
    trials = trials_of(storage_url(None, tmp_path), "s")
    assert [(t.state.name, t.user_attrs.get("configured")) for t in trials] == [("COMPLETE", True)]
    assert trials[0].params == {"battery.soc_min_pct": 10.0}  # the site's soc_min_pct
    assert res.trials == 1


def test_the_configured_trial_is_queued_once(history, tmp_path):  # noqa: F811
    """Two invocations, and a copy another machine queued at the same moment (failed, not counted)."""
    url = _start(tmp_path, history, 1)
    study = optuna.load_study(study_name="s", storage=open_storage(url))
    study.enqueue_trial({"battery.soc_min_pct": 10.0}, user_attrs={"configured": True})  # the other machine's
    run_tune(tiny_cfg(TUNE), history, trials=3, out=tmp_path, study="s", progress=False, report=False)
    trials = trials_of(url, "s")
    configured = [t for t in trials if t.user_attrs.get("configured")]
    assert [t.state.name for t in configured] == ["COMPLETE", "FAIL"]
    assert "duplicate" in configured[1].user_attrs
    assert len(finished(trials)) == 3
