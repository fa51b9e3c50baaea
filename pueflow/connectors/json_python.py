"""Telegraf JSON decoded by orjson and Python.

This is the path for every payload the numba scan (:mod:`.json_scan`) leaves, and the one
that words the reasons.

Timestamps are numbers in the configured unit (Telegraf's ``json_timestamp_units``: any
power of ten of ns, ``1s`` by default, e.g. ``10ms``) or RFC 3339 strings
(``json_timestamp_format``); a time outside 1970..2260 is refused with a reason.
"""

from __future__ import annotations

import re
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import orjson

from pueflow.connectors.wire_base import (
    MAX_TIME_NS,
    MIN_TIME_NS,
    time_range_reason,
    unit_name,
)

if TYPE_CHECKING:
    from pueflow.schema.registry import Registry

#: (time [ns], series id, value, payload index, errors as (payload index, reason)).
_Arrays: TypeAlias = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[int, str]]]

_I64_MAX = np.iinfo(np.int64).max
#: key (site, device, *field names) -> series ids, per registry (ids never change).
_JSON_KEYS: weakref.WeakKeyDictionary[Registry, dict[tuple[str, ...], tuple[int, ...]]] = (
    weakref.WeakKeyDictionary())
_JSON_CACHE_MAX = 1_000_000
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
                      r"(?:([Zz])|([+-])(\d\d):(\d\d))")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339_ns(s: str) -> int | None:
    """Return nanoseconds since the epoch of an RFC 3339 time, or None if ``s`` is not one.

    ``2018-05-05T00:06:35.5Z``; offsets allowed, up to 9 fraction digits kept exactly.
    """
    m = _RFC3339.fullmatch(s)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    try:
        d = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    sec = int((d - _EPOCH).total_seconds())
    if m[9]:
        sec -= (1 if m[9] == "+" else -1) * (int(m[10]) * 3600 + int(m[11]) * 60)
    return sec * 10**9 + int((m[7] or "0").ljust(9, "0"))


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
    return f"{where}'timestamp' is {_type_word(t)}, expected a number or an RFC 3339 time"


def _keys(registry: Registry) -> dict[tuple[str, ...], tuple[int, ...]]:
    cache = _JSON_KEYS.get(registry)
    if cache is None or len(cache) > _JSON_CACHE_MAX:
        cache = _JSON_KEYS[registry] = {}
    return cache


def _times_ns(times: list, mult: int) -> tuple[np.ndarray, np.ndarray]:
    """Convert metric timestamps to int64 ns and a mask of those that convert exactly.

    Numbers are in units of ``mult`` ns, strings RFC 3339; the range is the caller's check.
    """
    if any(type(t) is str for t in times):
        parsed = [rfc3339_ns(t) if type(t) is str else None for t in times]
        is_str = np.array([type(t) is str for t in times])
        nums = [0 if s else t for t, s in zip(times, is_str.tolist(), strict=True)]
        t_ns, ok = _times_ns(nums, mult)
        got = np.array([p if p is not None else 0 for p in parsed], np.int64)
        return np.where(is_str, got, t_ns), np.where(is_str, [p is not None for p in parsed], ok)
    try:
        arr = np.array(times)
    except OverflowError:
        arr = np.array([float(t) for t in times])
    if arr.dtype.kind in "iu":
        ok = np.abs(arr) <= _I64_MAX // mult
        return np.where(ok, arr, 0).astype(np.int64) * mult, ok
    # whole and fractional parts apart: 1714564800001.5 ms stays exact to the ns
    arr = arr.astype(np.float64)
    whole = np.floor(arr)
    ok = np.isfinite(arr) & (np.abs(whole) < _I64_MAX // mult)
    whole = np.where(ok, whole, 0)
    frac = np.where(ok, arr - whole, 0.0)
    return whole.astype(np.int64) * mult + np.round(frac * mult).astype(np.int64), ok


def decode_python(payloads: list[bytes], registry: Registry, mult: int) -> _Arrays:
    """Decode in Python: (time [ns], series, value, payload index, errors)."""
    cache = _keys(registry)
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
            if ((tt is not int and tt is not float and tt is not str) or type(site) is not str
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
    return _json_arrays(series, values, times, counts, metric_payload, errors, mult, registry)


def _json_arrays(series: list[int], values: list, times: list, counts: list[int],
                 metric_payload: list[int], errors: list[tuple[int, str]], mult: int,
                 registry: Registry) -> _Arrays:
    n = len(series)
    sid = np.fromiter(series, np.int32, count=n)
    cnt = np.fromiter(counts, np.int64, count=len(counts))
    mp = np.fromiter(metric_payload, np.int32, count=len(metric_payload))
    origin = np.repeat(mp, cnt)
    t_ns, t_ok = _times_ns(times, mult)
    in_range = t_ok & (t_ns >= MIN_TIME_NS) & (t_ns < MAX_TIME_NS)
    time_ns = np.repeat(t_ns, cnt)
    keep = None
    if not in_range.all():
        for k in np.flatnonzero(~in_range):
            t = times[k]
            why = (f"'timestamp' is a string that is not an RFC 3339 time ({t!r})"
                   if type(t) is str and not t_ok[k] else
                   f"timestamp {t!r} is out of range for unit {unit_name(mult)!r}; check "
                   "the timestamp unit" if not t_ok[k] else
                   time_range_reason(int(t_ns[k]), repr(t), mult))
            errors.append((int(mp[k]), why))
        keep = np.repeat(in_range, cnt)
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
    return time_ns, sid, value, origin, errors


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
