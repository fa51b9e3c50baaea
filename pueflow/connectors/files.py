"""Telemetry files: chunked readers into :class:`~pueflow.schema.batch.Batch` and writers.

Parquet and CSV hold the canonical long form (time, site, device, point, value); ``.jsonl``
holds Telegraf JSON (one metric or batch a line), ``.lp`` line protocol. A directory reads
every telemetry file below it in sorted path order (``key=value`` folders of a hive layout
supply ``site``/``device``/``point`` when the files lack them). Text formats may be ``.gz``.

Structural problems (missing or misnamed column, wrong type, naive or unparseable time)
raise :class:`~pueflow.exceptions.InputFormatError` naming the file, row and column. Data
problems (NaN, negative, unknown series, duplicates, disorder) are not errors here: they
flow through in the Batch and the pipeline counts them. Rows that cannot become a reading
at all (a null site, a line that does not parse) are listed in ``FileChunk.errors``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pueflow.connectors.file_arrow import (
    COLUMNS,
    KEY_COLUMNS,
    ChunkSpan,
    Ctx,
    lateness,
    missing_message,
)
from pueflow.connectors.file_readers import READERS, read_ahead
from pueflow.connectors.wire import unit_ns
from pueflow.exceptions import InputFormatError
from pueflow.schema.batch import Batch

if TYPE_CHECKING:

    from pueflow.schema.registry import Registry

_EXT = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
        ".ndjson": "jsonl", ".json": "jsonl", ".lp": "lp", ".line": "lp"}
FORMATS = ("parquet", "csv", "jsonl", "lp")
_DAY_NS = 86_400 * 10**9


@dataclass(slots=True)
class FileChunk:
    """One chunk of readings from a file source.

    Attributes
    ----------
    batch : Batch
        Readings inside the time filter, in file order.
    rows : int
        Input rows (records or lines) consumed for this chunk, filtered or not.
    bytes_read, total_bytes : int
        Progress over all files of the source [bytes]; ``fraction`` is their ratio.
    errors : list of (int, str)
        (row number in ``path``, 1-based, reason) for rows that gave no reading.
    error_sites : dict of int to str
        The site a refused row names (its ``site`` column or its ``site=`` folder), by
        row number, where there is one.
    path : str
        The file this chunk came from.
    span : ChunkSpan, optional
        Its row group and times (Parquet only), for :meth:`GraceBound.grace`.
    """

    batch: Batch
    rows: int
    bytes_read: int
    total_bytes: int
    errors: list[tuple[int, str]] = field(default_factory=list)
    path: str = ""
    error_sites: dict[int, str] = field(default_factory=dict)
    span: ChunkSpan | None = None

    @property
    def fraction(self) -> float:
        """Share of the source read so far, 0..1 (for a progress bar)."""
        return min(self.bytes_read / self.total_bytes, 1.0) if self.total_bytes else 1.0


def format_of(path: str | Path) -> str:
    """``parquet``, ``csv``, ``jsonl`` or ``lp`` from the file name (``.gz`` allowed for text)."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _EXT.get(suffixes[-1]) if suffixes else None
    if fmt is None or (fmt == "parquet" and p.suffix.lower() == ".gz"):
        msg = ("unknown telemetry file type; name it .parquet, .csv, .jsonl or .lp "
               "(text formats may end in .gz)")
        raise InputFormatError(str(path), msg)
    return fmt


def telemetry_files(path: str | Path) -> list[Path]:
    """List the file itself, or every telemetry file below a directory in path order.

    Hidden and ``_``-prefixed entries, such as temp files, are skipped.
    """
    p = Path(path)
    if p.is_file():
        format_of(p)
        return [p]
    if not p.is_dir():
        raise InputFormatError(str(p), "no such file or directory")
    out = []
    for f in sorted(p.rglob("*")):
        rel = f.relative_to(p).parts
        if f.is_file() and not any(s.startswith((".", "_")) for s in rel):
            try:
                format_of(f)
            except InputFormatError:
                continue
            out.append(f)
    if not out:
        raise InputFormatError(str(p), "directory holds no .parquet/.csv/.jsonl/.lp files")
    return out


def _hive(f: Path, root: Path) -> dict[str, str]:
    """``site=…``/``device=…``/``point=…`` folder names between ``root`` and ``f``."""
    out = {}
    for part in f.relative_to(root).parts[:-1] if f != root else ():
        k, eq, v = part.partition("=")
        if eq and k in KEY_COLUMNS:
            out[k] = v
    return out


def _may_hold(f: Path, root: Path, lo: int | None, hi: int | None) -> bool:
    """Return False for a file under a ``date=YYYY-MM-DD`` folder well outside the window.

    A day of margin each side, in case the partition date is local rather than UTC.
    """
    if (lo is None and hi is None) or f == root:
        return True
    for part in f.relative_to(root).parts[:-1]:
        k, eq, v = part.partition("=")
        if eq and k == "date":
            try:
                day = date.fromisoformat(v)
            except ValueError:
                return True
            start = (day - date(1970, 1, 1)).days * _DAY_NS
            return not ((hi is not None and start - _DAY_NS >= hi)
                        or (lo is not None and start + 2 * _DAY_NS <= lo))
    return True


def iter_file(path: str | Path, registry: Registry, *, chunk_rows: int = 1_000_000,
              time_from_ns: int | None = None, time_to_ns: int | None = None,
              timestamp_unit: str = "ns", json_timestamp_unit: str | None = None
              ) -> Iterator[FileChunk]:
    """Stream a telemetry file or directory as Batches of at most ``chunk_rows`` rows.

    Parameters
    ----------
    path : str or Path
        A file (format from its extension) or a directory of them.
    registry : Registry
        Maps (site, device, point) to series ids; its ``scale`` applies to wire formats
        (JSON, line protocol) only, as in consume mode.
    chunk_rows : int
        Rows (or lines) read at a time; memory stays bounded by it.
    time_from_ns, time_to_ns : int, optional
        Keep readings with ``time_from_ns <= time < time_to_ns`` [ns since epoch, UTC].
        Parquet row groups wholly outside are not read.
    timestamp_unit : {"s", "ms", "us", "ns"}
        Unit of integer epoch times (integer ``time`` columns, and JSON timestamps unless
        ``json_timestamp_unit`` is given).
    json_timestamp_unit : str, optional
        Unit of Telegraf JSON timestamps (s, ms, us, ns or a duration such as ``10ms``).

    Rows whose time lies outside 1970..2260 give no reading and are listed in the chunk's
    errors (they would overflow the pipeline's time arithmetic).
    """
    root = Path(path)
    files = [f for f in telemetry_files(root) if _may_hold(f, root, time_from_ns, time_to_ns)]
    sizes = [f.stat().st_size for f in files]
    total, done = sum(sizes), 0
    ctx = Ctx(registry, max(int(chunk_rows), 1), time_from_ns, time_to_ns, timestamp_unit,
               json_timestamp_unit or timestamp_unit)
    for f, size in zip(files, sizes, strict=True):
        reader = READERS[format_of(f)]
        hive = _hive(f, root) if root.is_dir() else {}
        for batch, rows, pos, errors in reader(f, ctx, hive):
            sites, ctx.error_sites = ctx.error_sites, {}
            span, ctx.span = ctx.span, None
            if errors and "site" in hive:
                sites = {r: sites.get(r, hive["site"]) for r, _ in errors}
            yield FileChunk(batch, rows, done + min(pos, size), total, errors, str(f), sites,
                            span)
        done += size


def time_lateness(paths: list[str | Path], chunk_rows: int = 1_000_000,
                  max_rows_behind: int | None = None) -> int | None:
    """How far behind the latest earlier reading a reading of ``paths`` can be [ns].

    ``0`` means time-ordered; a small value means nearly ordered (a few late readings, as
    in most exports). Reads only the ``time`` column of Parquet files, a chunk at a time,
    in :func:`iter_file` order. ``None`` when the input is not all Parquet with a ``time``
    column (text formats would need a full parse), or as soon as the lateness spans more
    than ``max_rows_behind`` readings at the input's mean rate (from row-group
    statistics): a series-major file is given up on after its first two series.
    """
    opened = _parquet_files(paths)
    if opened is None:
        return None
    _, pfs, mults = opened
    limit = _lateness_limit(pfs, mults, max_rows_behind)
    top, late = np.iinfo(np.int64).min, 0
    try:
        for pf, mult in zip(pfs, mults, strict=True):
            for rb in pf.iter_batches(batch_size=max(int(chunk_rows), 1), columns=["time"]):
                c = rb.column(0)
                if c.null_count:
                    return None
                t = c.cast(pa.int64()).to_numpy(zero_copy_only=False)
                if not len(t):
                    continue
                if mult != 1:
                    t = t * mult
                late_here, top = lateness(t, top)
                late = max(late, late_here)
                if limit is not None and late > limit:
                    return None
    except (pa.ArrowException, OSError):
        return None
    return late


def _parquet_files(paths: list[str | Path]
                   ) -> tuple[list[Path], list[pq.ParquetFile], list[int]] | None:
    """Open the files of ``paths`` in :func:`iter_file` order; also their time units [ns].

    None unless all are Parquet with a ``time`` column.
    """
    files = [f for p in paths for f in telemetry_files(p)]
    if any(format_of(f) != "parquet" for f in files):
        return None
    try:
        pfs = [pq.ParquetFile(f) for f in files]
    except (pa.ArrowException, OSError):
        return None  # the reader names the file and the problem
    if any("time" not in pf.schema_arrow.names for pf in pfs):
        return None
    mults = [unit_ns(t.unit) if pa.types.is_timestamp(t) else 1
             for t in (pf.schema_arrow.field("time").type for pf in pfs)]
    return files, pfs, mults


class GraceBound:
    """A grace per chunk with which no reading of a Parquet input is late, from statistics.

    A reading screened with grace ``g`` moves its site's watermark to at most its time
    minus ``g``; a later reading is late only below that. So a chunk's grace must cover
    how far any later reading trails one of the chunk's: within the chunk, its exact
    lateness (:attr:`ChunkSpan.late_ns`, measured where it was decoded); beyond it, the
    chunk's latest time minus the earliest time of every row group still to come (from the
    row-group statistics: a lower bound of what those groups hold). Nothing of the input
    is read ahead of the replay itself.

    Built by :func:`grace_bound`; feed it the chunks of :func:`iter_file` over the same
    paths, in order.
    """

    def __init__(self, keys: list[tuple[str, int]], after: np.ndarray, bound_ns: int):
        self._index: dict[tuple[str, int], list[int]] = {}
        for i, k in enumerate(keys):
            self._index.setdefault(k, []).append(i)
        #: earliest time of row group i and of every group after it [ns]
        self._after = after
        self._at = 0
        #: the largest grace any chunk can be given [ns] (what the memory check used)
        self.bound_ns = bound_ns

    def grace(self, chunk: FileChunk) -> int:
        """Grace [ns] for ``chunk``: no reading from it on is late by its watermarks."""
        span = chunk.span
        if span is None:
            return self.bound_ns
        i = next((j for j in self._index.get((chunk.path, span.group), ()) if j >= self._at),
                 None)
        if i is None:  # not a chunk of the input it was built for: the safe bound
            return self.bound_ns
        self._at = i + 1 if span.group_done else i
        later = i + 1 if span.group_done else i  # a group's next chunks: its own minimum
        g = span.late_ns
        if later < len(self._after) and span.t_max > np.iinfo(np.int64).min:
            g = max(g, span.t_max - int(self._after[later]))
        return max(g, 0)


def grace_bound(paths: list[str | Path], max_rows_behind: int) -> GraceBound | None:
    """Build a :class:`GraceBound` for ``paths`` if its grace fits ``max_rows_behind`` readings.

    Reads only the Parquet footers. The largest grace it can give is the largest
    ``max(latest time of groups 1..g) - min(earliest time of groups g..)`` over the row
    groups ``g`` in :func:`iter_file` order; None when that spans more than
    ``max_rows_behind`` readings at the input's mean rate, or the input is not all Parquet
    with time statistics (then :func:`time_lateness` reads the times).
    """
    opened = _parquet_files(paths)
    if opened is None:
        return None
    files, pfs, mults = opened
    times = _group_times(pfs, mults)
    limit = _lateness_limit(pfs, mults, max_rows_behind)
    if times is None or limit is None:
        return None
    lo, hi = times
    if not len(lo):
        return None
    keys = [(str(f), g) for f, pf in zip(files, pfs, strict=True)
            for g in range(pf.metadata.num_row_groups)]
    after = np.minimum.accumulate(lo[::-1])[::-1]
    bound = int(max((np.maximum.accumulate(hi) - after).max(), 0))
    return GraceBound(keys, after, bound) if bound <= limit else None


def _group_times(pfs: list[pq.ParquetFile], mults: list[int]
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """Earliest and latest time [ns] of each row group, files in order (None: no statistics)."""
    lo, hi = [], []
    for pf, mult in zip(pfs, mults, strict=True):
        md = pf.metadata
        ti = pf.schema_arrow.get_field_index("time")
        for i in range(md.num_row_groups):
            st = md.row_group(i).column(ti).statistics
            if st is None or not st.has_min_max or st.physical_type != "INT64":
                return None
            lo.append(st.min_raw * mult)
            hi.append(st.max_raw * mult)
    return np.array(lo, np.int64), np.array(hi, np.int64)


def _lateness_limit(pfs: list[pq.ParquetFile], mults: list[int], rows: int | None) -> int | None:
    """Time [ns] that ``rows`` readings span at the files' mean rate (None: unknown)."""
    if rows is None:
        return None
    times = _group_times(pfs, mults)
    n = sum(pf.metadata.num_rows for pf in pfs)
    if times is None or not len(times[0]) or n == 0:
        return None
    return int((int(times[1].max()) - int(times[0].min())) * rows / n)


# names other modules and tests import from here
_missing_message = missing_message
_read_ahead = read_ahead
__all__ = ["COLUMNS", "FORMATS", "KEY_COLUMNS", "FileChunk", "GraceBound", "format_of",
           "grace_bound", "iter_file", "telemetry_files", "time_lateness"]
