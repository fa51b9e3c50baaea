"""Event-time order for replay: put a file's readings in time order within a memory budget.

A telemetry file is complete history, often series-major (each meter's whole history in
turn). :class:`EventOrder` takes decoded chunks in any order and hands them back sorted by
(time, series, value), so the core sees one time-ordered stream whatever the file's order.

Pass 1 buffers readings per UTC day slice. While the buffer fits the budget nothing touches
the disk (a file that fits in memory is sorted there; a time-ordered one is not even
sorted again). Past the budget the buffered slices are written, sorted, as Parquet files
under the spill folder (one sub-folder per slice). Pass 2 reads the slices in time order;
a slice bigger than the budget is read in time sub-ranges (row-group statistics skip the
rest). Memory stays near the budget, not the file's length or disorder.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pueflow.exceptions import PueflowError
from pueflow.schema.batch import Batch

NS = 10**9
#: Width of a spill slice [ns]: a UTC day.
SLICE_NS = 86_400 * NS
#: Bytes a reading takes in a Batch (int64 time, int32 series, float64 value).
BYTES_PER_READING = 20
#: Rows per Parquet row group in the spill (small enough to skip by time statistics).
ROW_GROUP = 65_536


class SpillError(PueflowError):
    """The spill folder could not be written (full disk, no permission)."""


@dataclass
class OrderedChunk:
    """A time-ordered piece of the input for :func:`~pueflow.modes.replay.replay_batches`."""

    batch: Batch
    errors: list[tuple[int, str]] | None = None
    path: str = ""
    error_sites: dict[int, str] | None = None


def time_sorted(batch: Batch) -> Batch:
    """``batch`` in non-decreasing time order (a stable sort; ``batch`` itself if already).

    The order of readings that share a time does not matter to the core: screening of one
    reading depends only on earlier times of its site, and duplicates of one (series, time)
    are all released together and deduplicated by value, so no finer order is needed.
    """
    t = batch.time_ns
    if len(t) < 2 or not (t[1:] < t[:-1]).any():
        return batch  # already time-ordered
    return batch.take(np.argsort(t, kind="stable"))


@dataclass
class EventOrder:
    """Two-pass reorder of readings into event-time order within ``memory_mb``.

    Parameters
    ----------
    memory_mb : float
        Budget [MiB] for buffered readings (pass 1) and for one piece of a slice (pass 2).
    spill_dir : path, optional
        Parent folder of the spill (default: the system temp folder). A fresh sub-folder
        is created there only if the budget is exceeded, and removed by :meth:`close`.
    chunk_rows : int
        Most readings per chunk handed to the core in pass 2.
    """

    memory_mb: float = 1024.0
    spill_dir: str | Path | None = None
    chunk_rows: int = 1_000_000
    rows: dict[int, int] = field(default_factory=dict)
    folder: Path | None = None
    monotonic: bool = True
    _buf: dict[int, list[Batch]] = field(default_factory=dict)
    _buffered: int = 0
    _files: int = 0
    _last_t: int = np.iinfo(np.int64).min
    errors: list[tuple[str, list[tuple[int, str]], dict[int, str]]] = field(default_factory=list)

    @property
    def budget_rows(self) -> int:
        """Readings [count] the budget holds."""
        return max(int(self.memory_mb * 2**20 // BYTES_PER_READING), 1)

    @property
    def spilled(self) -> bool:
        """Did pass 1 write anything to disk."""
        return self.folder is not None

    def add(self, chunk: Any) -> None:
        """Pass 1: take one decoded chunk (``.batch``, optional ``.errors`` and ``.path``)."""
        if getattr(chunk, "errors", None):
            self.errors.append((getattr(chunk, "path", ""), list(chunk.errors),
                                dict(getattr(chunk, "error_sites", None) or {})))
        b: Batch = chunk.batch
        if not len(b):
            return
        t = b.time_ns
        if self.monotonic and (t[0] < self._last_t or np.any(t[1:] < t[:-1])):
            self.monotonic = False
        self._last_t = max(self._last_t, int(t.max()))
        key = t // SLICE_NS
        if key[0] == key[-1] and (self.monotonic or np.all(key == key[0])):
            groups = [(int(key[0]), b)]
        else:
            order = np.argsort(key, kind="stable")
            ks = key[order]
            cut = np.flatnonzero(ks[1:] != ks[:-1]) + 1
            groups = [(int(ks[i]), b.take(idx))
                      for i, idx in zip(np.r_[0, cut], np.split(order, cut), strict=True)]
        for k, g in groups:
            self._buf.setdefault(k, []).append(g)
            self.rows[k] = self.rows.get(k, 0) + len(g)
        self._buffered += len(b)
        if self._buffered > self.budget_rows:
            self._flush()

    def _flush(self) -> None:
        if self.folder is None:
            parent = Path(self.spill_dir) if self.spill_dir else Path(tempfile.gettempdir())
            try:
                parent.mkdir(parents=True, exist_ok=True)
                self.folder = Path(tempfile.mkdtemp(prefix="pueflow-spill-", dir=parent))
            except OSError as exc:
                msg = f"cannot create the replay spill folder in {parent}: {exc}; pass --spill-dir"
                raise SpillError(msg) from exc
        for k, parts in self._buf.items():
            b = time_sorted(Batch.concat(parts))
            d = self.folder / f"{k}"
            path = d / f"part-{self._files}.parquet"
            self._files += 1
            try:
                d.mkdir(exist_ok=True)
                pl.DataFrame({"time_ns": b.time_ns, "series": b.series, "value": b.value}
                             ).write_parquet(path, row_group_size=ROW_GROUP, statistics=True)
            except (OSError, pl.exceptions.PolarsError) as exc:
                # polars reports an I/O failure as a ComputeError naming the OS error
                nospc = getattr(exc, "errno", None) == errno.ENOSPC or "os error 28" in str(exc)
                full = " (disk full)" if nospc else ""
                msg = (f"replay spill{full}: cannot write {path} under the spill folder "
                       f"{self.folder}: {exc}; free space there or pass --spill-dir, or raise "
                       f"--memory-mb")
                raise SpillError(msg) from exc
        self._buf = {}
        self._buffered = 0

    def chunks(self) -> Iterator[OrderedChunk]:
        """Pass 2: the readings in time order, in chunks of at most ``chunk_rows``."""
        for path, errors, sites in self.errors:  # decode errors first: time unknown
            yield OrderedChunk(Batch.empty(), errors, path, sites)
        if not self.spilled:
            parts = [b for k in sorted(self._buf) for b in self._buf[k]]
            self._buf = {}
            b = Batch.concat(parts)
            b = b if self.monotonic else time_sorted(b)
            yield from (OrderedChunk(p) for p in b.split(self.chunk_rows))
            return
        self._flush()
        for k in sorted(self.rows):
            yield from (OrderedChunk(p) for p in self._slice(k))

    def _slice(self, k: int) -> Iterator[Batch]:
        if self.folder is None:  # only a spilled slice is read back
            msg = f"slice {k} was never spilled; nothing to read back"
            raise SpillError(msg)
        files = sorted(str(f) for f in (self.folder / f"{k}").glob("*.parquet"))
        pieces = -(-self.rows[k] // self.budget_rows)
        lo = k * SLICE_NS
        step = -(-SLICE_NS // pieces)
        scan = pl.scan_parquet(files)
        for j in range(pieces):
            a, z = lo + j * step, min(lo + (j + 1) * step, lo + SLICE_NS)
            df = scan.filter((pl.col("time_ns") >= a) & (pl.col("time_ns") < z)).collect()
            if df.height:
                b = time_sorted(Batch(df["time_ns"].to_numpy(), df["series"].to_numpy(),
                                      df["value"].to_numpy()))
                del df
                yield from b.split(self.chunk_rows)

    def close(self) -> None:
        """Remove the spill folder (safe to call again)."""
        self._buf = {}
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def event_ordered(source: Iterable[Any], order: EventOrder) -> Iterator[OrderedChunk]:
    """Run pass 1 over ``source`` (decoded chunks), then yield pass 2's ordered chunks."""
    for chunk in source:
        order.add(chunk)
    yield from order.chunks()
