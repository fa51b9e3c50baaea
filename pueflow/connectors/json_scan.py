"""Numba scan of Telegraf JSON bytes, one pass per poll.

It reads the shapes Telegraf's JSON serializer writes (one metric ``{"fields", "name",
"tags", "timestamp"}``, the batch ``{"metrics": [...]}`` or a bare array of metrics, keys in
any order, any JSON white space) and decodes a payload only when every byte of it is
understood: strings without escapes, numeric fields, a numeric timestamp inside the accepted
range, no duplicate keys, nothing nested where Telegraf writes scalars. Any other payload
(bad JSON, a string or boolean field, an escape, an RFC 3339 time, a missing tag...) is
marked for the Python decoder, which gives the exact reason; so the scan only has to be
right on what it accepts, and is never the one that refuses.

Each field gets a 128-bit hash of the raw bytes of its site, device (or measurement name)
and key literals, which :class:`pueflow.connectors.lp_keys.KeyTable` maps to a series id.
"""

from __future__ import annotations

import numpy as np

from pueflow.connectors.json_tokens import (
    after,
    fields,
    mix,
    same,
    scalar,
    string,
    tags,
    timestamp,
    ws,
)
from pueflow.jit import njit

#: key words, compared with their quotes
_K_FIELDS = np.frombuffer(b'"fields"', np.uint8)
_K_NAME = np.frombuffer(b'"name"', np.uint8)
_K_TAGS = np.frombuffer(b'"tags"', np.uint8)
_K_TIMESTAMP = np.frombuffer(b'"timestamp"', np.uint8)
_K_METRICS = np.frombuffer(b'"metrics"', np.uint8)
# seen-key bits of a metric
_B_FIELDS, _B_NAME, _B_TAGS, _B_TIME = 1, 2, 4, 8
# _metric results
_OK, _FAIL, _METRICS = 0, 1, 2


@njit
def _metric(buf, i, end, f, m, mult, lo_ns, hi_ns, top):
    """Read the metric object at ``i``: (result, position).

    ``_METRICS`` (only if ``top``): a ``"metrics"`` key came first, position is at its value.
    """
    m_s0, m_s1, m_d0, m_d1, m_time, m_first, nm = m
    n = f[7]
    first = n[0]
    seen = 0
    n0 = n1 = s0 = s1 = d0 = d1 = -1
    t = np.int64(0)
    i = ws(buf, i + 1, end)
    if i < end and buf[i] == 125:
        return _FAIL, i
    while True:
        k0 = i
        i = string(buf, i, end)
        if i < 0:
            return _FAIL, i
        k1 = i
        i = ws(buf, i, end)
        if i >= end or buf[i] != 58:
            return _FAIL, i
        i = ws(buf, i + 1, end)
        c = buf[i] if i < end else 0
        if same(buf, k0, k1, _K_FIELDS):
            if seen & _B_FIELDS or c != 123:
                return _FAIL, i
            seen |= _B_FIELDS
            i = fields(buf, i, end, f)
        elif same(buf, k0, k1, _K_TAGS):
            if seen & _B_TAGS or c != 123:
                return _FAIL, i
            seen |= _B_TAGS
            i, s0, s1, d0, d1 = tags(buf, i, end)
        elif same(buf, k0, k1, _K_NAME):
            if seen & _B_NAME:
                return _FAIL, i
            seen |= _B_NAME
            n0 = i
            i = scalar(buf, i, end)
            n1 = i if c == 34 else -1
        elif same(buf, k0, k1, _K_TIMESTAMP):
            if seen & _B_TIME:
                return _FAIL, i
            seen |= _B_TIME
            i, t = timestamp(buf, i, end, mult, lo_ns, hi_ns)
        elif top and same(buf, k0, k1, _K_METRICS):
            return (_METRICS if seen == 0 else _FAIL), i
        else:
            i = scalar(buf, i, end)
        if i < 0:
            return _FAIL, i
        i, more = after(buf, i, end, 125)
        if i < 0:
            return _FAIL, i
        if not more:
            break
    if seen != _B_FIELDS | _B_NAME | _B_TAGS | _B_TIME and not (
            seen == _B_FIELDS | _B_TAGS | _B_TIME and d1 - d0 > 2):
        return _FAIL, i
    if s0 < 0 or n[0] == first:
        return _FAIL, i
    if d1 - d0 <= 2:  # no device tag, or an empty one: the measurement name
        if n1 < 0:
            return _FAIL, i
        d0, d1 = n0, n1
    k = nm[0]
    m_s0[k], m_s1[k], m_d0[k], m_d1[k], m_time[k], m_first[k] = s0, s1, d0, d1, t, first
    nm[0] = k + 1
    return _OK, i


@njit
def _payload(buf, i, end, f, m, mult, lo_ns, hi_ns):
    """Decode one payload; False (and nothing kept) unless all of it is understood."""
    i = ws(buf, i, end)
    if i >= end:
        return False
    if buf[i] == 91:  # a bare array of metrics
        i = _array(buf, i, end, f, m, mult, lo_ns, hi_ns)
        return i >= 0 and ws(buf, i, end) == end
    if buf[i] != 123:
        return False
    code, i = _metric(buf, i, end, f, m, mult, lo_ns, hi_ns, True)
    if code == _FAIL:
        return False
    if code == _METRICS:
        if i >= end or buf[i] != 91:
            return False
        i = _array(buf, i, end, f, m, mult, lo_ns, hi_ns)
        if i < 0:
            return False
        while True:  # the rest of the batch object: nothing pueflow reads may follow
            i, more = after(buf, i, end, 125)
            if i < 0 or not more:
                break
            k0 = i
            i = string(buf, i, end)
            if i < 0:
                return False
            for w in (_K_FIELDS, _K_NAME, _K_TAGS, _K_TIMESTAMP, _K_METRICS):
                if same(buf, k0, i, w):
                    return False
            i = ws(buf, i, end)
            if i >= end or buf[i] != 58:
                return False
            i = scalar(buf, ws(buf, i + 1, end), end)
            if i < 0:
                return False
    return i >= 0 and ws(buf, i, end) == end


@njit
def _array(buf, i, end, f, m, mult, lo_ns, hi_ns):
    """End of the array of metric objects at ``i`` (after ``[``), or -1."""
    i = ws(buf, i + 1, end)
    if i < end and buf[i] == 93:
        return i + 1
    while True:
        if i >= end or buf[i] != 123:
            return -1
        code, i = _metric(buf, i, end, f, m, mult, lo_ns, hi_ns, False)
        if code != _OK:
            return -1
        i, more = after(buf, i, end, 93)
        if i < 0 or not more:
            return i


@njit
def _scan(buf, ends, mult, lo_ns, hi_ns):
    n_colon = 0
    n_brace = 0
    for c in buf:
        n_colon += c == 58
        n_brace += c == 123
    nf = n_colon + 1
    f = (np.empty(nf, np.int64), np.empty(nf, np.int64), np.empty(nf, np.int64),
         np.empty(nf, np.int64), np.empty(nf, np.float64), np.empty(nf, np.bool_),
         np.empty(nf, np.uint64), np.zeros(1, np.int64))
    nmax = n_brace + 1
    m = (np.empty(nmax, np.int64), np.empty(nmax, np.int64), np.empty(nmax, np.int64),
         np.empty(nmax, np.int64), np.empty(nmax, np.int64), np.empty(nmax, np.int64),
         np.zeros(1, np.int64))
    ok = np.zeros(len(ends), np.bool_)
    m_pay = np.empty(nmax, np.int32)
    p0 = 0
    for p in range(len(ends)):
        nf0, nm0 = f[7][0], m[6][0]
        ok[p] = _payload(buf, p0, ends[p], f, m, mult, lo_ns, hi_ns)
        if not ok[p]:
            f[7][0], m[6][0] = nf0, nm0
        m_pay[nm0:m[6][0]] = p
        p0 = ends[p]
    # per field: its payload, time and series hash (site, device or name, key literals)
    n_f, n_m = f[7][0], m[6][0]
    f_pay = np.empty(n_f, np.int32)
    f_time = np.empty(n_f, np.int64)
    f_h1 = np.empty(n_f, np.uint64)
    f_h2 = np.empty(n_f, np.uint64)
    f_met = np.empty(n_f, np.int64)
    for k in range(n_m):
        last = m[5][k + 1] if k + 1 < n_m else n_f
        g1, g2 = mix(np.uint64(0xCBF29CE484222325), np.uint64(0x2545F4914F6CDD1D),
                       buf, m[0][k], m[1][k])
        g1, g2 = mix(g1, g2, buf, m[2][k], m[3][k])
        for j in range(m[5][k], last):
            h1, h2 = mix(g1, g2, buf, f[0][j], f[1][j])
            f_pay[j], f_time[j], f_h1[j], f_h2[j] = m_pay[k], m[4][k], h1 | np.uint64(1), h2
            f_met[j] = k
    return (ok, (f_pay, f_time, f_h1, f_h2, f[4][:n_f], f[5][:n_f], f[0][:n_f], f[1][:n_f],
                 f[2][:n_f], f[3][:n_f], f_met),
            (m[0][:n_m], m[1][:n_m], m[2][:n_m], m[3][:n_m]))


def scan(buf: np.ndarray, ends: np.ndarray, mult: int, lo_ns: int, hi_ns: int) -> tuple:
    """Scan Telegraf JSON payloads laid back to back in ``buf``.

    Parameters
    ----------
    buf : array [uint8]
        The payloads, joined.
    ends : array [int64]
        Exclusive end offset of each payload.
    mult : int
        Nanoseconds per timestamp unit.
    lo_ns, hi_ns : int
        A timestamp outside ``[lo_ns, hi_ns)`` [ns] leaves its payload to Python.

    Returns
    -------
    ok : array [bool]
        Per payload, whether the scan decoded it (the others hold nothing below).
    fields : tuple of arrays
        Per field: payload, time [ns], hash (2 x uint64), value, needs a correctly rounded
        conversion, key span, value span, metric.
    metrics : tuple of arrays
        Per metric: site literal span, device (or name) literal span.
    """
    # the hashes wrap modulo 2**64 by design; numpy scalars (NUMBA_DISABLE_JIT=1) warn on it
    with np.errstate(over="ignore"):
        return _scan(buf, ends, mult, lo_ns, hi_ns)
