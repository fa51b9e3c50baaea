"""Trials of a shared study: which count towards the total, claiming one, and dead workers.

A study holds ``total`` trials when that many count: every trial that is running or has
finished, except a failed trial that is re-run (its worker died or was interrupted) and a
duplicate of the configured trial. Waiting (queued) trials do not count until a worker
takes them, so ``--trials 1`` runs the queued configured trial.

A worker claims a trial (creates it, records a heartbeat, names itself in the ``worker``
attribute) with Ctrl-C and SIGTERM held back, so an interrupt never leaves a trial that no
one owns. A ``RUNNING`` trial is *stale*, failed and queued again with the same settings
(at most :data:`MAX_RETRIES` times) when

* its worker is a process of this machine that no longer exists (found at once);
* its worker stopped recording heartbeats for :data:`STALE_AFTER_S` (SQLite and PostgreSQL
  storages: Optuna's heartbeat, for workers on other machines);
* it names no worker and started more than :data:`STALE_AFTER_S` ago (a worker killed
  between creating the trial and naming itself).

A journal storage has no heartbeat: a dead worker of another machine keeps its trial
``RUNNING`` there (a re-run from that machine finds it at once).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import TrialState

#: Seconds between two heartbeats of a running trial (SQLite and PostgreSQL storages).
HEARTBEAT_S = 10
#: Seconds without a heartbeat (or, before the first one, since the trial started) after
#: which a running trial is taken for dead. Long, so a trial busy in a long solve that holds
#: the interpreter is not failed while it is alive.
STALE_AFTER_S = 120
#: Re-runs of one trial at most; a trial whose worker dies every time then counts as failed.
MAX_RETRIES = 3


def worker_id() -> str:
    """Name this process as a trial's ``worker`` attribute: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _rerun(trials: list[Any]) -> set[int]:
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def counted(trials: list[Any]) -> list[Any]:
    """Select the trials of ``trials`` that count towards the total (see the module doc)."""
    rerun = _rerun(trials)
    return [t for t in trials if t.state != TrialState.WAITING
            and not (t.state == TrialState.FAIL
                     and (t.number in rerun or t.user_attrs.get("interrupted") or t.user_attrs.get("duplicate")))]


def count_trials(study: Any) -> int:
    """Trials of ``study`` towards the total (see the module doc)."""
    return len(counted(study.get_trials(deepcopy=False)))


def queue_configured(study: Any, params: dict[str, Any]) -> bool:
    """Queue the configured settings as a trial unless the study has (had) one; True if queued.

    Call it under the storage's lock: two local invocations then queue it once. Workers on
    other machines may still both queue it; :func:`claim` fails the later copy.
    """
    if any(t.user_attrs.get("configured") for t in study.get_trials(deepcopy=False)):
        return False
    study.enqueue_trial(params, user_attrs={"configured": True})
    return True


@contextlib.contextmanager
def held_interrupts() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends, then raise ``KeyboardInterrupt``.

    Only the main thread can handle signals; elsewhere the block runs unguarded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {s: signal.signal(s, lambda signum, _frame: got.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if got:
        raise KeyboardInterrupt


def _heartbeat_storage(study: Any) -> Any | None:
    storage = study._storage  # Optuna exposes the heartbeat only on the storage
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    return storage if interval else None


def claim(study: Any) -> Any | None:
    """Create a trial of ``study`` owned by this process; None if it was a duplicate.

    Takes a queued trial first (Optuna's ``ask``), records its first heartbeat, names this
    worker. A second copy of the configured trial (two machines queued it) is failed as a
    duplicate, which does not count.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with optimize"
        trial = study.ask()
    storage = _heartbeat_storage(study)
    if storage is not None:
        storage.record_heartbeat(trial._trial_id)
    trial.set_user_attr("worker", worker_id())
    if trial.user_attrs.get("configured"):
        earlier = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number
                   and t.user_attrs.get("configured") and t.state != TrialState.FAIL]
        if earlier:
            trial.set_user_attr("duplicate", f"configured settings already queued as trial #{earlier[0].number}")
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return None
    return trial


@contextlib.contextmanager
def heartbeat(study: Any, trial: Any) -> Iterator[None]:
    """Record ``trial``'s heartbeat every :data:`HEARTBEAT_S` while the block runs."""
    storage = _heartbeat_storage(study)
    if storage is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a missed beat only shortens the grace
                storage.record_heartbeat(trial._trial_id)

    thread = threading.Thread(target=beat, name=f"tune-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def frozen(study: Any, number: int) -> Any:
    """Look up the stored trial ``number`` of ``study``."""
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def retry(study: Any, failed: Any) -> None:
    """Queue ``failed``'s settings again (same params; Optuna's retry-history convention)."""
    history = [*failed.system_attrs.get("retry_history", []), failed.number]
    if len(history) > MAX_RETRIES:
        return
    system = {"failed_trial": history[0], "retry_history": history}
    if "fixed_params" in failed.system_attrs:
        system["fixed_params"] = failed.system_attrs["fixed_params"]
    keep = {k: v for k, v in failed.user_attrs.items() if k == "configured"}
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, params=failed.params,
                                              distributions=failed.distributions, user_attrs=keep,
                                              system_attrs=system))


def interrupted(study: Any, trial: Any) -> None:
    """Fail ``trial`` after an interrupt of its own worker and queue it again."""
    with contextlib.suppress(UpdateFinishedTrialError):
        trial.set_user_attr("interrupted", True)
    try:
        study.tell(trial, state=TrialState.FAIL)
    except (ValueError, RuntimeError, UpdateFinishedTrialError):
        return  # already finished (told, or failed as stale by another worker)
    retry(study, frozen(study, trial.number))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _stale_reason(t: Any, host: str, now: datetime) -> str | None:
    worker = str(t.user_attrs.get("worker", ""))
    if worker:
        where, _, pid = worker.rpartition(":")
        if where == host and pid.isdigit() and not _alive(int(pid)):
            return f"worker {worker} died (no such process)"
        return None
    start = t.datetime_start
    if start is not None and (now - start.astimezone(UTC)).total_seconds() > STALE_AFTER_S:
        return f"no worker took it in {STALE_AFTER_S} s (its worker died while creating it)"
    return None


def fail_stale(study: Any) -> int:
    """Fail the stale ``RUNNING`` trials of ``study`` and queue them again; how many this call failed."""
    n = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeat: re-queued by the storage's callback
    host, now = socket.gethostname(), datetime.now(UTC)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _stale_reason(t, host, now)
        if reason is None:
            continue
        with contextlib.suppress(UpdateFinishedTrialError):
            study._storage.set_trial_user_attr(t._trial_id, "error", f"stale: {reason}; re-run")
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError, UpdateFinishedTrialError):
            continue  # another worker failed it first, and re-queues it
        retry(study, frozen(study, t.number))
        n += 1
    return n


def retry_stale(study: Any, trial: Any) -> None:
    """Queue the settings of a stale trial again (Optuna's heartbeat-stale callback)."""
    retry(study, trial)
