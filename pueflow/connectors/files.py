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

import difflib
import gzip
import io
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from pueflow.connectors.wire import decode_json, decode_line_text, unit_ns
from pueflow.connectors.wire_base import MAX_TIME_NS, MIN_TIME_NS, time_range_reason
from pueflow.exceptions import InputFormatError
from pueflow.schema.batch import Batch

if TYPE_CHECKING:

    from pueflow.schema.registry import Registry

T = TypeVar("T")
COLUMNS = ("time", "site", "device", "point", "value")
KEY_COLUMNS = ("site", "device", "point")
_EXT = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
        ".ndjson": "jsonl", ".json": "jsonl", ".lp": "lp", ".line": "lp"}
FORMATS = ("parquet", "csv", "jsonl", "lp")
_SYNONYMS = {"timestamp": "time", "ts": "time", "datetime": "time", "time_ns": "time",
             "date": "time", "site_id": "site", "device_id": "device", "meter": "device",
             "field": "point", "metric": "point", "measurement": "point", "val": "value",
             "reading": "value"}
_EXPECTED = "expected columns " + ", ".join(COLUMNS)
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
    path : str
        The file this chunk came from.
    """

    batch: Batch
    rows: int
    bytes_read: int
    total_bytes: int
    errors: list[tuple[int, str]] = field(default_factory=list)
    path: str = ""

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
    """The file itself, or every telemetry file below a directory in sorted path order
    (hidden and ``_``-prefixed entries, such as temp files, are skipped)."""
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
    """False for a file under a ``date=YYYY-MM-DD`` folder well outside the window (a day
    of margin each side, in case the partition date is local rather than UTC)."""
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
    ctx = _Ctx(registry, max(int(chunk_rows), 1), time_from_ns, time_to_ns, timestamp_unit,
               json_timestamp_unit or timestamp_unit)
    for f, size in zip(files, sizes, strict=True):
        reader = _READERS[format_of(f)]
        for batch, rows, pos, errors in reader(f, ctx, _hive(f, root) if root.is_dir() else {}):
            yield FileChunk(batch, rows, done + min(pos, size), total, errors, str(f))
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
                run = np.maximum.accumulate(t)
                np.maximum(run, top, out=run)
                late = max(late, int((run - t).max()))
                top = int(run[-1])
                if limit is not None and late > limit:
                    return None
    except (pa.ArrowException, OSError):
        return None
    return late


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


# --------------------------------------------------------------------------- shared


class _Ctx:
    """What every reader of one ``iter_file`` call shares."""

    def __init__(self, registry: Registry, chunk_rows: int, lo: int | None, hi: int | None,
                 unit: str, json_unit: str):
        self.registry, self.chunk_rows, self.lo, self.hi = registry, chunk_rows, lo, hi
        self.unit, self.mult = unit, unit_ns(unit)
        self.json_unit = json_unit
        unit_ns(json_unit)
        self.keys = _Keys(registry)

    def window(self, batch: Batch) -> Batch:
        if self.lo is None and self.hi is None:
            return batch
        t = batch.time_ns
        keep = np.ones(len(t), np.bool_)
        if self.lo is not None:
            keep &= t >= self.lo
        if self.hi is not None:
            keep &= t < self.hi
        return batch if keep.all() else batch.take(keep)


class _Keys:
    """Dictionary-encoded (site, device, point) columns -> series ids.

    A dense lookup table over the product of the three dictionaries turns the index
    columns into ids with one gather; it is rebuilt only when a dictionary changes and
    Python only touches keys not seen before.
    """

    MAX_LUT = 1 << 25

    def __init__(self, registry: Registry):
        self.registry = registry
        self._dicts: tuple[pa.Array, ...] | None = None
        self._values: list[list[str]] = []
        self._lut: np.ndarray | None = None
        self._shape = (0, 0, 0)

    def series(self, cols: list[pa.DictionaryArray]) -> np.ndarray:
        dicts = tuple(c.dictionary for c in cols)
        if self._dicts is None or not all(a.equals(b) for a, b in zip(dicts, self._dicts, strict=True)):
            self._dicts = dicts
            self._values = [d.to_pylist() for d in dicts]
            self._shape = tuple(len(d) for d in dicts)
            size = self._shape[0] * self._shape[1] * self._shape[2]
            self._lut = np.full(size, -1, np.int32) if size <= self.MAX_LUT else None
        ns, nd, np_ = self._shape
        idx = [c.indices.to_numpy(zero_copy_only=False) for c in cols]
        if self._lut is None:
            code = (idx[0].astype(np.int64) * nd + idx[1]) * np_ + idx[2]
            uniq, inv = np.unique(code, return_inverse=True)
            return self._ids(uniq)[inv]
        code = idx[0].astype(np.int32) * np.int32(nd * np_)
        code += idx[1].astype(np.int32, copy=False) * np.int32(np_)
        code += idx[2]
        sid = self._lut.take(code)
        miss = sid < 0
        if miss.any():  # keys not seen before: one mark per distinct code, no sort
            seen = np.zeros(len(self._lut), np.bool_)
            seen[code[miss]] = True
            new = np.flatnonzero(seen)
            self._lut[new] = self._ids(new)
            sid = self._lut.take(code)
        return sid

    def _ids(self, codes: np.ndarray) -> np.ndarray:
        _, nd, np_ = self._shape
        s, rem = np.divmod(codes.astype(np.int64), nd * np_)
        d, p = np.divmod(rem, np_)
        S, D, P = self._values
        reg = self.registry
        return np.fromiter((reg.id(S[a], D[b], P[c]) for a, b, c in
                            zip(s.tolist(), d.tolist(), p.tolist(), strict=True)),
                           np.int32, count=len(codes))


def _missing_message(missing: list[str], names: list[str]) -> str:
    extra = [n for n in names if n not in COLUMNS]
    parts = []
    for m in missing:
        near = [n for n in extra if _SYNONYMS.get(n.lower()) == m or n.lower() == m]
        near = near or difflib.get_close_matches(m, extra, n=1, cutoff=0.5)
        hint = f"; did you mean {near[0]!r}? rename it to {m!r}" if near else ""
        parts.append(f"column {m!r} not found{hint}")
    return f"{'; '.join(parts)}. {_EXPECTED} (file has: {', '.join(names)})"


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _check_schema(path: Path, schema: pa.Schema, hive: dict[str, str]) -> None:
    names = schema.names
    missing = [c for c in COLUMNS if c not in names and c not in hive]
    if missing:
        raise InputFormatError(str(path), _missing_message(missing, names), column=missing[0])
    t = schema.field("time").type
    if pa.types.is_timestamp(t):
        if t.tz is None:
            msg = (f"time column holds timestamps without a time zone ({t}); pueflow reads "
                   "event time as UTC, so write it time-zone aware, e.g. polars "
                   "pl.col('time').dt.replace_time_zone('UTC') or pandas .dt.tz_localize('UTC')")
            raise InputFormatError(str(path), msg, column="time")
    elif not pa.types.is_integer(t):
        msg = (f"time column has type {t}; expected Datetime[ns, UTC] "
               "(or integer epoch time in timestamp_unit)")
        raise InputFormatError(str(path), msg, column="time")
    for k in KEY_COLUMNS:
        if k in names:
            kt = schema.field(k).type
            kt = kt.value_type if pa.types.is_dictionary(kt) else kt
            if not _is_text(kt):
                msg = f"{k} column has type {kt}; expected strings (ids as text)"
                raise InputFormatError(str(path), msg, column=k)
    v = schema.field("value").type
    if not (pa.types.is_floating(v) or pa.types.is_integer(v) or pa.types.is_decimal(v)):
        msg = (f"value column has type {v}; values must be numbers (float64), e.g. "
               "pl.col('value').cast(pl.Float64) before writing")
        raise InputFormatError(str(path), msg, column="value")


def _time_ns(path: Path, col: pa.Array, offset: int, mult: int) -> tuple[np.ndarray, np.ndarray]:
    """Times [ns] and a mask of those inside 1970..2260."""
    if col.null_count:
        first = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        msg = "time is empty; every reading needs an event time"
        raise InputFormatError(str(path), msg, row=offset + first + 1, column="time")
    if pa.types.is_timestamp(col.type):
        mult = unit_ns(col.type.unit)
        col = col.cast(pa.int64())
    t = col.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    # range checked in the file's unit: multiplying first could wrap past int64
    ok = (t >= -(-MIN_TIME_NS // mult)) & (t < -(-MAX_TIME_NS // mult))
    return np.where(ok, t, 0) * mult if mult != 1 else t, ok


def _to_batch(path: Path, rb: pa.RecordBatch, offset: int, ctx: _Ctx, hive: dict[str, str],
              errors: list[tuple[int, str]]) -> Batch:
    """Arrow rows of the canonical form -> Batch; rows with a null key are reported."""
    n = rb.num_rows
    names = rb.schema.names
    time_ns, t_ok = _time_ns(path, rb.column("time"), offset, ctx.mult)
    cols, bad = [], None
    if not t_ok.all():
        bad = ~t_ok
        raw = rb.column("time").cast(pa.int64()).to_numpy(zero_copy_only=False)
        for r in np.flatnonzero(bad):
            past = MIN_TIME_NS - 1 if raw[r] < 0 else MAX_TIME_NS
            errors.append((offset + int(r) + 1, time_range_reason(past, str(raw[r]), ctx.mult)))
    for k in KEY_COLUMNS:
        if k in names:
            c = rb.column(k)
            c = c if pa.types.is_dictionary(c.type) else pc.dictionary_encode(c)
        else:
            c = pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), pa.array([hive[k]]))
        if c.null_count:
            m = c.is_null().to_numpy(zero_copy_only=False)
            for r in np.flatnonzero(m):
                errors.append((offset + int(r) + 1, f"{k} is empty (null); row skipped"))
            bad = m if bad is None else bad | m
            c = pa.DictionaryArray.from_arrays(pc.fill_null(c.indices, 0), c.dictionary)
        cols.append(c)
    v = rb.column("value")
    if not pa.types.is_float64(v.type):
        v = v.cast(pa.float64(), safe=False)
    if v.null_count:
        v = pc.fill_null(v, np.nan)
    batch = Batch(time_ns, ctx.keys.series(cols), v.to_numpy(zero_copy_only=False))
    if bad is not None:
        batch = batch.take(~bad)
        errors.sort()
    return ctx.window(batch)


# --------------------------------------------------------------------------- parquet


def _read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield ``items`` while a thread produces the next ``depth`` of them, so file decoding
    overlaps whatever the caller does with the current one. Errors surface in order."""
    q: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, done))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            put((False, exc))

    thread = threading.Thread(target=work, name="pueflow-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _row_groups(pf: pq.ParquetFile, ctx: _Ctx) -> Iterator[tuple[int, int]]:
    """(row group, first row) of the groups that may hold readings in the window."""
    md = pf.metadata
    t_type = pf.schema_arrow.field("time").type
    ti = pf.schema_arrow.get_field_index("time")
    mult = unit_ns(t_type.unit) if pa.types.is_timestamp(t_type) else ctx.mult
    offset = 0
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        keep = True
        st = rg.column(ti).statistics if ctx.lo is not None or ctx.hi is not None else None
        if st is not None and st.has_min_max and st.physical_type == "INT64":
            lo, hi = st.min_raw * mult, st.max_raw * mult
            keep = not ((ctx.hi is not None and lo >= ctx.hi) or (ctx.lo is not None and hi < ctx.lo))
        if keep:
            yield i, offset
        offset += rg.num_rows


def _read_parquet(path: Path, ctx: _Ctx, hive: dict[str, str]):
    try:
        names = pq.read_schema(path).names
        pf = pq.ParquetFile(path, read_dictionary=[k for k in KEY_COLUMNS if k in names])
    except (pa.ArrowException, OSError) as exc:
        raise InputFormatError(str(path), f"not a readable Parquet file: {exc}") from None
    schema = pf.schema_arrow
    _check_schema(path, schema, hive)
    columns = [c for c in COLUMNS if c in schema.names]
    total = max(pf.metadata.num_rows, 1)
    size = path.stat().st_size
    def batches() -> Iterator[tuple[pa.RecordBatch, int]]:
        for rg, offset in _row_groups(pf, ctx):
            for rb in pf.iter_batches(batch_size=ctx.chunk_rows, row_groups=[rg], columns=columns):
                yield rb, offset
                offset += rb.num_rows

    # decoding (pyarrow, GIL released) runs ahead on a thread; ids are assigned here
    for rb, offset in _read_ahead(batches()):
        errors: list[tuple[int, str]] = []
        batch = _to_batch(path, rb, offset, ctx, hive, errors)
        yield batch, rb.num_rows, size * (offset + rb.num_rows) // total, errors


# --------------------------------------------------------------------------- csv

_CSV_CONV = re.compile(r"In CSV column #(\d+)")


def _csv_header(path: Path) -> tuple[list[str], str]:
    with _open_binary(path)[0] as f:
        header = f.readline().decode("utf-8-sig").strip()
        first = f.readline().decode("utf-8", "replace").strip()
    names = [h.strip().strip('"') for h in header.split(",")] if header else []
    values = first.split(",")
    time_first = values[names.index("time")].strip('"') if "time" in names and len(values) == len(names) else ""
    return names, time_first


def _read_csv(path: Path, ctx: _Ctx, hive: dict[str, str]):
    names, time_first = _csv_header(path)
    missing = [c for c in COLUMNS if c not in names and c not in hive]
    if missing:
        raise InputFormatError(str(path), _missing_message(missing, names), column=missing[0])
    int_time = bool(re.fullmatch(r"-?\d+", time_first))
    types = {"time": pa.int64() if int_time else pa.timestamp("ns", "UTC"),
             "value": pa.float64(), **{k: pa.string() for k in KEY_COLUMNS}}
    present = [c for c in COLUMNS if c in names]
    bad_rows: list[tuple[int, str]] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        where = (row.number - 1) if row.number is not None else -1
        bad_rows.append((where, f"expected {row.expected_columns} fields, got "
                                f"{row.actual_columns}: {row.text[:80]!r}"))
        return "skip"

    convert = pcsv.ConvertOptions(column_types=types, include_columns=present,
                                  null_values=[""], strings_can_be_null=False)
    block = int(min(max(ctx.chunk_rows * 48, 1 << 16), 64 << 20))
    raw = pa.OSFile(str(path))
    stream = pa.CompressedInputStream(raw, "gzip") if path.suffix.lower() == ".gz" else raw
    offset = 0
    with raw:
        try:  # opening already converts the first block
            reader = pcsv.open_csv(stream, convert_options=convert,
                                   read_options=pcsv.ReadOptions(block_size=block, use_threads=False),
                                   parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid))
        except pa.ArrowInvalid as exc:
            raise _csv_error(path, exc, names, present, offset, types) from None
        while True:
            try:
                rb = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise _csv_error(path, exc, names, present, offset, types) from None
            for a in range(0, rb.num_rows, ctx.chunk_rows):
                part = rb.slice(a, ctx.chunk_rows)
                # skipped rows (wrong field count) reported while this block was parsed;
                # row numbers of the rows after them are exact up to that interleaving
                n_bad = sum(1 for r, _ in bad_rows if r <= offset + part.num_rows + len(bad_rows))
                errors = bad_rows[:n_bad]
                del bad_rows[:n_bad]
                batch = _to_batch(path, part, offset + n_bad, ctx, hive, errors)
                offset += part.num_rows + n_bad
                yield batch, part.num_rows + n_bad, raw.tell(), errors
        if bad_rows:  # rows skipped after the last good one (or a file of only bad rows)
            yield Batch.empty(), len(bad_rows), raw.tell(), list(bad_rows)


def _csv_error(path: Path, exc: pa.ArrowInvalid, names: list[str], present: list[str],
               offset: int, types: dict[str, pa.DataType]) -> InputFormatError:
    """Find the row and column behind a CSV conversion error (re-reads as text)."""
    m = _CSV_CONV.search(str(exc))
    if m is None:
        return InputFormatError(str(path), f"cannot read CSV: {exc}")
    k = int(m.group(1))  # the column's position in the file, not in include_columns
    column = names[k] if k < len(names) else "?"
    if column not in types:
        return InputFormatError(str(path), f"cannot read CSV: {exc}", column=column)
    convert = pcsv.ConvertOptions(column_types=dict.fromkeys(present, pa.string()),
                                  include_columns=[column], null_values=[""])
    read = pcsv.ReadOptions(skip_rows_after_names=offset, use_threads=False)
    parse = pcsv.ParseOptions(invalid_row_handler=lambda _row: "skip")
    row = offset
    for rb in pcsv.open_csv(str(path), read_options=read, convert_options=convert,
                            parse_options=parse):
        col = rb.column(0)
        bad = _first_bad(col, types[column])
        if bad is not None:
            text = col[bad].as_py()
            return InputFormatError(str(path), _bad_value_message(column, text, row + bad + 2),
                                    row=row + bad + 1, column=column)
        row += rb.num_rows
    return InputFormatError(str(path), f"cannot read CSV: {exc}", column=column)


def _first_bad(col: pa.Array, to: pa.DataType) -> int | None:
    """Index of the first value that does not convert (bisection over vectorised casts)."""
    def ok(a: pa.Array) -> bool:
        try:
            a.cast(to)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False
        return True

    if ok(col):
        return None
    lo, hi = 0, len(col)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(col.slice(lo, mid - lo)):
            lo = mid
        else:
            hi = mid
    return lo


def _bad_value_message(column: str, text: str, line: int) -> str:
    if column == "time":
        try:
            pa.array([text]).cast(pa.timestamp("ns"))
        except pa.ArrowInvalid:
            return (f"cannot parse time {text!r} (line {line}); write ISO 8601 with an "
                    "offset, e.g. 2024-05-01T12:00:00Z")
        return (f"time {text!r} has no time zone (line {line}); pueflow reads event time as "
                "UTC: write it with an offset, e.g. 2024-05-01T12:00:00Z")
    if column == "value":
        return (f"value {text!r} is not a number (line {line}); the value column must hold "
                "numbers (float64)")
    return f"cannot read {text!r} (line {line})"


# --------------------------------------------------------------------------- text formats


def _open_binary(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(reader, underlying raw file for progress)."""
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller through the reader
    if path.suffix.lower() == ".gz":
        return io.BufferedReader(gzip.GzipFile(fileobj=raw), 1 << 20), raw
    return raw, raw


def _read_lines(path: Path, ctx: _Ctx, decode: Callable[[list[bytes]], tuple]):
    f, raw = _open_binary(path)
    line_no = 0
    with f, raw:
        while lines := list(islice(f, ctx.chunk_rows)):
            batch, origin, errors = decode(lines)
            errors = [(line_no + i + 1, why) for i, why in errors]
            line_no += len(lines)
            yield ctx.window(batch), len(lines), raw.tell(), errors


def _read_jsonl(path: Path, ctx: _Ctx, hive: dict[str, str]):
    def decode(lines: list[bytes]) -> tuple:
        idx = [i for i, ln in enumerate(lines) if ln.strip()]
        d = decode_json([lines[i] for i in idx], ctx.registry, ctx.json_unit)
        return d.batch, d.origin, [(idx[i], why) for i, why in d.errors]
    yield from _read_lines(path, ctx, decode)


def _read_lp(path: Path, ctx: _Ctx, hive: dict[str, str]):
    def decode(lines: list[bytes]) -> tuple:
        d = decode_line_text(b"".join(lines), ctx.registry)  # UTF-8 is checked per token
        return d.batch, d.origin, d.errors
    yield from _read_lines(path, ctx, decode)


_READERS = {"parquet": _read_parquet, "csv": _read_csv, "jsonl": _read_jsonl, "lp": _read_lp}
