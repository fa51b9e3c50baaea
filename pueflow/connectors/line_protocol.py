"""InfluxDB line protocol: decoding as the reference decoder does, and encoding.

Decoding scans the bytes of a whole poll in one numba pass (:mod:`.lp_scan`), maps each
field's raw name hash to a series id through a per-registry table (:mod:`.lp_keys`), and
only goes through Python for names never seen before, for floats that need a correctly
rounded conversion, and for the reasons of refused input.

Design choices where pueflow differs from InfluxDB (the reference corpus test counts them):
string and boolean fields are skipped, each with a reason, and the line's numeric fields
kept; a line without a timestamp is refused (pueflow needs event time); so is one whose
time lies outside 1970..2260, and one without a ``site`` tag. Any syntax error refuses
the whole line, as InfluxDB does.
"""

from __future__ import annotations

import math
import re
import weakref
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from pueflow.connectors import lp_scan as S
from pueflow.connectors.lp_escape import (
    escape_key,
    escape_measurement,
    unescape_key,
    unescape_measurement,
    unescape_string,
)
from pueflow.connectors.lp_keys import MISSING, KeyTable
from pueflow.connectors.wire_base import (
    MAX_TIME_NS,
    MIN_TIME_NS,
    Decoded,
    finish,
    joined,
    time_range_reason,
    unit_ns,
)
from pueflow.connectors.wire_encode import canonical, escaped, metric_groups, pack, snapshots

if TYPE_CHECKING:
    from pueflow.schema.registry import Registry

_TABLES: weakref.WeakKeyDictionary[Registry, KeyTable] = weakref.WeakKeyDictionary()
_TABLE_MAX = 2_000_000
_COMMA = re.compile(r"(?<!\\),")
_EQ = re.compile(r"(?<!\\)=")
_HEX = re.compile(r"-?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?\d+")
_SYNTAX = {
    S.E_UTF8: "a name or string value is not UTF-8",
    S.E_MEAS_EOF: "no measurement name",
    S.E_MEAS_START: "invalid character at the start of the measurement name",
    S.E_COMMENT: "'#' starts a measurement name (a comment line with a control character?)",
    S.E_TAG_COMMA_EOF: "expected a tag key after the comma, found the end",
    S.E_TAG_COMMA_SPACE: "expected a tag key after the comma, found white space",
    S.E_TAG_EOF: "expected tags or fields after the measurement, found the end",
    S.E_TAG_NO_EQ: "expected '=' after a tag key",
    S.E_TAG_EMPTY_KEY: "empty tag key",
    S.E_TAG_BAD: "expected a tag key or the fields",
    S.E_TAG_EMPTY_VALUE: "empty tag value",
    S.E_FKEY_EOF: "expected a field key, found none",
    S.E_FKEY_BAD: "invalid character at the start of a field key",
    S.E_FVAL_EOF: "expected a field value, found the end",
    S.E_STR_EOF: "string field value has no closing quote",
    S.E_FVAL_MISSING: "missing field value",
    S.E_AFTER_FIELD: "unexpected character after a field value",
    S.E_TS_EXTRA: "unexpected text after the timestamp",
}
_STR_EOF = _SYNTAX[S.E_STR_EOF]
_SHAPE = "expected 'measurement,site=…,device=… field=value,… timestamp_ns'"


def _table(registry: Registry) -> KeyTable:
    t = _TABLES.get(registry)
    if t is None or t.n > _TABLE_MAX:
        t = _TABLES[registry] = KeyTable()
    return t


def parse_head(head: str, meas_len: int) -> tuple[str, str] | str:
    """Return (site, device) of a line's raw measurement and tags, or why it names no series.

    ``meas_len`` is the raw measurement's length [characters].
    """
    meas = unescape_measurement(head[:meas_len])
    tags: dict[str, str] = {}
    rest = head[meas_len + 1:]
    for kv in _COMMA.split(rest) if rest else ():
        k, v = _EQ.split(kv, maxsplit=1)
        k = unescape_key(k)
        if k in tags:
            return f"duplicate tag key {k!r}"
        tags[k] = unescape_key(v)
    site = tags.get("site")
    if site is None:
        return "missing tag 'site'"
    return site, tags.get("device") or meas


def _text(buf: np.ndarray, a: int, b: int) -> str:
    return buf[a:b].tobytes().decode("utf-8", "backslashreplace")


def _reason(buf: np.ndarray, code: int, rec: tuple, r: int, mult: int) -> str:
    start, epos, (k0, k1, v0, v1) = rec[1][r], rec[6][r], rec[7][r]
    col = f" (column {epos - start + 1})"
    key = unescape_key(_text(buf, k0, k1))
    raw = _text(buf, v0, v1)
    if code == S.E_NO_TS:
        return "line has no timestamp (pueflow needs event time)"
    if code == S.E_TS_OUT:
        return time_range_reason(int(rec[8][r]), raw, mult)
    if code == S.E_TS_RANGE:
        return f"invalid timestamp {raw!r}: out of range in unit of {mult} ns"
    if code == S.E_TS_SYNTAX:
        return f"invalid timestamp {raw!r}; expected integer nanoseconds{col}"
    if code == S.E_FKEY_NO_EQ:
        return f"cannot parse line: field {key!r} is not key=value{col}"
    if code in (S.E_INT, S.E_UINT):
        kind = "integer" if code == S.E_INT else "unsigned integer"
        return f"field {key!r} has invalid {kind} {raw!r} (bad syntax or out of range)"
    if code in (S.E_FLOAT, S.E_BOOL, S.E_FVAL_TYPE):
        return f"field {key!r} has invalid value {raw!r}"
    return f"cannot parse line: {_SYNTAX.get(code, 'syntax error')}{col}; {_SHAPE}"


def _slow_floats(buf: np.ndarray, fld: tuple, bad: np.ndarray,
                 reasons: dict[int, str]) -> None:
    """Correctly rounded values of the floats the kernel left; out of range refuses."""
    for k in np.flatnonzero(fld[7]):
        raw = _text(buf, fld[3][k], fld[4][k])
        v = float.fromhex(raw) if _HEX.fullmatch(raw) else (float(raw) if "x" not in raw.lower() else math.nan)
        if math.isfinite(v):
            fld[6][k] = v
            continue
        r = int(fld[0][k])
        bad[r] = True
        what = "out of range for a float" if "x" not in raw.lower() else "an unsupported hexadecimal form"
        reasons.setdefault(r, f"field {unescape_key(_text(buf, fld[1][k], fld[2][k]))!r} "
                              f"value {raw!r} is {what}")


def _resolve(buf: np.ndarray, rec: tuple, fld: tuple, idx: np.ndarray, table: KeyTable,
             registry: Registry) -> None:
    """Add the series of fields ``idx`` (hashes not in ``table``) to it."""
    h = np.stack([fld[8][idx], fld[9][idx]], axis=1)
    _, first = np.unique(h, axis=0, return_index=True)
    idx = idx[first]
    heads: dict[bytes, tuple[str, str] | str] = {}
    vals = np.empty(len(idx), np.int32)
    for j, k in enumerate(idx):
        r = int(fld[0][k])
        head = buf[rec[1][r]:rec[4][r]].tobytes()
        sd = heads.get(head)
        if sd is None:
            meas_len = len(buf[rec[1][r]:rec[3][r]].tobytes().decode())
            sd = heads[head] = parse_head(head.decode(), meas_len)
        if isinstance(sd, str):
            vals[j] = table.reason_code(sd)
        else:
            vals[j] = registry.id(sd[0], sd[1], unescape_key(_text(buf, fld[1][k], fld[2][k])))
    table.insert(fld[8][idx], fld[9][idx], vals)


def _decode(buf: np.ndarray, ends: np.ndarray, registry: Registry, mult: int):
    """Scan, convert, resolve names.

    Returns (records, fields, reading field indices, errors as (record, reason)).
    """
    rec, fld = S.scan(buf, ends, mult, MIN_TIME_NS, MAX_TIME_NS)
    bad = rec[5] != S.OK
    reasons: dict[int, str] = {r: _reason(buf, int(rec[5][r]), rec, r, mult)
                               for r in np.flatnonzero(bad).tolist()}
    if fld[7].any():
        _slow_floats(buf, fld, bad, reasons)
    num = np.flatnonzero(fld[5] <= S.K_UINT)
    table = _table(registry)
    sid = table.lookup(fld[8][num], fld[9][num])
    miss = sid == MISSING
    if miss.any():
        _resolve(buf, rec, fld, num[miss], table, registry)
        sid[miss] = table.lookup(fld[8][num[miss]], fld[9][num[miss]])
    for k in np.flatnonzero(sid < 0):
        r = int(fld[0][num[k]])
        bad[r] = True
        reasons.setdefault(r, table.reasons[-1 - int(sid[k])])
    errors = sorted(reasons.items())
    skipped = np.flatnonzero((fld[5] > S.K_UINT) & ~bad[fld[0]])
    for k in skipped:
        what = "a boolean" if fld[5][k] == S.K_BOOL else "a string"
        key = unescape_key(_text(buf, fld[1][k], fld[2][k]))
        errors.append((int(fld[0][k]), f"field {key!r} is {what}"))
    good = ~bad[fld[0][num]]
    fields = num[good]
    return rec, fld, fields, sid[good], errors


def decode_line(payloads: list[bytes], registry: Registry, precision: str = "ns") -> Decoded:
    """Decode InfluxDB line protocol, one or many lines a payload.

    Parameters
    ----------
    payloads : list of bytes
        Each is decoded on its own (a string cannot run into the next payload).
    registry : Registry
        Assigns series ids; its ``scale`` is applied to values.
    precision : str
        Unit of the timestamps (``ns``, ``us``, ``ms``, ``s``); Telegraf writes ns.

    Returns
    -------
    Decoded
        Float, integer (``12i``) and unsigned (``7u``) fields become readings; boolean and
        string fields are skipped with a reason; a line that InfluxDB would refuse, or
        without a timestamp, a ``site`` tag or a time in 1970..2260, is refused whole with a
        reason (``line N:`` prefixed past a payload's first line).
    """
    return decode_line_buffer(*joined(payloads), registry, precision)


def decode_line_buffer(buf: np.ndarray, ends: np.ndarray, registry: Registry,
                       precision: str = "ns") -> Decoded:
    """Decode line-protocol payloads laid back to back in ``buf`` (array [uint8]).

    ``ends`` (array [int64]) holds each payload's exclusive end in ``buf`` [bytes]; the rest
    is as for :func:`decode_line`, whose result this is for the same payloads.
    """
    if not len(ends):
        return Decoded.empty()
    mult = unit_ns(precision)
    rec, fld, fields, sid, rec_errors = _decode(buf, ends, registry, mult)
    pay = rec[0]
    errors = []
    if rec_errors:
        nl = np.flatnonzero(buf == 10)
        starts: np.ndarray = rec[1]  # of each record; np.r_ and the scan's tuple are untyped
        pay_starts: np.ndarray = np.r_[0, ends[:-1]]
        line = np.searchsorted(nl, starts) - np.searchsorted(nl, pay_starts)[pay]
        errors = [(int(pay[r]), f"line {line[r] + 1}: {why}" if line[r] else why)
                  for r, why in rec_errors]
    r = fld[0][fields]
    return finish(len(ends), rec[8][r], sid, fld[6][fields], pay[r], errors, registry)


def decode_line_text(text: str | bytes, registry: Registry, precision: str = "ns") -> Decoded:
    """Decode line protocol text (or its UTF-8 bytes) where each line is its own record.

    ``origin`` is the 0-based index of the line a record starts on (for files). Blank and
    comment lines yield nothing and no error.
    """
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    buf = np.frombuffer(data, np.uint8)
    rec, fld, fields, sid, rec_errors = _decode(buf, np.array([len(buf)], np.int64),
                                                registry, unit_ns(precision))
    line = np.searchsorted(np.flatnonzero(buf == 10), rec[1]).astype(np.int64)
    errors = [(int(line[r]), why) for r, why in rec_errors]
    r = fld[0][fields]
    return finish(None, rec[8][r], sid, fld[6][fields], line[r], errors, registry)


def decode_line_chunk(data: bytes, registry: Registry, final: bool,
                      precision: str = "ns") -> tuple[Decoded, int]:
    """Decode a chunk of a line-protocol file, leaving a record cut by the chunk's end.

    A string field may hold raw newlines, so a chunk read line by line can end inside a
    record. Unless ``final``, a last record whose string runs into the end of ``data`` is
    not decoded; the caller carries ``data[used:]`` over to the front of the next chunk.

    Parameters
    ----------
    data : bytes
        Whole lines of the file (plus what the previous chunk left).
    registry : Registry
        Assigns series ids.
    final : bool
        No more input follows (or the carried text grew too long): decode everything.
    precision : str
        Timestamp unit, as for :func:`decode_line`.

    Returns
    -------
    (Decoded, int)
        As :func:`decode_line_text` (``origin`` and error indices are lines of ``data``),
        and the number of bytes of ``data`` decoded [bytes].
    """
    dec = decode_line_text(data, registry, precision)
    if final or not dec.errors or _STR_EOF not in dec.errors[-1][1]:
        return dec, len(data)
    line = dec.errors[-1][0]  # an unclosed string can only be the last record's
    start = int(np.flatnonzero(np.frombuffer(data, np.uint8) == 10)[line - 1]) + 1 if line else 0
    return decode_line_text(data[:start], registry, precision), start


def parse_records(data: bytes, precision: str = "ns") -> list[tuple | str]:
    """Read every record of ``data`` as the reference decoder reads it.

    Without pueflow's rules (no ``site`` needed, any time, no timestamp allowed): for tests
    and diagnostics.

    Returns
    -------
    list
        Per record either the reason it is refused, or (measurement, [(tag key, value)],
        [(field key, kind, value)], time [ns] or None); kind is float, int, uint, bool or
        string and value the Python value.
    """
    mult = unit_ns(precision)
    buf = np.frombuffer(data, np.uint8)
    rec, fld = S.scan(buf, np.array([len(buf)], np.int64), mult, -(2**63), 2**63 - 1)
    bad = (rec[5] != S.OK) & (rec[5] != S.E_NO_TS) & (rec[5] != S.E_TS_OUT)
    reasons: dict[int, str] = {}
    if fld[7].any():
        _slow_floats(buf, fld, bad, reasons)
    out: list[tuple | str] = []
    kinds = ("float", "int", "uint", "bool", "string")
    for r in range(len(rec[0])):
        if bad[r]:
            out.append(reasons.get(r) or _reason(buf, int(rec[5][r]), rec, r, mult))
            continue
        head = _text(buf, rec[1][r], rec[4][r])
        m_len = len(_text(buf, rec[1][r], rec[3][r]))
        tags = [tuple(map(unescape_key, _EQ.split(kv, maxsplit=1)))
                for kv in _COMMA.split(head[m_len + 1:])] if len(head) > m_len else []
        if len({k for k, _ in tags}) < len(tags):
            out.append("duplicate tag key")
            continue
        fields = []
        for k in np.flatnonzero(fld[0] == r):
            kind, raw = kinds[fld[5][k]], _text(buf, fld[3][k], fld[4][k])
            value = (float(fld[6][k]) if kind == "float" else int(raw[:-1]) if kind in ("int", "uint")
                     else raw[0] in "tT" if kind == "bool" else unescape_string(raw[1:-1]))
            fields.append((unescape_key(_text(buf, fld[1][k], fld[2][k])), kind, value))
        out.append((unescape_measurement(head[:m_len]), tags, fields,
                    int(rec[8][r]) if rec[9][r] else None))
    return out


def parse_line(line: str) -> tuple[str, str, list[tuple[str, float | str]], int] | str:
    """Parse one line: (site, device, [(field, value or reason)], time_ns), or why not.

    The reason the line is unusable is returned instead (the single-line view of
    :func:`decode_line`).
    """
    buf = np.frombuffer(line.encode("utf-8", "surrogateescape"), np.uint8)
    rec, fld = S.scan(buf, np.array([len(buf)], np.int64), 1, MIN_TIME_NS, MAX_TIME_NS)
    if not len(rec[0]):
        return f"cannot parse line: {_SHAPE}"
    reasons: dict[int, str] = {}
    bad = rec[5] != S.OK
    if not bad[0] and fld[7].any():
        _slow_floats(buf, fld, bad, reasons)
    if bad[0]:
        return reasons.get(0) or _reason(buf, int(rec[5][0]), rec, 0, 1)
    sd = parse_head(_text(buf, rec[1][0], rec[4][0]), len(_text(buf, rec[1][0], rec[3][0])))
    if isinstance(sd, str):
        return sd
    out: list[tuple[str, float | str]] = []
    for k in np.flatnonzero(fld[0] == 0):
        key = unescape_key(_text(buf, fld[1][k], fld[2][k]))
        kind = fld[5][k]
        out.append((key, float(fld[6][k]) if kind <= S.K_UINT else
                    f"field {key!r} is {'a boolean' if kind == S.K_BOOL else 'a string'}"))
    return sd[0], sd[1], out, int(rec[8][0])


def encode_line(df: pl.DataFrame, lines_per_message: int = 1,
                measurement: str = "telemetry") -> list[bytes]:
    """InfluxDB line protocol messages from the canonical long form (ns timestamps).

    One line per (site, device, time), in time order, each point a float field;
    ``lines_per_message`` lines joined by newlines per message. Names that line protocol
    cannot carry raise ValueError (see :func:`~.lp_escape.escape_key`).
    """
    df = canonical(df)
    g = snapshots(df, pl.concat_str(escaped("point", escape_key), pl.lit("="),
                                    pl.col("value").cast(pl.String)))
    meas = escape_measurement(measurement)
    if g is None:
        lines = [f"{meas},site={escape_key(site)},device={escape_key(dev)} "
                 + ",".join(f"{escape_key(k)}={v!r}" for k, v in f.items()) + f" {t}"
                 for t, site, dev, f in metric_groups(df)]
    else:
        lines = g.select(pl.concat_str(
            pl.lit(f"{meas},site="), escaped("site", escape_key), pl.lit(",device="),
            escaped("device", escape_key), pl.lit(" "), "f", pl.lit(" "),
            pl.col("t").cast(pl.String))).to_series().to_list()
    return pack(lines, lines_per_message, "", "\n", "")
