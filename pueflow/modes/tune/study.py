"""Studies and workers: one Optuna study shared by processes and machines.

Where the study lives (``--storage``: SQLite, a journal file or PostgreSQL) is
:mod:`~pueflow.modes.tune.storage`'s. A worker loads the study by name and runs trials until the study holds ``total`` trials
(see :mod:`~pueflow.modes.tune.trials` for which count: a trial whose worker died or
was interrupted is failed and re-run with the same settings), so re-running the same
command resumes an interrupted study up to the same total. Local processes on one storage
file create the study, queue the configured trial, check the count and claim a trial under
one lock (a file next to the storage file), so they never race or overshoot; workers on
other machines check the same count without a shared lock, so a study may end a trial or
two over the total when several finish at the same moment.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError

from pueflow.config.tune import TuneSpec
from pueflow.exceptions import ConfigError, OptimizerError, PueflowError
from pueflow.modes.tune.objective import Evaluator, Objective, constraints_of
from pueflow.modes.tune.storage import open_storage, redact
from pueflow.modes.tune.storage import storage_url as storage_url  # re-exported: was defined here
from pueflow.modes.tune.trials import (
    claim,
    count_trials,
    fail_stale,
    frozen,
    heartbeat,
    held_interrupts,
    interrupted,
)


def fingerprint(spec: TuneSpec, site_id: str) -> str:
    """Return what must not change within a study, as canonical JSON.

    That is the ``[tune]`` section (site, objective, constraints, space, periods, policy)
    without the settings that only steer the search (``study``, ``startup_trials``,
    ``pruner``, ``prune_after_days``, ``sampler``), plus the site id.
    """
    keep = spec.model_dump(mode="json", exclude={"study", "startup_trials", "pruner", "prune_after_days",
                                                 "sampler"})
    keep["site_id"] = site_id
    return json.dumps(keep, sort_keys=True)


def digest(spec: TuneSpec, site_id: str) -> str:
    """Return the first 16 hex digits of the SHA-256 of :func:`fingerprint`."""
    return hashlib.sha256(fingerprint(spec, site_id).encode()).hexdigest()[:16]


def default_study_name(spec: TuneSpec, site_id: str) -> str:
    """Return ``[tune] study``, else ``pueflow-<site>-<8 hex digits of the digest>``.

    The same ``[tune]`` so resumes its study; a changed one starts a new study instead of
    mixing scores.
    """
    return spec.study or f"pueflow-{site_id}-{digest(spec, site_id)[:8]}"


def make_sampler(spec: TuneSpec, seed: int | None) -> Any:
    """Return the ``[tune] sampler``: random, or TPE after ``startup_trials`` random ones.

    TPE gets the trials' constraints (through ``constraints_func`` on Optuna < 5, which
    has no ``Trial.set_constraint``); ``seed`` ``None`` draws a fresh seed.
    """
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    kw: dict[str, Any] = {"seed": seed, "n_startup_trials": spec.startup_trials}
    if not hasattr(optuna.trial.Trial, "set_constraint"):  # Optuna < 5
        kw["constraints_func"] = constraints_of
    return optuna.samplers.TPESampler(**kw)


def make_pruner(spec: TuneSpec) -> Any:
    """Return the ``[tune] pruner``: none, or the median pruner.

    The median pruner stops a trial whose running score is worse than the median of
    earlier trials at the same day, after ``prune_after_days`` days and once
    ``min(5, startup_trials)`` trials have finished.
    """
    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=min(5, spec.startup_trials),
                                       n_warmup_steps=spec.prune_after_days)


def create_or_load(url: str, name: str, spec: TuneSpec, site_id: str, source: str = "tune") -> Any:
    """Create the study ``name`` (or load it: resume) and check it was made for this ``[tune]``.

    Optuna's log is set to warnings first: its "A new study created" line is not for -q.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                load_if_exists=True)
    want = digest(spec, site_id)
    have = study.user_attrs.get("fingerprint")
    if have is None:
        study.set_user_attr("fingerprint", want)
        study.set_user_attr("tune", json.loads(fingerprint(spec, site_id)))
    elif have != want:
        raise ConfigError(source, [("tune", name,
                                    f"study {name!r} in {redact(url)} was made for another [tune] section "
                                    f"(site, objective, constraints, space or periods differ); resume it with "
                                    f"the [tune] it was made with, or start a new study with --study NAME")])
    return study


@dataclass
class WorkerJob:
    """Everything a worker process needs (pickled to it)."""

    site: Any
    spec: TuneSpec
    keys: dict[str, str]
    train: Any
    url: str
    name: str
    total: int
    seed: int | None
    index: int


def work(job: WorkerJob, lock: Any = None, on_trial: Callable[[Any], None] | None = None) -> int:
    """Run trials of ``job``'s study until it holds ``job.total``; return how many this worker ran.

    Under ``lock``, with interrupts held back: fail the trials of dead workers (they are
    queued again), check the count, claim a trial. An interrupt while a trial runs fails it
    and queues it again before the ``KeyboardInterrupt`` goes on.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=job.name, storage=open_storage(job.url))
    n_before = count_trials(study)
    seed = None if job.seed is None else job.seed + 7919 * job.index + n_before
    study.sampler = make_sampler(job.spec, seed)
    study.pruner = make_pruner(job.spec)
    objective = Objective(Evaluator(job.site, job.spec, job.keys), job.train)
    ran = 0
    while True:
        trial = None
        try:
            with lock if lock is not None else nullcontext(), held_interrupts():
                fail_stale(study)
                if count_trials(study) >= job.total:
                    return ran
                trial = claim(study)
            if trial is None:
                continue
            ran += 1
            with heartbeat(study, trial):
                done = _run_one(study, trial, objective)
        except KeyboardInterrupt:
            if trial is not None:
                with held_interrupts():
                    interrupted(study, trial)
            raise
        if on_trial is not None:
            on_trial(done)


def _run_one(study: Any, trial: Any, objective: Any) -> Any:
    from optuna.trial import TrialState

    try:
        value = objective(trial)
    except optuna.TrialPruned:
        return study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
    except UpdateFinishedTrialError:
        # another worker took this one for dead (no heartbeat for a long while) and re-queued it
        return frozen(study, trial.number)
    except (OptimizerError, FloatingPointError) as exc:
        # settings valid alone but not together (e.g. soc_min above a sampled soc_max)
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
        return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    except Exception as exc:
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        raise
    return study.tell(trial, value, skip_if_finished=True)


class FileLock:
    """An exclusive ``flock`` on ``path``: local workers claim trial numbers one at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.fd: int | None = None

    def __enter__(self) -> FileLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def spawn_workers(job: WorkerJob, jobs: int, lock_path: Path, folder: Path) -> list[subprocess.Popen]:
    """Start ``jobs`` worker processes (``python -m pueflow.modes.tune.worker``).

    Fresh interpreters rather than forks: no SQLAlchemy connection, numba or polars thread
    pool is shared with the parent, and no ``__main__`` guard is needed in a caller's script.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".tune-job-{os.getpid()}.pkl"
    path.write_bytes(pickle.dumps(job))
    env = {**os.environ, "POLARS_MAX_THREADS": os.environ.get("POLARS_MAX_THREADS", "1")}
    return [subprocess.Popen([sys.executable, "-m", "pueflow.modes.tune.worker", str(path), str(k),
                              str(lock_path)], env=env) for k in range(jobs)]


def worker_main(job_path: str, index: int, lock_path: str) -> int:
    """Run one worker process's trials (the entry point of ``pueflow.modes.tune.worker``).

    SIGTERM and SIGINT fail the running trial, which is re-run on resume.

    Parameters
    ----------
    job_path : str
        Pickled :class:`WorkerJob` written by the parent process.
    index : int
        This worker's number.
    lock_path : str
        The lock file the local workers share.

    Returns
    -------
    int
        Exit status: 0 when done, 130 when interrupted.
    """
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    job = pickle.loads(Path(job_path).read_bytes())  # noqa: S301 - written by our parent process
    job.index = index
    try:
        work(job, FileLock(lock_path))
    except KeyboardInterrupt:
        return 130
    return 0


def wait_workers(procs: list[subprocess.Popen], poll: Callable[[], None], interval_s: float = 0.5) -> None:
    """Poll until every worker process has exited; a worker's crash becomes an error."""
    try:
        while any(p.poll() is None for p in procs):
            poll()
            time.sleep(interval_s)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    poll()
    bad = [p.returncode for p in procs if p.returncode != 0]
    if bad and all(code in (130, -signal.SIGINT, -signal.SIGTERM) for code in bad):
        raise KeyboardInterrupt  # the workers were interrupted (Ctrl-C reaches the whole group)
    if bad:
        msg = (f"{len(bad)} tuning worker(s) exited with {bad} (see their messages above); the study "
               f"keeps every finished trial: re-run the same command to resume")
        raise PueflowError(msg)
