"""Telegraf's JSON serializer format: decoding and encoding.

Also the one JSON envelope (``{"name", "tags", "fields", "timestamp"}``) every pueflow JSON
writer uses.

Timestamps are numbers in the configured unit (Telegraf's ``json_timestamp_units``: any
power of ten of ns, ``1s`` by default, e.g. ``10ms``) or RFC 3339 strings
(``json_timestamp_format``); a time outside 1970..2260 is refused with a reason.
"""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING

import numpy as np
import orjson
import polars as pl

from pueflow.connectors import json_scan
from pueflow.connectors.json_python import decode_python
from pueflow.connectors.lp_keys import MISSING, KeyTable
from pueflow.connectors.wire_base import (
    MAX_TIME_NS,
    MIN_TIME_NS,
    Decoded,
    finish,
    joined,
    unit_ns,
)
from pueflow.connectors.wire_encode import (
    canonical,
    metric_groups,
    pack,
    snapshots,
    timestamp_text,
)

if TYPE_CHECKING:
    from pueflow.schema.registry import Registry

#: hash of (site, device, field) literals -> series id, per registry, for the numba scan
_TABLES: weakref.WeakKeyDictionary[Registry, KeyTable] = weakref.WeakKeyDictionary()
_TABLE_MAX = 2_000_000


def jstr(s: str) -> str:
    """``s`` as a JSON string literal."""
    return orjson.dumps(s).decode()


def decode_json(payloads: list[bytes], registry: Registry, timestamp_unit: str = "s") -> Decoded:
    """Decode Telegraf JSON messages (single metric or ``{"metrics": [...]}``).

    The whole poll is scanned at once in numba (:mod:`.json_scan`), series found by hash in
    a per-registry table; a payload the scan does not fully understand (bad JSON, string or
    boolean fields, escapes, RFC 3339 times, anything refused) is decoded by orjson and
    Python instead, with the same results and the reasons.

    Parameters
    ----------
    payloads : list of bytes
        One JSON document each.
    registry : Registry
        Assigns series ids; its ``scale`` is applied to values.
    timestamp_unit : str
        Unit of numeric ``timestamp``s: s, ms, us, ns or a Telegraf duration (``10ms``);
        floats are accepted (rounded to the nearest ns); strings are read as RFC 3339.

    Returns
    -------
    Decoded
        Numeric fields become readings, in payload order; a string/bool/null field is an
        error for that field only; a metric missing ``site``, device/name, ``fields`` or
        ``timestamp``, or with a time outside 1970..2260, is an error.
    """
    return decode_json_buffer(*joined(payloads), registry, timestamp_unit)


def decode_json_buffer(buf: np.ndarray, ends: np.ndarray, registry: Registry,
                       timestamp_unit: str = "s") -> Decoded:
    """Decode Telegraf JSON payloads laid back to back in ``buf`` (array [uint8]).

    ``ends`` (array [int64]) holds each payload's exclusive end in ``buf`` [bytes]; the rest
    is as for :func:`decode_json`, whose result this is for the same payloads.
    """
    mult = unit_ns(timestamp_unit)
    n = len(ends)
    if not n:
        return finish(0, *decode_python([], registry, mult), registry)
    ok, fld, met = json_scan.scan(buf, ends, mult, MIN_TIME_NS, MAX_TIME_NS)
    pay, t_ns, h1, h2, value = fld[:5]
    if fld[5].any():
        _round_floats(buf, ok, fld)
        keep = ok[pay]
        if not keep.all():
            pay, t_ns, h1, h2, value = pay[keep], t_ns[keep], h1[keep], h2[keep], value[keep]
            fld = tuple(a[keep] for a in fld)
    sid = _series(buf, fld, met, registry)
    if ok.all():
        return finish(n, t_ns, sid, value, pay, [], registry)
    rest = np.flatnonzero(~ok)
    starts = np.r_[0, ends[:-1]]
    t2, s2, v2, o2, errors = decode_python([buf[starts[i]:ends[i]].tobytes() for i in rest.tolist()],
                                           registry, mult)
    origin = np.concatenate([pay, rest[o2].astype(np.int32)])
    order = np.argsort(origin, kind="stable")
    errors = [(int(rest[i]), why) for i, why in errors]
    return finish(n, np.concatenate([t_ns, t2])[order], np.concatenate([sid, s2])[order],
                  np.concatenate([value, v2])[order], origin[order], errors, registry)


def _round_floats(buf: np.ndarray, ok: np.ndarray, fld: tuple) -> None:
    """Set correctly rounded values of the floats the scan left.

    A payload with a float out of range goes to the Python decoder (which refuses it with
    the reason).
    """
    value, slow, v0, v1 = fld[4], fld[5], fld[8], fld[9]
    for k in np.flatnonzero(slow).tolist():
        v = float(buf[v0[k]:v1[k]].tobytes())
        if math.isfinite(v):
            value[k] = v
        else:
            ok[fld[0][k]] = False


def _series(buf: np.ndarray, fld: tuple, met: tuple, registry: Registry) -> np.ndarray:
    """Series ids of the scanned fields: by hash, Python only for hashes not seen before."""
    table = _table(registry)
    h1, h2 = fld[2], fld[3]
    sid = table.lookup(h1, h2)
    miss = np.flatnonzero(sid == MISSING)
    if len(miss):
        _, first = np.unique(np.stack([h1[miss], h2[miss]], axis=1), axis=0, return_index=True)
        new = miss[first]
        k0, k1, m = fld[6], fld[7], fld[10]

        def text(a: int, b: int) -> str:  # a plain JSON string literal's characters
            return buf[a + 1:b - 1].tobytes().decode()

        ids = np.array([registry.id(text(met[0][m[k]], met[1][m[k]]),
                                    text(met[2][m[k]], met[3][m[k]]), text(k0[k], k1[k]))
                        for k in new.tolist()], np.int32)
        table.insert(h1[new], h2[new], ids)
        sid[miss] = table.lookup(h1[miss], h2[miss])
    return sid


def _table(registry: Registry) -> KeyTable:
    t = _TABLES.get(registry)
    if t is None or t.n > _TABLE_MAX:
        t = _TABLES[registry] = KeyTable()
    return t


# --------------------------------------------------------------------------- encoding


def envelope(name: pl.Expr, tags: pl.Expr, fields: pl.Expr, timestamp: pl.Expr) -> pl.Expr:
    """Build one Telegraf JSON metric per row from its JSON pieces.

    ``name`` a JSON string, ``tags`` and ``fields`` the members inside their braces,
    ``timestamp`` a JSON number.
    """
    return pl.concat_str(pl.lit('{"name":'), name, pl.lit(',"tags":{'), tags,
                         pl.lit('},"fields":{'), fields, pl.lit('},"timestamp":'), timestamp,
                         pl.lit("}"))


def quoted(expr: pl.Expr) -> pl.Expr:
    """Quote ``expr`` cast to text as JSON string literals; nulls stay null.

    Each distinct value is quoted once.
    """
    def quote(s: pl.Series) -> pl.Series:
        u = s.drop_nulls().unique()
        return s.replace_strict(u, [jstr(x) for x in u.to_list()], default=None,
                                return_dtype=pl.String)
    return expr.cast(pl.String).map_batches(quote, return_dtype=pl.String)


def member(key: str, col: str, dtype: pl.DataType) -> pl.Expr | None:
    """Build ``"key":value`` of column ``col`` as JSON text.

    Null where the value is null or not finite (Telegraf leaves those fields out); None for
    a type JSON fields cannot hold.
    """
    c = pl.col(col)
    head = pl.lit(jstr(key) + ":")
    if dtype.is_float():
        return pl.when(c.is_finite()).then(head + c.cast(pl.Float64).cast(pl.String))
    if dtype.is_integer():
        return head + c.cast(pl.String)
    if dtype == pl.Boolean:
        return head + pl.when(c).then(pl.lit("true")).otherwise(pl.lit("false"))
    if dtype in (pl.String, pl.Categorical):
        return head + quoted(c)
    return None


def members(parts: list[pl.Expr]) -> pl.Expr:
    """Members joined by commas, the null ones left out."""
    return pl.concat_str(parts, separator=",", ignore_nulls=True) if parts else pl.lit("")


def encode_json(df: pl.DataFrame, timestamp_unit: str = "s", per_message: int = 1,
                measurement: str = "telemetry") -> list[bytes]:
    """Telegraf JSON messages from the canonical long form.

    Readings of the same (site, device, time) become one metric with several fields, in
    time order. ``per_message > 1`` packs that many metrics into the batch form
    ``{"metrics": [...]}``. Timestamps are integers in ``timestamp_unit`` when exact, else
    floats. NaN/inf values become JSON ``null`` (the decoder reports them).
    """
    mult = unit_ns(timestamp_unit)
    df = canonical(df)
    v = pl.col("value")
    value = pl.when(v.is_finite()).then(v.cast(pl.String)).otherwise(pl.lit("null"))
    g = snapshots(df, pl.concat_str(quoted(pl.col("point")), pl.lit(":"), value))
    if g is None:
        metrics = [orjson.dumps({"name": measurement, "tags": {"site": site, "device": dev},
                                 "fields": f, "timestamp": t // mult if t % mult == 0 else t / mult}
                                ).decode() for t, site, dev, f in metric_groups(df)]
    else:
        tags = pl.concat_str(pl.lit('"site":'), quoted(pl.col("site")), pl.lit(',"device":'),
                             quoted(pl.col("device")))
        metrics = g.select(envelope(pl.lit(jstr(measurement)), tags, pl.col("f"),
                                    timestamp_text(mult))).to_series().to_list()
    return pack(metrics, per_message, '{"metrics":[', ",", "]}")
