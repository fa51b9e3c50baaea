"""Arrow columns of the canonical long form -> :class:`~pueflow.schema.batch.Batch`.

Shared by the Parquet and CSV readers (:mod:`pueflow.connectors.file_readers`): the schema
check that names a missing or mistyped column, times to int64 ns, and (site, device,
point) dictionary columns to series ids in one vectorised gather.
"""

from __future__ import annotations

import difflib
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pueflow.connectors.wire import unit_ns
from pueflow.connectors.wire_base import MAX_TIME_NS, MIN_TIME_NS, time_range_reason
from pueflow.exceptions import InputFormatError
from pueflow.jit import njit
from pueflow.schema.batch import Batch

if TYPE_CHECKING:
    from pathlib import Path

    from pueflow.schema.registry import Registry

COLUMNS = ("time", "site", "device", "point", "value")
KEY_COLUMNS = ("site", "device", "point")
_SYNONYMS = {"timestamp": "time", "ts": "time", "datetime": "time", "time_ns": "time",
             "date": "time", "site_id": "site", "device_id": "device", "meter": "device",
             "field": "point", "metric": "point", "measurement": "point", "val": "value",
             "reading": "value"}
_EXPECTED = "expected columns " + ", ".join(COLUMNS)


class Ctx:
    """What every reader of one ``iter_file`` call shares."""

    def __init__(self, registry: Registry, chunk_rows: int, lo: int | None, hi: int | None,
                 unit: str, json_unit: str):
        self.registry, self.chunk_rows, self.lo, self.hi = registry, chunk_rows, lo, hi
        self.unit, self.mult = unit, unit_ns(unit)
        self.json_unit = json_unit
        unit_ns(json_unit)
        self.keys = Keys(registry)
        #: 1-based row -> site named by a row refused in the current chunk (to_batch fills it)
        self.error_sites: dict[int, str] = {}
        #: where the current chunk lies in its Parquet file, and its times (None: not Parquet)
        self.span: ChunkSpan | None = None

    def window(self, batch: Batch) -> Batch:
        """Keep the readings of ``batch`` inside the time filter [ns]."""
        if self.lo is None and self.hi is None:
            return batch
        t = batch.time_ns
        keep = np.ones(len(t), np.bool_)
        if self.lo is not None:
            keep &= t >= self.lo
        if self.hi is not None:
            keep &= t < self.hi
        return batch if keep.all() else batch.take(keep)


class Keys:
    """Dictionary-encoded (site, device, point) columns -> series ids.

    A dense lookup table over the product of the three dictionaries turns the index
    columns into ids with one gather; it is rebuilt only when a dictionary changes and
    Python only touches keys not seen before. :meth:`known` may run on a reading thread
    (it never registers); :meth:`series` registers new keys and runs where the registry
    is used.
    """

    MAX_LUT = 1 << 25

    def __init__(self, registry: Registry):
        self.registry = registry
        self._dicts: tuple[pa.Array, ...] | None = None
        self._values: list[list[str]] = []
        self._lut: np.ndarray | None = None
        self._shape = (0, 0, 0)
        self._lock = threading.Lock()

    def _same_dicts(self, dicts: tuple[pa.Array, ...]) -> bool:
        return self._dicts is not None and all(
            a.equals(b) for a, b in zip(dicts, self._dicts, strict=True))

    def known(self, cols: list[pa.DictionaryArray]) -> np.ndarray | None:
        """Series ids [int32] of the rows when every key has one already, else None."""
        with self._lock:
            if self._lut is None or not self._same_dicts(tuple(c.dictionary for c in cols)):
                return None
            _, nd, np_ = self._shape
            idx = [c.indices.to_numpy(zero_copy_only=False) for c in cols]
            sid = np.empty(len(idx[0]), np.int32)
            if _lookup(idx[0], idx[1], idx[2], nd, np_, self._lut, sid, np.zeros(0, np.bool_)):
                return None
            return sid

    def series(self, cols: list[pa.DictionaryArray]) -> np.ndarray:
        """Series ids [int32] of dictionary-encoded (site, device, point) columns."""
        with self._lock:
            return self._series(cols)

    def _series(self, cols: list[pa.DictionaryArray]) -> np.ndarray:
        dicts = tuple(c.dictionary for c in cols)
        fresh = not self._same_dicts(dicts)  # every key is new to the table then
        if fresh:
            self._dicts = dicts
            self._values = [d.to_pylist() for d in dicts]
            self._shape = (len(dicts[0]), len(dicts[1]), len(dicts[2]))
            size = self._shape[0] * self._shape[1] * self._shape[2]
            self._lut = np.full(size, -1, np.int32) if size <= self.MAX_LUT else None
        ns, nd, np_ = self._shape
        idx = [c.indices.to_numpy(zero_copy_only=False) for c in cols]
        if self._lut is None:
            code = (idx[0].astype(np.int64) * nd + idx[1]) * np_ + idx[2]
            uniq, inv = np.unique(code, return_inverse=True)
            return self._ids(uniq)[inv]
        sid = np.empty(len(idx[0]), np.int32)
        seen = np.zeros(0, np.bool_)
        if fresh or _lookup(idx[0], idx[1], idx[2], nd, np_, self._lut, sid, seen):
            # keys not seen before: marked once per distinct code, no sort
            seen = np.zeros(len(self._lut), np.bool_)
            _lookup(idx[0], idx[1], idx[2], nd, np_, self._lut, sid, seen)
            new = np.flatnonzero(seen)
            self._lut[new] = self._ids(new)
            _lookup(idx[0], idx[1], idx[2], nd, np_, self._lut, sid, seen[:0])
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


@njit
def _lookup(i0, i1, i2, nd, np_, lut, out, seen) -> int:
    """Series ids of dictionary index triples through ``lut``, in one pass.

    Writes ``out``; returns how many triples have no id yet (marked in ``seen`` when it is
    as long as ``lut``).
    """
    missing = 0
    mark = seen.shape[0] > 0
    for i in range(i0.shape[0]):
        code = (np.int64(i0[i]) * nd + i1[i]) * np_ + i2[i]
        sid = lut[code]
        out[i] = sid
        if sid < 0:
            missing += 1
            if mark:
                seen[code] = True
    return missing


def missing_message(missing: list[str], names: list[str]) -> str:
    """Explain missing columns, suggesting the file's column each one may be."""
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


def check_schema(path: Path, schema: pa.Schema, hive: dict[str, str]) -> None:
    """Raise :class:`InputFormatError` naming the first missing or mistyped column."""
    names = schema.names
    missing = [c for c in COLUMNS if c not in names and c not in hive]
    if missing:
        raise InputFormatError(str(path), missing_message(missing, names), column=missing[0])
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


def time_ns_of(path: Path, col: pa.Array, offset: int, mult: int
               ) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int] | None]:
    """Return times [ns] and a mask of those inside 1970..2260 (None: all of them).

    When all are, also their lateness and latest time [ns] (see :class:`ChunkSpan`).
    """
    if col.null_count:
        first = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        msg = "time is empty; every reading needs an event time"
        raise InputFormatError(str(path), msg, row=offset + first + 1, column="time")
    if pa.types.is_timestamp(col.type):
        mult = unit_ns(col.type.unit)
        col = col.cast(pa.int64())
    t = col.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    # range checked in the file's unit: multiplying first could wrap past int64
    lo_ok, hi_ok = -(-MIN_TIME_NS // mult), -(-MAX_TIME_NS // mult)
    lo, hi, late = _time_stats(t)
    if lo >= lo_ok and hi < hi_ok:  # one pass, no mask: what nearly every chunk is
        return (t * mult if mult != 1 else t), None, (late * mult, hi * mult if len(t) else hi)
    ok = (t >= lo_ok) & (t < hi_ok)
    return np.where(ok, t, 0) * mult if mult != 1 else t, ok, None


@njit
def _time_stats(t: np.ndarray) -> tuple[int, int, int]:
    """Smallest and largest of ``t`` (max and min int64 when empty), and its lateness."""
    lo = np.iinfo(np.int64).max
    hi = np.iinfo(np.int64).min
    late = 0
    for i in range(t.shape[0]):
        x = t[i]
        if x < lo:
            lo = x
        if x > hi:
            hi = x
        elif hi - x > late:
            late = hi - x
    return lo, hi, late


@dataclass(slots=True, frozen=True)
class ChunkSpan:
    """Where a Parquet chunk lies in its file, and how its times run.

    Attributes
    ----------
    group : int
        Row group of the file the chunk was read from.
    group_done : bool
        True when the chunk holds the group's last rows.
    t_max : int
        Latest time of the chunk's readings [ns] (min int64 when it has none).
    late_ns : int
        Largest ``max(earlier times of the chunk) - t`` over its readings [ns]; 0 when the
        chunk is in time order.
    """

    group: int
    group_done: bool
    t_max: int
    late_ns: int


def chunk_span(p: Prepared, group: int, group_done: bool) -> ChunkSpan:
    """Describe a prepared chunk as a :class:`ChunkSpan` (rows refused for their time left out)."""
    if p.times is not None and p.bad is None:  # measured while the times were checked
        late, top = p.times
    else:
        t = p.time_ns if p.bad is None else p.time_ns[~p.bad]
        late, top = lateness(t, np.iinfo(np.int64).min)
    return ChunkSpan(group, group_done, int(top), int(late))


@njit
def lateness(t: np.ndarray, top: int) -> tuple[int, int]:
    """Largest ``max(earlier times) - t`` [ns] over ``t`` after ``top``, and the new top."""
    late = 0
    for i in range(t.shape[0]):
        x = t[i]
        if x > top:
            top = x
        elif top - x > late:
            late = top - x
    return late, top


@dataclass(slots=True)
class Prepared:
    """One record batch turned into arrays, before any key is registered.

    Built by :func:`prepare` (safe on a reading thread); :func:`finish` makes the Batch.
    """

    time_ns: np.ndarray
    value: np.ndarray
    cols: list[pa.DictionaryArray]
    sid: np.ndarray | None
    offset: int
    bad: np.ndarray | None = None
    site_null: np.ndarray | None = None
    errors: list[tuple[int, str]] = field(default_factory=list)
    span: ChunkSpan | None = None
    #: lateness and latest time [ns] of ``time_ns``, when known
    times: tuple[int, int] | None = None


def prepare(path: Path, rb: pa.RecordBatch, offset: int, ctx: Ctx, hive: dict[str, str]
            ) -> Prepared:
    """Arrow rows of the canonical form -> arrays and known ids; rows with a null key noted."""
    n = rb.num_rows
    names = rb.schema.names
    time_ns, t_ok, times = time_ns_of(path, rb.column("time"), offset, ctx.mult)
    cols, bad, site_null = [], None, None
    errors: list[tuple[int, str]] = []
    if t_ok is not None:
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
            site_null = m if k == "site" else site_null
            c = pa.DictionaryArray.from_arrays(pc.fill_null(c.indices, 0), c.dictionary)
        cols.append(c)
    v = rb.column("value")
    if not pa.types.is_float64(v.type):
        v = v.cast(pa.float64(), safe=False)
    if v.null_count:
        v = pc.fill_null(v, np.nan)
    return Prepared(time_ns, v.to_numpy(zero_copy_only=False), cols, ctx.keys.known(cols),
                    offset, bad, site_null, errors, times=times)


def finish(p: Prepared, ctx: Ctx, errors: list[tuple[int, str]]) -> Batch:
    """Batch of a :func:`prepare` d record batch: new keys registered, refused rows dropped."""
    sid = p.sid if p.sid is not None else ctx.keys.series(p.cols)
    batch = Batch(p.time_ns, sid, p.value)
    errors.extend(p.errors)
    if p.bad is not None:
        batch = batch.take(~p.bad)
        errors.sort()
        _note_sites(ctx, p.cols[0], p.bad if p.site_null is None else p.bad & ~p.site_null,
                    p.offset)
    return ctx.window(batch)


def to_batch(path: Path, rb: pa.RecordBatch, offset: int, ctx: Ctx, hive: dict[str, str],
             errors: list[tuple[int, str]]) -> Batch:
    """Arrow rows of the canonical form -> Batch; rows with a null key are reported."""
    return finish(prepare(path, rb, offset, ctx, hive), ctx, errors)


def _note_sites(ctx: Ctx, site: pa.DictionaryArray, rows: np.ndarray, offset: int) -> None:
    """Record in ``ctx.error_sites`` the site named by each refused row that names one."""
    at = np.flatnonzero(rows)
    if len(at):
        idx = site.indices.to_numpy(zero_copy_only=False)[at]
        names = site.dictionary.to_pylist()
        ctx.error_sites.update({offset + int(r) + 1: names[int(i)]
                                for r, i in zip(at, idx, strict=True)})
