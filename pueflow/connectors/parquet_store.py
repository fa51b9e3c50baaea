"""The embedded default store: a hive-partitioned Parquet folder.

Layout: ``<path>/measurement=<m>/<site|scope>=<v>/date=<YYYY-MM-DD>/part-0.parquet``, one
file per partition (dates are UTC), readable with::

    pl.scan_parquet(f"{path}/measurement=kpi/**/*.parquet", hive_partitioning=True)

Writes are idempotent: :meth:`ParquetStore.flush` merges buffered rows into each
partition's file (read existing, concatenate, keep the last row per identity
(:func:`~pueflow.schema.rows.identity_columns`), sort, write a temp file, fsync, atomic
rename), so a row written twice (a retried checkpoint, a process restart, a second replay
of the same window) ends up once and the later write wins. A per-partition lock file keeps
two processes from losing each other's rows.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import polars as pl

from pueflow.exceptions import SinkError
from pueflow.schema.rows import TIME, TIME_DTYPE, identity_columns, tag_columns

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

ParquetCompression = Literal["lz4", "uncompressed", "snappy", "gzip", "brotli", "zstd"]
FILE = "part-0.parquet"
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
#: Partition files written at once by a flush.
WRITERS = 4


def partition_column(measurement: str) -> str:
    """``site`` for site-level measurements, ``scope`` for fleet aggregates."""
    return "site" if "site" in tag_columns(measurement) else "scope"


def _segment(value: Any) -> str:
    if value is None or value == "":
        return NULL_PARTITION
    return quote(str(value), safe="-_.~@+:")


class ParquetStore:
    """A :class:`~pueflow.connectors.sink.Sink` writing the hive-partitioned folder ``path``.

    Parameters
    ----------
    path : str or Path
        Root folder (created on first flush).
    name : str
        The sink's name in the config.
    compression : {"zstd", "lz4", "snappy", "gzip", "brotli", "uncompressed"}
        Parquet codec for the partition files.
    """

    def __init__(self, path: str | Path, name: str = "local", *, compression: ParquetCompression = "zstd"):
        self.path = Path(path)
        self.name = name
        self.compression = compression
        self.rows_written = 0
        self._buf: dict[str, list[pl.DataFrame]] = {}

    def __repr__(self) -> str:
        return f"ParquetStore({str(self.path)!r}, name={self.name!r})"

    def write(self, measurement: str, rows: pl.DataFrame) -> None:
        """Buffer ``rows`` (time, tag columns, field columns) until :meth:`flush`."""
        tag_columns(measurement)
        if rows.height == 0:
            return
        if TIME not in rows.columns:
            msg = f"sink {self.name!r}: {measurement} rows have no {TIME!r} column: {rows.columns}"
            raise SinkError(msg)
        self._buf.setdefault(measurement, []).append(rows)

    def flush(self) -> None:
        """Merge every buffered row into its partition file, durably.

        Raises
        ------
        SinkError
            If a partition cannot be written; the rows stay buffered, and since merging is
            idempotent the next flush simply tries again.
        """
        jobs = []
        for measurement in list(self._buf):
            df = _normalise(measurement, pl.concat(self._buf[measurement], how="diagonal_relaxed"))
            part = partition_column(measurement)
            groups = df.with_columns(pl.col(TIME).dt.date().alias("__date")).partition_by(
                [part, "__date"], as_dict=True, maintain_order=True)
            for (value, date), rows in groups.items():
                folder = (self.path / f"measurement={measurement}" / f"{part}={_segment(value)}"
                          / f"date={date.isoformat() if date else NULL_PARTITION}")
                jobs.append((measurement, folder, rows.drop("__date")))
        if not jobs:
            self._buf.clear()
            return
        # partitions are independent files and polars writes outside the GIL: in parallel
        with ThreadPoolExecutor(max_workers=min(len(jobs), WRITERS)) as pool:
            done = list(pool.map(self._try_merge, jobs))
        errors = [(m, exc) for (m, _, _), exc in zip(jobs, done, strict=True) if exc is not None]
        for measurement in list(self._buf):
            if measurement not in {m for m, _ in errors}:
                self.rows_written += sum(df.height for df in self._buf.pop(measurement))
        if errors:
            measurement, exc = errors[0]
            msg = f"sink {self.name!r}: cannot write {measurement} under {self.path}: {exc}"
            raise SinkError(msg) from exc

    def _try_merge(self, job: tuple[str, Path, pl.DataFrame]) -> Exception | None:
        try:
            self._merge(*job)
        except (OSError, pl.exceptions.PolarsError) as exc:
            return exc
        return None

    def close(self) -> None:
        """Flush; the store holds no other resources."""
        self.flush()

    def _merge(self, measurement: str, folder: Path, rows: pl.DataFrame) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / FILE
        ident = identity_columns(measurement)
        with _locked(folder / ".lock"):
            if target.exists():
                rows = pl.concat([pl.read_parquet(target), rows], how="diagonal_relaxed")
            rows = rows.unique(subset=ident, keep="last", maintain_order=True).sort(ident)
            tmp = folder / f".{FILE}.{uuid.uuid4().hex}.tmp"
            try:
                rows.write_parquet(tmp, compression=self.compression, statistics=True)
                _fsync(tmp)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            _fsync(folder)


def _normalise(measurement: str, df: pl.DataFrame) -> pl.DataFrame:
    """Bring rows to the store's column layout.

    Time becomes ns UTC; every tag column is present as text (a missing one, e.g. ``run``,
    is filled with ""), tags first; all-null field columns become Float64 so partition files
    share one schema.

    Raises
    ------
    SinkError
        If the measurement's partition column is missing.
    """
    tags = tag_columns(measurement)
    part = partition_column(measurement)
    if part not in df.columns:
        msg = f"{measurement} rows need a {part!r} column to be partitioned; got {df.columns}"
        raise SinkError(msg)
    add = [pl.lit("", pl.String).alias(t) for t in tags if t not in df.columns]
    df = df.with_columns(*add, pl.col(TIME).cast(TIME_DTYPE))
    fields = [c for c in df.columns if c != TIME and c not in tags]
    return df.select(TIME, *(pl.col(t).cast(pl.String) for t in tags),
                     *(pl.col(f).cast(pl.Float64) if df.schema[f] == pl.Null else pl.col(f)
                       for f in fields))


@contextmanager
def _locked(path: Path):
    with open(path, "a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def store_files(path: str | Path, measurement: str, **partition: Any) -> list[Path]:
    """Partition files of ``measurement``, optionally only those of one site/scope value."""
    root = Path(path) / f"measurement={measurement}"
    if not root.is_dir():
        return []
    part = partition_column(measurement)
    want = partition.get(part)
    if want is not None and not isinstance(want, list | tuple | set | frozenset):
        want = [want]
    dirs = {f"{part}={_segment(v)}" for v in want} if want is not None else None
    return [f for f in sorted(root.rglob("*.parquet"))
            if not f.name.startswith(".") and (dirs is None or f.parent.parent.name in dirs)]


def read_store(path: str | Path, measurement: str, **filters: Any) -> pl.DataFrame:
    """Rows of ``measurement`` in the store at ``path``, sorted by identity.

    ``filters`` are column == value (or column in a list/tuple/set), e.g.
    ``read_store(p, "kpi", site="tetouan-1", window="1h", run="")``. Partition files with
    different field columns are combined (missing fields are null).
    """
    files = store_files(path, measurement, **filters)
    ident = identity_columns(measurement)
    if not files:
        return pl.DataFrame(schema={TIME: TIME_DTYPE, **dict.fromkeys(ident[1:], pl.String)})
    lf = pl.concat([pl.scan_parquet(f) for f in files], how="diagonal_relaxed")
    for col, v in filters.items():
        expr = pl.col(col).is_in(list(v)) if isinstance(v, list | tuple | set | frozenset) else (
            pl.col(col).is_null() if v is None else pl.col(col) == v)
        lf = lf.filter(expr)
    return lf.sort(ident).collect()
