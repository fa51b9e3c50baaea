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

from pueflow.connectors.file_arrow import COLUMNS, KEY_COLUMNS, Ctx, missing_message
from pueflow.connectors.file_readers import READERS, read_ahead
from pueflow.connectors.wire import unit_ns
from pueflow.exceptions import InputFormatError
from pueflow.jit import njit
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
    """

    batch: Batch
    rows: int
    bytes_read: int
    total_bytes: int
    errors: list[tuple[int, str]] = field(default_factory=list)
    path: str = ""
    error_sites: dict[int, str] = field(default_factory=dict)

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
            if errors and "site" in hive:
                sites = {r: sites.get(r, hive["site"]) for r, _ in errors}
            yield FileChunk(batch, rows, done + min(pos, size), total, errors, str(f), sites)
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
                late_here, top = _lateness(t, top)
                late = max(late, late_here)
                if limit is not None and late > limit:
                    return None
    except (pa.ArrowException, OSError):
        return None
    return late


@njit
def _lateness(t: np.ndarray, top: int) -> tuple[int, int]:
    """Largest ``max(earlier times) - t`` [ns] over ``t`` after ``top``, and the new top."""
    late = 0
    for i in range(t.shape[0]):
        x = t[i]
        if x > top:
            top = x
        elif top - x > late:
            late = top - x
    return late, top


def _lateness_limit(pfs: list[pq.ParquetFile], mults: list[int], rows: int | None) -> int | None:
    """Time [ns] that ``rows`` readings span at the files' mean rate (None: unknown)."""
    if rows is None:
        return None
    lo, hi, n = None, None, 0
    for pf, mult in zip(pfs, mults, strict=True):
        md = pf.metadata
        ti = pf.schema_arrow.get_field_index("time")
        for i in range(md.num_row_groups):
            st = md.row_group(i).column(ti).statistics
            if st is None or not st.has_min_max or st.physical_type != "INT64":
                return None
            lo = st.min_raw * mult if lo is None else min(lo, st.min_raw * mult)
            hi = st.max_raw * mult if hi is None else max(hi, st.max_raw * mult)
        n += md.num_rows
    if lo is None or n == 0:
        return None
    return int((hi - lo) * rows / n)


# names other modules and tests import from here
_missing_message = missing_message
_read_ahead = read_ahead
__all__ = ["COLUMNS", "FORMATS", "KEY_COLUMNS", "FileChunk", "format_of", "iter_file",
           "telemetry_files", "time_lateness"]
