"""Study storage and workers: one Optuna study shared by processes and machines.

Storage (``--storage``):

* default ``sqlite:///<out>/tune.db`` — one machine, a few worker processes;
* ``journal:<path>`` (or a path ending ``.log`` / ``.journal``) — Optuna's append-only journal
  file, for file systems where SQLite's locking is unreliable (NFS);
* ``postgresql://user@host:port/db`` — workers on many machines join one study.

A worker loads the study by name and runs trials until the study holds ``total`` trials
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
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError

from pueflow.config.tune import TuneSpec
from pueflow.exceptions import ConfigError, OptimizerError, PueflowError
from pueflow.modes.tune.objective import Evaluator, Objective, constraints_of
from pueflow.modes.tune.trials import (
    HEARTBEAT_S,
    STALE_AFTER_S,
    claim,
    count_trials,
    fail_stale,
    frozen,
    heartbeat,
    held_interrupts,
    interrupted,
    retry_stale,
)


def storage_url(storage: str | None, out: str | Path) -> str:
    """``storage`` or the default SQLite file in ``out`` (absolute, so workers agree)."""
    if storage:
        return storage
    return "sqlite:///" + str((Path(out) / "tune.db").resolve())


def storage_file(url: str) -> Path | None:
    """The local file of a SQLite or journal storage ``url`` (None for a database server)."""
    if url.startswith("journal:"):
        return Path(url[len("journal:"):].removeprefix("//"))
    if "://" not in url and url.endswith((".log", ".journal")):
        return Path(url)
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///"):].split("?", 1)[0])
    return None


def lock_path(url: str, out: str | Path) -> Path:
    """The lock local processes share for ``url``: ``<storage file>.lock``, else in ``out``.

    Keyed on the storage file rather than the output folder, so two invocations with
    different ``--out`` but one ``--storage`` file still take turns.
    """
    f = storage_file(url)
    return f.with_name(f.name + ".lock") if f is not None else Path(out) / ".tune.lock"


def open_storage(url: str) -> Any:
    """An Optuna storage for ``url`` (see the module doc).

    SQLite and PostgreSQL storages record a heartbeat of every running trial
    (:data:`~pueflow.modes.tune.trials.HEARTBEAT_S`) so a dead worker's trial is found.
    """
    journal = url[len("journal:"):] if url.startswith("journal:") else None
    if journal is None and "://" not in url and url.endswith((".log", ".journal")):
        journal = url
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = journal.removeprefix("//")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:"):
        # waiting for the lock beats failing a trial when two workers write at once
        return _rdb_with_retry(url, {"connect_args": {"timeout": 60}})
    if url.startswith(("postgresql", "mysql")):
        try:
            return _rdb_with_retry(_driver(url), {"pool_pre_ping": True})
        except ImportError as exc:
            msg = (f"storage {redact(url)} needs a database driver: {exc}; install the tune extra "
                   f"(pip install 'pueflow[tune]', which brings psycopg)")
            raise PueflowError(msg) from None
    msg = (f"storage {redact(url)!r} is not understood; use sqlite:///FILE, journal:FILE or "
           f"postgresql://USER@HOST:PORT/DB")
    raise PueflowError(msg)


def _rdb_with_retry(url: str, engine_kwargs: dict[str, Any], attempts: int = 5) -> Any:
    """RDBStorage, retried while another worker is creating the schema at the same moment.

    Workers started together on an empty database race to create Optuna's tables; the loser
    sees a unique-key violation (``alembic_version``) or "table studies already exists".
    Once the winner is done, the schema exists and a retry simply opens it.
    """
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeat_interval
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                    grace_period=STALE_AFTER_S, heartbeat_stale_trial_callback=retry_stale)
        except (IntegrityError, ProgrammingError, OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _driver(url: str) -> str:
    """``postgresql://`` with the PostgreSQL driver that is installed (psycopg 3, else psycopg2)."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    for module, scheme in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return scheme + url[len("postgresql"):]
    return url


def redact(url: str) -> str:
    """``url`` without a password (``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        if ":" in cred:
            cred = cred.split(":", 1)[0] + ":***"
        return f"{scheme}://{cred}@{host}"
    return url


def fingerprint(spec: TuneSpec, site_id: str) -> str:
    """What must not change within a study: site, objective, constraints, space, periods, policy."""
    keep = spec.model_dump(mode="json", exclude={"study", "startup_trials", "pruner", "prune_after_days",
                                                 "sampler"})
    keep["site_id"] = site_id
    return json.dumps(keep, sort_keys=True)


def digest(spec: TuneSpec, site_id: str) -> str:
    return hashlib.sha256(fingerprint(spec, site_id).encode()).hexdigest()[:16]


def default_study_name(spec: TuneSpec, site_id: str) -> str:
    """``[tune] study``, else ``pueflow-<site>-<digest of [tune]>``: the same ``[tune]`` resumes
    its study, a changed one starts a new study instead of mixing scores."""
    return spec.study or f"pueflow-{site_id}-{digest(spec, site_id)[:8]}"


def make_sampler(spec: TuneSpec, seed: int | None) -> Any:
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    kw: dict[str, Any] = {"seed": seed, "n_startup_trials": spec.startup_trials}
    if not hasattr(optuna.trial.Trial, "set_constraint"):  # Optuna < 5
        kw["constraints_func"] = constraints_of
    return optuna.samplers.TPESampler(**kw)


def make_pruner(spec: TuneSpec) -> Any:
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
    """A worker process: run trials; SIGTERM/SIGINT fail the running trial (re-run on resume)."""
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
