"""Chunked readers of telemetry files: Parquet, CSV, Telegraf JSON lines, line protocol.

Each reader yields ``(batch, rows, bytes position, errors)`` for
:func:`pueflow.connectors.files.iter_file`; errors are (1-based row, reason) of rows that
gave no reading.
"""

from __future__ import annotations

import gzip
import io
import queue
import re
import threading
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any, TypeVar

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from pueflow.connectors.file_arrow import (
    COLUMNS,
    KEY_COLUMNS,
    Ctx,
    Prepared,
    check_schema,
    chunk_span,
    finish,
    missing_message,
    prepare,
    to_batch,
)
from pueflow.connectors.wire import decode_json, decode_line_chunk, unit_ns
from pueflow.exceptions import InputFormatError
from pueflow.schema.batch import Batch

#: longest record carried between chunks before it is decoded (and refused) as it is
_CARRY_MAX = 64 << 20

T = TypeVar("T")


# --------------------------------------------------------------------------- parquet


def read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield ``items`` while a thread produces the next ``depth`` of them.

    File decoding then overlaps whatever the caller does with the current one; errors
    surface in order.
    """
    q: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.05)
            except queue.Full:
                continue
            else:
                return True
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


def _row_groups(pf: pq.ParquetFile, ctx: Ctx) -> Iterator[tuple[int, int]]:
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


def _read_parquet(path: Path, ctx: Ctx, hive: dict[str, str]):
    try:
        names = pq.read_schema(path).names
        pf = pq.ParquetFile(path, read_dictionary=[k for k in KEY_COLUMNS if k in names])
    except (pa.ArrowException, OSError) as exc:
        raise InputFormatError(str(path), f"not a readable Parquet file: {exc}") from None
    schema = pf.schema_arrow
    check_schema(path, schema, hive)
    columns = [c for c in COLUMNS if c in schema.names]
    total = max(pf.metadata.num_rows, 1)
    size = path.stat().st_size

    def batches() -> Iterator[tuple[int, int, Prepared]]:
        for rg, offset in _row_groups(pf, ctx):
            group_end = offset + pf.metadata.row_group(rg).num_rows
            it = pf.iter_batches(batch_size=ctx.chunk_rows, row_groups=[rg], columns=columns)
            while True:
                try:
                    rb = next(it)
                except StopIteration:
                    break
                except (pa.ArrowException, OSError) as exc:
                    end = offset + pf.metadata.row_group(rg).num_rows
                    msg = (f"row group {rg} (rows {offset + 1}..{end}) cannot be decoded, the "
                           f"file is corrupt or truncated ({exc}); export it again or move "
                           "it out of the input")
                    raise InputFormatError(str(path), msg, row=offset + 1) from None
                prepared = prepare(path, rb, offset, ctx, hive)
                offset += rb.num_rows
                # its times, for a grace that keeps every later reading on time (replay)
                prepared.span = chunk_span(prepared, rg, offset >= group_end)
                yield rb.num_rows, offset - rb.num_rows, prepared

    # decoding, time and value columns and known keys' ids (pyarrow and numba, GIL
    # released) run ahead on a thread; new keys are registered here, where the core runs
    for rows, offset, prepared in read_ahead(batches()):
        errors: list[tuple[int, str]] = []
        batch = finish(prepared, ctx, errors)
        ctx.span = prepared.span
        yield batch, rows, size * (offset + rows) // total, errors


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


def _read_csv(path: Path, ctx: Ctx, hive: dict[str, str]):
    names, time_first = _csv_header(path)
    missing = [c for c in COLUMNS if c not in names and c not in hive]
    if missing:
        raise InputFormatError(str(path), missing_message(missing, names), column=missing[0])
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
                batch = to_batch(path, part, offset + n_bad, ctx, hive, errors)
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


def _read_lines(path: Path, ctx: Ctx, decode: Callable[[list[bytes]], tuple]):
    f, raw = _open_binary(path)
    line_no = 0
    with f, raw:
        while lines := list(islice(f, ctx.chunk_rows)):
            batch, origin, errors = decode(lines)
            errors = [(line_no + i + 1, why) for i, why in errors]
            line_no += len(lines)
            yield ctx.window(batch), len(lines), raw.tell(), errors


def _read_jsonl(path: Path, ctx: Ctx, hive: dict[str, str]):
    def decode(lines: list[bytes]) -> tuple:
        idx = [i for i, ln in enumerate(lines) if ln.strip()]
        d = decode_json([lines[i] for i in idx], ctx.registry, ctx.json_unit)
        return d.batch, d.origin, [(idx[i], why) for i, why in d.errors]
    yield from _read_lines(path, ctx, decode)


def _read_lp(path: Path, ctx: Ctx, hive: dict[str, str]):
    # a record whose string field holds a raw newline may straddle two chunks: the decoder
    # stops before it and the rest of the chunk is carried into the next one
    f, raw = _open_binary(path)
    line_no, carry = 0, b""
    with f, raw:
        while True:
            lines = list(islice(f, ctx.chunk_rows))
            data = carry + b"".join(lines)
            if not data:
                return
            d, used = decode_line_chunk(data, ctx.registry, not lines or len(carry) > _CARRY_MAX)
            carry = data[used:]
            n = data.count(b"\n", 0, used) + (0 < used == len(data) and not data.endswith(b"\n"))
            yield (ctx.window(d.batch), n, raw.tell(),
                   [(line_no + i + 1, why) for i, why in d.errors])
            line_no += n


READERS = {"parquet": _read_parquet, "csv": _read_csv, "jsonl": _read_jsonl, "lp": _read_lp}
