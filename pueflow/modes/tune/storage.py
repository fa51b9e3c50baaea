"""Where a study lives: Optuna storage urls, their local files and the workers' lock.

Storage (``--storage``):

* default ``sqlite:///<out>/tune.db`` — one machine, a few worker processes;
* ``journal:<path>`` (or a path ending ``.log`` / ``.journal``) — Optuna's append-only journal
  file, for file systems where SQLite's locking is unreliable (NFS);
* ``postgresql://user@host:port/db`` — workers on many machines join one study.

Local processes on one storage file share a lock next to it (:func:`lock_path`).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages.journal._file import BaseJournalFileLock  # the interface of its locks

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

from pueflow.exceptions import PueflowError
from pueflow.modes.tune.trials import HEARTBEAT_S, STALE_AFTER_S, retry_stale


def storage_url(storage: str | None, out: str | Path) -> str:
    """``storage`` or the default SQLite file in ``out`` (absolute, so workers agree)."""
    if storage:
        return storage
    return "sqlite:///" + str((Path(out) / "tune.db").resolve())


def storage_file(url: str) -> Path | None:
    """Return the local file of a SQLite or journal storage ``url``.

    Returns
    -------
    Path or None
        The file a ``journal:FILE``, ``FILE.log``/``FILE.journal`` or ``sqlite:///FILE``
        url names; ``None`` for a database server or an in-memory SQLite.
    """
    if url.startswith("journal:"):
        return Path(url[len("journal:"):].removeprefix("//"))
    if "://" not in url and url.endswith((".log", ".journal")):
        return Path(url)
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///"):].split("?", 1)[0])
    return None


def lock_path(url: str, out: str | Path) -> Path:
    """Return the lock local processes share for ``url``.

    It is ``<storage file>.lock`` beside a storage file, else ``out/.tune.lock``.
    Keyed on the storage file rather than the output folder, so two invocations with
    different ``--out`` but one ``--storage`` file still take turns.
    """
    f = storage_file(url)
    return f.with_name(f.name + ".lock") if f is not None else Path(out) / ".tune.lock"


def open_storage(url: str) -> Any:
    """Open an Optuna storage for ``url`` (see the module doc).

    SQLite and PostgreSQL storages record a heartbeat of every running trial
    (:data:`~pueflow.modes.tune.trials.HEARTBEAT_S`) so a dead worker's trial is found.

    Parameters
    ----------
    url : str
        ``sqlite:///FILE``, ``journal:FILE`` (or a ``.log``/``.journal`` path),
        ``postgresql://...`` or ``mysql://...``.

    Returns
    -------
    optuna.storages.BaseStorage
        A journal storage (its folder created) or an RDB storage (schema created if absent).

    Raises
    ------
    PueflowError
        The url's scheme is not one of the above, or its database driver is not installed.
    """
    journal = url[len("journal:"):] if url.startswith("journal:") else None
    if journal is None and "://" not in url and url.endswith((".log", ".journal")):
        journal = url
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = journal.removeprefix("//")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        lock = FlockJournalLock(path) if fcntl is not None else None
        return JournalStorage(JournalFileBackend(path, lock_obj=lock))
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
    msg = f"unreachable: {attempts} attempts to open {redact(url)} neither returned nor raised"
    raise AssertionError(msg)


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


class FlockJournalLock(BaseJournalFileLock):
    """The journal file's write lock, held with ``flock`` on ``<journal>.flock``.

    Optuna's own file lock is a file created exclusively and forcibly removed once it is 30 s
    old: a worker stalled that long in a write (a loaded disk, a paused process) then shares
    the journal with another, and two trials get one number. ``flock`` is never broken
    while its holder lives and is released by the system when the holder dies.
    """

    def __init__(self, journal: str):
        self.path = journal + ".flock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Block until this process holds the lock; return True."""
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Let the next writer in."""
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
