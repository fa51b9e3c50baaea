"""Two worker processes share one study (SQLite file or Optuna journal file): one trial per number."""

from __future__ import annotations

import optuna
import pytest

from pueflow.modes.tune.run import run_tune
from pueflow.modes.tune.study import open_storage, storage_url
from tests.unit.modes.test_tune import history, tiny_cfg  # noqa: F401 - the fixture is used by name

SPACE = {"space": [{"key": "battery.soc_min_pct", "low": 5.0, "high": 50.0},
                   {"key": "forecast.load_tau_h", "low": 1.0, "high": 12.0}],
         "validation_days": 0}  # no validation period: a shorter report phase


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_worker_processes_complete_one_study(history, tmp_path, kind):  # noqa: F811
    storage = None if kind == "sqlite" else f"journal:{tmp_path / 'study.journal'}"
    res = run_tune(tiny_cfg(SPACE), history, trials=8, jobs=2, out=tmp_path, storage=storage,
                   study="shared", seed=5, progress=False, report=False)
    study = optuna.load_study(study_name="shared", storage=open_storage(storage_url(storage, tmp_path)))
    trials = study.get_trials(deepcopy=False)
    nums = [t.number for t in trials]
    assert sorted(nums) == list(range(8))  # exactly the total, no duplicate number
    assert all(t.state.is_finished() for t in trials)
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2  # both processes ran trials
    assert res.best_number is not None
    assert res.trials == 8


def test_storage_urls():
    assert storage_url(None, "out").startswith("sqlite:////")
    assert storage_url("postgresql://u@h/db", "out") == "postgresql://u@h/db"
    from pueflow.exceptions import PueflowError
    from pueflow.modes.tune.study import redact

    assert redact("postgresql://me:secret@db:5432/optuna") == "postgresql://me:***@db:5432/optuna"
    with pytest.raises(PueflowError, match="not understood"):
        open_storage("ftp://x")


def test_journal_lock_excludes_and_survives_its_holder(tmp_path):
    """The journal's flock: a second holder waits (never breaks in), a dead holder's lock is free."""
    import multiprocessing as mp
    import threading

    from pueflow.modes.tune.storage import FlockJournalLock

    path = str(tmp_path / "study.journal")
    first, second = FlockJournalLock(path), FlockJournalLock(path)
    assert first.acquire()
    got = threading.Event()
    t = threading.Thread(target=lambda: (second.acquire(), got.set()), daemon=True)
    t.start()
    assert not got.wait(0.5)  # held: the second waits however long the first takes
    first.release()
    assert got.wait(10)
    second.release()
    # a holder that dies without releasing leaves the lock free for the next
    ctx = mp.get_context("fork")
    p = ctx.Process(target=lambda: (FlockJournalLock(path).acquire(), __import__("os")._exit(0)))
    p.start()
    p.join(10)
    third = FlockJournalLock(path)
    done = threading.Event()
    threading.Thread(target=lambda: (third.acquire(), done.set()), daemon=True).start()
    assert done.wait(10)
    third.release()
