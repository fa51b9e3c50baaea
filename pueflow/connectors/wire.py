"""The two wire formats Telegraf emits: its JSON serializer and InfluxDB line protocol.

Decoders turn a list of message payloads into one :class:`Decoded` (a columnar
:class:`~pueflow.schema.batch.Batch` plus, for each reading, the payload it came from and
a list of per-payload problems). A series is (tag ``site``, tag ``device`` or else the
measurement name, field name). Every payload yields readings, an error, or both; nothing is
dropped silently. Unknown series still get an id (the pipeline reports them, not the
decoder). The registry's per-series ``scale`` is applied to every value.

Encoders produce the same formats from the canonical long form (time, site, device, point,
value) so the simulator can feed Kafka and files.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import orjson
import polars as pl

from pueflow.schema.batch import Batch

if TYPE_CHECKING:
    from pueflow.schema.registry import Registry

UNIT_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_I64_MAX = np.iinfo(np.int64).max
#: key (site, device, *field names) -> series ids, per registry (ids never change).
_JSON_KEYS: weakref.WeakKeyDictionary[Registry, dict[tuple[str, ...], tuple[int, ...]]] = (
    weakref.WeakKeyDictionary())
_JSON_CACHE_MAX = 1_000_000
#: line-protocol (head, field key) -> series id, per registry, as a polars table to join.
_LP_KEYS: weakref.WeakKeyDictionary[Registry, pl.DataFrame] = weakref.WeakKeyDictionary()
_LP_CACHE_MAX = 2_000_000


@dataclass(slots=True)
class Decoded:
    """Readings decoded from a list of payloads.

    Attributes
    ----------
    batch : Batch
        The readings, in payload order.
    origin : array [int32]
        For each reading, the index of the payload it came from.
    errors : list of (int, str)
        (payload index, human reason), sorted by payload index. A payload may appear both
        here and in ``origin`` (partly good).
    """

    batch: Batch
    origin: np.ndarray
    errors: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def empty(cls) -> Decoded:
        """No readings, no errors."""
        return cls(Batch.empty(), np.empty(0, np.int32), [])


def unit_ns(timestamp_unit: str) -> int:
    """Nanoseconds in one ``timestamp_unit`` (s, ms, us, ns); ValueError otherwise."""
    try:
        return UNIT_NS[timestamp_unit]
    except KeyError:
        msg = f"timestamp unit {timestamp_unit!r} is not one of {sorted(UNIT_NS)}"
        raise ValueError(msg) from None


def _finish(n_payloads: int | None, time_ns: np.ndarray, series: np.ndarray,
            value: np.ndarray, origin: np.ndarray, errors: list[tuple[int, str]],
            registry: Registry) -> Decoded:
    """Apply scale, make sure each of ``n_payloads`` is accounted for, sort errors."""
    if len(series):
        scale = registry.scale[: len(registry)]
        if (scale != 1.0).any():
            value = value * scale[series]
    if n_payloads is not None:
        seen = np.zeros(n_payloads, np.bool_)
        seen[origin] = True
        for i, _ in errors:
            seen[i] = True
        errors.extend((int(i), "no readings in message (empty)") for i in np.flatnonzero(~seen))
    errors.sort(key=lambda e: e[0])
    return Decoded(Batch(time_ns, series, value), origin.astype(np.int32, copy=False), errors)


# --------------------------------------------------------------------------- JSON


def _type_word(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return f"of type {type(v).__name__}"


def _metric_problem(m: object, j: int, batch: bool) -> str:
    """Why a metric failed the fast path (only called on bad input)."""
    where = f"metric {j}: " if batch else ""
    if not isinstance(m, dict):
        return f"{where}expected a JSON object, got {_type_word(m)}"
    tags = m.get("tags")
    if not isinstance(tags, dict):
        return f"{where}missing 'tags' object" if tags is None else f"{where}'tags' is {_type_word(tags)}"
    site = tags.get("site")
    if site is None:
        return f"{where}missing tag 'site'"
    if not isinstance(site, str):
        return f"{where}tag 'site' is {_type_word(site)}, expected a string"
    dev = tags.get("device") or m.get("name")
    if dev is None:
        return f"{where}missing tag 'device' and no measurement 'name'"
    if not isinstance(dev, str):
        return f"{where}tag 'device' (or 'name') is {_type_word(dev)}, expected a string"
    fields = m.get("fields")
    if not isinstance(fields, dict):
        return f"{where}missing 'fields' object" if fields is None else f"{where}'fields' is {_type_word(fields)}"
    if not fields:
        return f"{where}'fields' is empty"
    t = m.get("timestamp")
    if t is None:
        return f"{where}missing 'timestamp' (pueflow needs event time)"
    return f"{where}'timestamp' is {_type_word(t)}, expected a number"


def _json_keys(registry: Registry) -> dict[tuple[str, ...], tuple[int, ...]]:
    cache = _JSON_KEYS.get(registry)
    if cache is None or len(cache) > _JSON_CACHE_MAX:
        cache = _JSON_KEYS[registry] = {}
    return cache


def _times_ns(times: list, mult: int) -> tuple[np.ndarray, np.ndarray]:
    """Metric timestamps in ``unit`` -> int64 ns and a mask of those in range."""
    try:
        arr = np.array(times)
    except OverflowError:
        arr = np.array([float(t) for t in times])
    if arr.dtype.kind == "i":
        ok = np.abs(arr) <= _I64_MAX // mult
        return np.where(ok, arr, 0) * mult, ok
    # whole and fractional parts apart: 1714564800001.5 ms stays exact to the ns
    arr = arr.astype(np.float64)
    whole = np.floor(arr)
    ok = np.isfinite(arr) & (np.abs(whole) < _I64_MAX // mult)
    whole = np.where(ok, whole, 0)
    frac = np.where(ok, arr - whole, 0.0)
    return whole.astype(np.int64) * mult + np.round(frac * mult).astype(np.int64), ok


def decode_json(payloads: list[bytes], registry: Registry, timestamp_unit: str = "s") -> Decoded:
    """Decode Telegraf JSON messages (single metric or ``{"metrics": [...]}``).

    Parameters
    ----------
    payloads : list of bytes
        One JSON document each.
    registry : Registry
        Assigns series ids; its ``scale`` is applied to values.
    timestamp_unit : {"s", "ms", "us", "ns"}
        Unit of ``timestamp``; floats are accepted (rounded to the nearest ns).

    Returns
    -------
    Decoded
        Numeric fields become readings; a string/bool/null field is an error for that field
        only; a metric missing ``site``, device/name, ``fields`` or ``timestamp`` is an error.
    """
    mult = unit_ns(timestamp_unit)
    cache = _json_keys(registry)
    reg_id = registry.id
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    series: list[int] = []
    values: list = []
    times: list = []
    counts: list[int] = []
    metric_payload: list[int] = []
    errors: list[tuple[int, str]] = []
    for i, p in enumerate(payloads):
        try:
            doc = loads(p)
        except decode_error as exc:
            errors.append((i, f"invalid JSON at char {exc.pos}: {exc.msg}"))
            continue
        batch = False
        if type(doc) is dict and "metrics" in doc:
            metrics, batch = doc["metrics"], True
            if type(metrics) is not list:
                errors.append((i, f"'metrics' is {_type_word(metrics)}, expected an array"))
                continue
        elif type(doc) is list:
            metrics, batch = doc, True
        else:
            metrics = (doc,)
        for j, m in enumerate(metrics):
            try:
                tags = m["tags"]
                fields = m["fields"]
                t = m["timestamp"]
                site = tags["site"]
                dev = tags.get("device") or m["name"]
            except (KeyError, TypeError, AttributeError):
                errors.append((i, _metric_problem(m, j, batch)))
                continue
            tt = type(t)
            if ((tt is not int and tt is not float) or type(site) is not str
                    or type(dev) is not str or type(fields) is not dict or not fields):
                errors.append((i, _metric_problem(m, j, batch)))
                continue
            key = (site, dev, *fields)
            sids = cache.get(key)
            if sids is None:
                sids = cache[key] = tuple(reg_id(site, dev, f) for f in fields)
            series.extend(sids)
            values.extend(fields.values())
            times.append(t)
            counts.append(len(sids))
            metric_payload.append(i)
    return _json_arrays(len(payloads), series, values, times, counts, metric_payload,
                        errors, mult, registry)


def _json_arrays(n_payloads: int, series: list[int], values: list, times: list,
                 counts: list[int], metric_payload: list[int], errors: list[tuple[int, str]],
                 mult: int, registry: Registry) -> Decoded:
    n = len(series)
    sid = np.fromiter(series, np.int32, count=n)
    cnt = np.fromiter(counts, np.int64, count=len(counts))
    mp = np.fromiter(metric_payload, np.int32, count=len(metric_payload))
    origin = np.repeat(mp, cnt)
    t_ns, t_ok = _times_ns(times, mult)
    time_ns = np.repeat(t_ns, cnt)
    keep = None
    if not t_ok.all():
        for k in np.flatnonzero(~t_ok):
            errors.append((int(mp[k]), f"timestamp {times[k]!r} is out of range for unit "
                           f"{_unit_name(mult)!r}; check the timestamp unit"))
        keep = np.repeat(t_ok, cnt)
    types = set(map(type, values))
    if types <= {int, float}:
        try:
            value = np.array(values, np.float64)
        except OverflowError:
            value, good = _values_slow(values)
            keep = good if keep is None else keep & good
            _value_errors(np.flatnonzero(~good), values, sid, origin, registry, errors)
    else:
        value, good = _values_slow(values)
        _value_errors(np.flatnonzero(~good), values, sid, origin, registry, errors)
        keep = good if keep is None else keep & good
    if keep is not None:
        time_ns, sid, value, origin = time_ns[keep], sid[keep], value[keep], origin[keep]
    return _finish(n_payloads, time_ns, sid, value, origin, errors, registry)


def _unit_name(mult: int) -> str:
    return next(k for k, v in UNIT_NS.items() if v == mult)


def _values_slow(values: list) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros(len(values), np.float64)
    good = np.zeros(len(values), np.bool_)
    for k, v in enumerate(values):
        tv = type(v)
        if tv is float or tv is int:
            try:
                out[k] = v
                good[k] = True
            except OverflowError:
                pass
    return out, good


def _value_errors(bad: np.ndarray, values: list, sid: np.ndarray, origin: np.ndarray,
                  registry: Registry, errors: list[tuple[int, str]]) -> None:
    for k in bad:
        v = values[k]
        _, dev, name = registry.keys[sid[k]]
        what = "too large for a float" if type(v) is int else f"is {_type_word(v)}"
        shown = f" ({v!r})" if isinstance(v, str | bool) and len(repr(v)) < 40 else ""
        errors.append((int(origin[k]), f"field {name!r} of device {dev!r} {what}{shown}; "
                                       "only numeric fields are readings"))


# --------------------------------------------------------------------------- line protocol

_KEY = r"(?:[^,= \\]|\\.)+"
_FVAL = r'"(?:[^"\\]|\\.)*"|[^, "]+'
_LINE = re.compile(rf"(?P<m>(?:[^, \\]|\\.)+)(?P<tags>(?:,{_KEY}={_KEY})*) "
                   rf"(?P<fields>{_KEY}=(?:{_FVAL})(?:,{_KEY}=(?:{_FVAL}))*)(?: (?P<ts>\S+))?")
_TAG = re.compile(rf",({_KEY})=({_KEY})")
_FIELD = re.compile(rf"(?:^|,)({_KEY})=({_FVAL})")
_UNESCAPE = re.compile(r"\\([,= \\])")
_INT = re.compile(r"[+-]?\d+[iu]")
_BOOLS = frozenset({"t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"})
_SHAPE = "expected 'measurement,site=…,device=… field=value,… timestamp_ns'"


def escape_key(s: str) -> str:
    """Escape a tag key/value or field key (backslash, comma, equals, space)."""
    if "\n" in s or "\r" in s:
        msg = f"line protocol cannot carry a newline in a key or tag: {s!r}"
        raise ValueError(msg)
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def escape_measurement(s: str) -> str:
    """Escape a measurement name (comma, space, backslash; ``=`` is allowed)."""
    return escape_key(s).replace("\\=", "=")


def _unescape(s: str) -> str:
    return _UNESCAPE.sub(r"\1", s) if "\\" in s else s


def _series_of(meas: str, tags: dict[str, str]) -> tuple[str, str] | str:
    """(site, device) from a line's tags, or the reason it has none."""
    if not meas:
        return "missing measurement name"
    site = tags.get("site")
    if site is None:
        return "missing tag 'site'"
    return site, tags.get("device") or meas


def _field_value(key: str, raw: str) -> float | str:
    """A field's numeric value, or the reason it is not a reading."""
    try:
        return float(raw)
    except ValueError:
        pass
    if _INT.fullmatch(raw):
        return float(int(raw[:-1]))
    if raw in _BOOLS:
        return f"field {key!r} is a boolean"
    if raw.startswith('"'):
        return f"field {key!r} is a string"
    return f"field {key!r} has invalid value {raw!r}"


def parse_line(line: str) -> tuple[str, str, list[tuple[str, float | str]], int] | str:
    """Parse one line with escapes and quoted strings (the general, slow path).

    Returns (site, device, [(field, value or reason)], time_ns) or the reason the line is
    unusable. Also the reference the vectorised path is tested against.
    """
    m = _LINE.fullmatch(line)
    if m is None:
        return f"cannot parse line: {_SHAPE}"
    ts = m["ts"]
    if ts is None:
        return "line has no timestamp (pueflow needs event time)"
    try:
        t = int(ts)
    except ValueError:
        return f"invalid timestamp {ts!r}; expected integer nanoseconds"
    if abs(t) > _I64_MAX:
        return f"timestamp {ts} is out of range for nanoseconds"
    tags = {_unescape(k): _unescape(v) for k, v in _TAG.findall(m["tags"])}
    sd = _series_of(_unescape(m["m"]), tags)
    if isinstance(sd, str):
        return sd
    fields = [(k := _unescape(rk), _field_value(k, rv)) for rk, rv in _FIELD.findall(m["fields"])]
    return sd[0], sd[1], fields, t


@dataclass(slots=True)
class _Lines:
    line: np.ndarray
    time_ns: np.ndarray
    series: np.ndarray
    value: np.ndarray
    errors: list[tuple[int, str]]


def _head(head: str) -> tuple[str, str] | str:
    meas, *pairs = head.split(",")
    tags = {}
    for kv in pairs:
        k, eq, v = kv.partition("=")
        if not eq or not k:
            return f"tag {kv!r} is not key=value"
        tags[k] = v
    return _series_of(meas, tags)


def _decode_text(text: str, registry: Registry) -> _Lines:
    """Vectorised line protocol: polars string kernels for plain lines, :func:`parse_line`
    for the rare lines with escapes or quoted strings."""
    df = (pl.DataFrame({"l": text.split("\n")}, schema={"l": pl.String})
          .with_row_index("line")
          .with_columns(pl.col("l").str.strip_chars())
          .filter((pl.col("l") != "") & ~pl.col("l").str.starts_with("#")))
    slow_mask = pl.col("l").str.contains(r'[\\"]')
    errors: list[tuple[int, str]] = []
    slow = df.filter(slow_mask)
    fast = _decode_fast(df.filter(~slow_mask), registry, errors)
    if slow.height:
        fast = _merge_slow(fast, slow, registry, errors)
    return _Lines(*fast, errors)


def _reject(df: pl.DataFrame, cond: pl.Expr, reason: pl.Expr | str,
            errors: list[tuple[int, str]]) -> pl.DataFrame:
    bad = df.filter(cond)
    if bad.height:
        r = bad.select("line", pl.lit(reason) if isinstance(reason, str) else reason)
        errors.extend(r.unique(maintain_order=True).iter_rows())
        df = df.filter(~cond)
    return df


def _decode_fast(df: pl.DataFrame, registry: Registry, errors: list[tuple[int, str]]):
    df = df.select("line", pl.col("l").str.split_exact(" ", 3).alias("p")).unnest("p")
    df = _reject(df, pl.col("field_1").is_null() | pl.col("field_3").is_not_null(),
                 f"cannot parse line: {_SHAPE}", errors)
    df = _reject(df, pl.col("field_2").is_null(),
                 "line has no timestamp (pueflow needs event time)", errors)
    df = df.with_columns(pl.col("field_2").cast(pl.Int64, strict=False).alias("ts"))
    df = _reject(df, pl.col("ts").is_null(), pl.format("invalid timestamp '{}'; expected "
                 "integer nanoseconds", pl.col("field_2")), errors)
    kv = (df.select("line", pl.col("field_0").alias("head"), "ts",
                    pl.col("field_1").str.split(",").alias("kv"))
          .explode("kv")
          .with_columns(pl.col("kv").str.split_exact("=", 1).alias("p")).unnest("p")
          .rename({"field_0": "key", "field_1": "raw"}))
    kv = _reject(kv, pl.col("raw").is_null() | (pl.col("key") == ""),
                 pl.format("field '{}' is not key=value", pl.col("kv")), errors)
    raw = pl.col("raw")
    kv = kv.with_columns(raw.cast(pl.Float64, strict=False).alias("v"))
    if kv["v"].null_count():
        as_int = pl.when(raw.str.contains(r"^[+-]?\d+[iu]$")).then(
            raw.str.slice(0, raw.str.len_bytes() - 1).cast(pl.Float64, strict=False))
        kv = kv.with_columns(pl.coalesce("v", as_int).alias("v"))
        kv = _reject(kv, pl.col("v").is_null(),
                     pl.when(raw.is_in(list(_BOOLS))).then(pl.format("field '{}' is a boolean", "key"))
                     .otherwise(pl.format("field '{}' has invalid value '{}'", "key", "raw")),
                     errors)
    kv = _with_series(kv.select("line", "head", "key", "ts", "v"), registry, errors)
    return (kv["line"].to_numpy().astype(np.int64), kv["ts"].to_numpy(),
            kv["sid"].to_numpy(), kv["v"].to_numpy())


def _with_series(kv: pl.DataFrame, registry: Registry,
                 errors: list[tuple[int, str]]) -> pl.DataFrame:
    """Join each (head, key) to its series id through a per-registry table; only keys not
    seen before go through Python."""
    table = _LP_KEYS.get(registry)
    if table is None:
        table = pl.DataFrame(schema={"head": pl.String, "key": pl.String, "sid": pl.Int32})
    out = kv.join(table, on=["head", "key"], how="left", maintain_order="left")
    if not out["sid"].null_count():
        return out
    new = out.filter(pl.col("sid").is_null()).select("head", "key").unique(maintain_order=True)
    heads: dict[str, tuple[str, str] | str] = {}
    rows = []
    for h, k in new.iter_rows():
        sd = heads.get(h)
        if sd is None:
            sd = heads[h] = _head(h)
        if isinstance(sd, tuple):
            rows.append((h, k, registry.id(sd[0], sd[1], k)))
    bad = [h for h, sd in heads.items() if isinstance(sd, str)]
    if bad:
        why = pl.DataFrame({"head": bad, "why": [heads[h] for h in bad]})
        errors.extend(out.join(why, on="head").select("line", "why")
                      .unique(maintain_order=True).iter_rows())
    if rows:
        added = pl.DataFrame(rows, schema=table.schema, orient="row")
        table = pl.concat([table, added])
        if table.height <= _LP_CACHE_MAX:
            _LP_KEYS[registry] = table
        out = out.drop("sid").join(table, on=["head", "key"], how="left", maintain_order="left")
    return out.filter(pl.col("sid").is_not_null())


def _merge_slow(fast: tuple, slow: pl.DataFrame, registry: Registry,
                errors: list[tuple[int, str]]) -> tuple:
    line, ts, sid, val = [], [], [], []
    for ln, text in slow.iter_rows():
        p = parse_line(text)
        if isinstance(p, str):
            errors.append((ln, p))
            continue
        site, dev, fields, t = p
        for k, v in fields:
            if isinstance(v, str):
                errors.append((ln, v))
            else:
                line.append(ln)
                ts.append(t)
                sid.append(registry.id(site, dev, k))
                val.append(v)
    cat = [np.concatenate([a, np.asarray(b, a.dtype)]) for a, b in
           zip(fast, (line, ts, sid, val), strict=True)]
    order = np.argsort(cat[0], kind="stable")
    return tuple(c[order] for c in cat)


def decode_line(payloads: list[bytes], registry: Registry) -> Decoded:
    """Decode InfluxDB line protocol, one or many lines a payload.

    Integers (``12i``, ``7u``) and floats become readings; boolean and string fields are
    errors for that field. Timestamps are integer ns since the epoch and required (the
    pipeline needs event time). Blank lines and ``#`` comments are skipped.
    """
    if not payloads:
        return Decoded.empty()
    counts = np.fromiter((p.count(b"\n") + 1 for p in payloads), np.int64, count=len(payloads))
    line_payload = np.repeat(np.arange(len(payloads), dtype=np.int32), counts)
    errors: list[tuple[int, str]] = []
    try:
        text = b"\n".join(payloads).decode("utf-8")
    except UnicodeDecodeError:
        parts = []
        for i, p in enumerate(payloads):
            try:
                parts.append(p.decode("utf-8"))
            except UnicodeDecodeError as exc:
                errors.append((i, f"not UTF-8 at byte {exc.start}"))
                parts.append("\n" * p.count(b"\n"))
        text = "\n".join(parts)
    lines = _decode_text(text, registry)
    errors.extend((int(line_payload[ln]), r) for ln, r in lines.errors)
    origin = line_payload[lines.line]
    return _finish(len(payloads), lines.time_ns, lines.series, lines.value, origin, errors,
                   registry)


def decode_line_text(text: str, registry: Registry) -> Decoded:
    """Decode line protocol text where each line is its own record (``origin`` = line
    index, 0-based; for files). Blank and comment lines yield nothing and no error."""
    lines = _decode_text(text, registry)
    return _finish(None, lines.time_ns, lines.series, lines.value, lines.line, lines.errors,
                   registry)


# --------------------------------------------------------------------------- encoders

CANONICAL = ("time", "site", "device", "point", "value")
_GROUP = ["t", "site", "device"]


def _canonical(df: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in CANONICAL if c not in df.columns]
    if missing:
        msg = f"encode needs the canonical columns {CANONICAL}; missing {missing}"
        raise ValueError(msg)
    return df.select(pl.col("time").cast(pl.Datetime("ns", "UTC")).dt.epoch("ns").alias("t"),
                     *(pl.col(c).cast(pl.String) for c in CANONICAL[1:4]),
                     pl.col("value").cast(pl.Float64))


def _escaped(col: str, escape: Callable[[str], str]) -> pl.Expr:
    """``col`` mapped through ``escape``, which runs once per distinct value."""
    return pl.col(col).map_batches(
        lambda s: s.replace_strict(u := s.unique(), [escape(x) for x in u.to_list()],
                                   return_dtype=pl.String), return_dtype=pl.String)


def _runs(df: pl.DataFrame) -> pl.Expr:
    """Run number of consecutive rows sharing (time, site, device): a snapshot is a run, so
    encoding never reorders readings (a late reading stays late on the wire)."""
    changed = pl.lit(False)
    for c in _GROUP:
        changed = changed | (pl.col(c) != pl.col(c).shift()).fill_null(True)
    return changed.cum_sum()


def _snapshots(df: pl.DataFrame, field: pl.Expr) -> pl.DataFrame | None:
    """One row per run of (time, site, device) in arrival order with its fields joined by
    commas, or None when a snapshot repeats a point (then the Python path keeps it)."""
    g = (df.with_columns(field.alias("f"), _runs(df).alias("_run"))
         .group_by("_run", maintain_order=True)
         .agg(*[pl.col(c).first() for c in _GROUP], pl.col("f").str.join(","),
              pl.len().alias("n"), pl.col("point").n_unique().alias("u")))
    return None if (g["n"] != g["u"]).any() else g


def _metric_groups(df: pl.DataFrame):
    """(time_ns, site, device, fields) per snapshot in arrival order; a repeated point or a
    change of (time, site, device) starts a new metric."""
    t, sites, devs = df["t"].to_list(), df["site"].to_list(), df["device"].to_list()
    points, values = df["point"].to_list(), df["value"].to_list()
    key = None
    fields: dict[str, float] = {}
    for k in range(len(t)):
        nk = (t[k], sites[k], devs[k])
        if nk != key or points[k] in fields:
            if key is not None:
                yield (*key, fields)
            key, fields = nk, {}
        fields[points[k]] = values[k]
    if key is not None:
        yield (*key, fields)


def _timestamp(mult: int) -> pl.Expr:
    """Integer ns -> exact decimal text in units of ``mult`` ns ("1714564800001.5")."""
    t = pl.col("t")
    if mult == 1:
        return t.cast(pl.String)
    a = t.abs()
    whole = pl.concat_str(pl.when(t < 0).then(pl.lit("-")).otherwise(pl.lit("")),
                          (a // mult).cast(pl.String))
    frac = (a % mult).cast(pl.String).str.zfill(len(str(mult)) - 1).str.strip_chars_end("0")
    return pl.when(a % mult == 0).then(whole).otherwise(pl.concat_str(whole, pl.lit("."), frac))


def _pack(lines: list[str], per_message: int, head: str, sep: str, tail: str) -> list[bytes]:
    if per_message <= 1:
        return [ln.encode() for ln in lines]
    return [(head + sep.join(lines[i:i + per_message]) + tail).encode()
            for i in range(0, len(lines), per_message)]


def encode_json(df: pl.DataFrame, timestamp_unit: str = "s", per_message: int = 1,
                measurement: str = "telemetry") -> list[bytes]:
    """Telegraf JSON messages from the canonical long form.

    Readings of the same (site, device, time) become one metric with several fields, in
    time order. ``per_message > 1`` packs that many metrics into the batch form
    ``{"metrics": [...]}``. Timestamps are integers in ``timestamp_unit`` when exact, else
    floats. NaN/inf values become JSON ``null`` (the decoder reports them).
    """
    mult = unit_ns(timestamp_unit)
    df = _canonical(df)
    jstr = lambda x: orjson.dumps(x).decode()  # noqa: E731
    v = pl.col("value")
    value = pl.when(v.is_finite()).then(v.cast(pl.String)).otherwise(pl.lit("null"))
    g = _snapshots(df, pl.concat_str(_escaped("point", jstr), pl.lit(":"), value))
    if g is None:
        metrics = [orjson.dumps({"name": measurement, "tags": {"site": site, "device": dev},
                                 "fields": f, "timestamp": t // mult if t % mult == 0 else t / mult}
                                ).decode() for t, site, dev, f in _metric_groups(df)]
    else:
        metrics = g.select(pl.concat_str(
            pl.lit(f'{{"name":{jstr(measurement)},"tags":{{"site":'), _escaped("site", jstr),
            pl.lit(',"device":'), _escaped("device", jstr), pl.lit('},"fields":{'), "f",
            pl.lit('},"timestamp":'), _timestamp(mult), pl.lit("}"))).to_series().to_list()
    return _pack(metrics, per_message, '{"metrics":[', ",", "]}")


def encode_line(df: pl.DataFrame, lines_per_message: int = 1,
                measurement: str = "telemetry") -> list[bytes]:
    """InfluxDB line protocol messages from the canonical long form (ns timestamps).

    One line per (site, device, time), in time order, each point a float field;
    ``lines_per_message`` lines joined by newlines per message.
    """
    df = _canonical(df)
    g = _snapshots(df, pl.concat_str(_escaped("point", escape_key), pl.lit("="),
                                     pl.col("value").cast(pl.String)))
    meas = escape_measurement(measurement)
    if g is None:
        lines = [f"{meas},site={escape_key(site)},device={escape_key(dev)} "
                 + ",".join(f"{escape_key(k)}={v!r}" for k, v in f.items()) + f" {t}"
                 for t, site, dev, f in _metric_groups(df)]
    else:
        lines = g.select(pl.concat_str(
            pl.lit(f"{meas},site="), _escaped("site", escape_key), pl.lit(",device="),
            _escaped("device", escape_key), pl.lit(" "), "f", pl.lit(" "),
            pl.col("t").cast(pl.String))).to_series().to_list()
    return _pack(lines, lines_per_message, "", "\n", "")
