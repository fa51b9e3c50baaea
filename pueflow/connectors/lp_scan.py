"""Numba scan of InfluxDB line protocol bytes, one pass per poll.

The grammar follows the reference decoder (influxdata/line-protocol v2, the one InfluxDB and
Telegraf use): sections are separated by runs of spaces; a backslash escapes only the
characters that would end its token (measurement: comma, space; tag keys, tag values and
field keys: comma, equals, space; string values: backslash, quote, n, r, t) and is a
literal character before anything else; string values may hold raw newlines; blank lines,
``#`` comment lines, leading spaces and trailing spaces are skipped; every token must be
valid UTF-8. A record with any syntax error is refused whole (its code and byte offset are
kept for the reason), and scanning resumes after the next newline.

:func:`scan` returns per-record and per-field arrays; names are not decoded here: each
field gets a 128-bit hash of its raw (measurement + tags, field key) bytes, which
:mod:`pueflow.connectors.lp_keys` maps to a series id.
"""

from __future__ import annotations

import numpy as np

from pueflow.connectors.lp_numbers import is_bool, parse_float, parse_int, parse_time, utf8_ok
from pueflow.jit import njit

# record status codes (0 = good); line_protocol.py turns them into reasons
(OK, E_UTF8, E_MEAS_EOF, E_MEAS_START, E_COMMENT, E_TAG_COMMA_EOF, E_TAG_COMMA_SPACE,
 E_TAG_EOF, E_TAG_NO_EQ, E_TAG_EMPTY_KEY, E_TAG_BAD, E_TAG_EMPTY_VALUE, E_FKEY_EOF,
 E_FKEY_BAD, E_FKEY_NO_EQ, E_FVAL_EOF, E_STR_EOF, E_FVAL_MISSING, E_FVAL_TYPE,
 E_AFTER_FIELD, E_TS_SYNTAX, E_TS_EXTRA, E_INT, E_UINT, E_FLOAT, E_BOOL, E_TS_RANGE,
 E_NO_TS, E_TS_OUT) = range(29)
#: field kinds
K_FLOAT, K_INT, K_UINT, K_BOOL, K_STRING = range(5)


def _table(chars: str = "", ranges: tuple[tuple[int, int], ...] = ()) -> np.ndarray:
    t = np.zeros(256, np.bool_)
    for c in chars:
        t[ord(c)] = True
    for a, b in ranges:
        t[a:b + 1] = True
    return t


_NONPRINT = _table("\x7f", ((0, 31),))
MEAS = ~(_NONPRINT | _table(", "))
KEY = ~(_NONPRINT | _table(",= \r\n"))            # tag keys, tag values, field keys
STRING = ~_table('"')
FVAL = ~_table(", \r\n")
COMMENT = ~_NONPRINT
ESC_MEAS = _table(" ,")
ESC_KEY = _table(",= ")
ESC_STRING = _table('\\"nrt')
_FNV = np.uint64(0x100000001B3)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


@njit
def _take_esc(buf, i, end, cls, esc):
    """End of the escaped token starting at ``i`` and whether it is valid UTF-8."""
    j = i
    high = False
    while j < end:
        c = buf[j]
        if c == 92:  # a backslash: escapes the next byte only if that byte needs it
            if j + 1 >= end:
                j = end
                break
            j += 2 if esc[buf[j + 1]] else 1
            continue
        if not cls[c]:
            break
        high |= c >= 128
        j += 1
    return j, (not high) or utf8_ok(buf, i, j)


@njit
def _take(buf, i, end, cls):
    while i < end and cls[buf[i]]:
        i += 1
    return i


@njit
def _skip_spaces(buf, i, end):
    while i < end and buf[i] == 32:
        i += 1
    return i


@njit
def _eol(buf, i, end):
    """Position after an end of line at ``i`` (end of input counts), or -1."""
    if i >= end:
        return i
    if buf[i] == 10:
        return i + 1
    if buf[i] == 13 and (i + 1 >= end or buf[i + 1] == 10):
        return min(i + 2, end)
    return -1


@njit
def _skip_empty(buf, i, end):
    while True:
        start = i
        i = _skip_spaces(buf, i, end)
        if i >= end:
            return i
        c = buf[i]
        if c == 35:  # '#'
            j = _eol(buf, _take(buf, i, end, COMMENT), end)
            if j < 0:
                return start
            i = j
        elif c == 10 or c == 13:
            j = _eol(buf, i, end)
            if j < 0:
                return i
            i = j
        else:
            return i


_SEP = np.array([0xFF], np.uint8)
@njit
def _hash(h1, h2, buf, i, j):
    for k in range(i, j):
        b = np.uint64(buf[k])
        h1 = (h1 ^ b) * _FNV
        h2 = (h2 + b + np.uint64(1)) * _GOLD
    return h1, h2


@njit
def _fields(buf, i, end, line, h1, h2, f):
    """Parse the field section from ``i``; append fields to the arrays in ``f``.

    Returns (code, error offset, stop offset, key span, value span, position after the
    fields, whether a timestamp section follows).
    """
    f_line, f_k0, f_k1, f_v0, f_v1, f_kind, f_val, f_slow, f_h1, f_h2, n = f
    while True:
        k0 = i
        i, ok = _take_esc(buf, i, end, KEY, ESC_KEY)
        if not ok:
            return E_UTF8, k0, i, k0, i, 0, 0, i, False
        if i == k0:
            return (E_FKEY_EOF if i >= end else E_FKEY_BAD), i, i, k0, i, 0, 0, i, False
        k1 = i
        if i >= end or buf[i] != 61:
            return E_FKEY_NO_EQ, i, i, k0, k1, 0, 0, i, False
        i += 1
        if i >= end:
            return E_FVAL_EOF, i, i, k0, k1, 0, 0, i, False
        c = buf[i]
        v0 = i
        slow = False
        val = 0.0
        if c == 34:  # '"'
            i, ok = _take_esc(buf, i + 1, end, STRING, ESC_STRING)
            if not ok:
                return E_UTF8, v0 + 1, i, k0, k1, v0, i, i, False
            if i >= end:
                return E_STR_EOF, v0, i, k0, k1, v0, i, i, False
            i += 1
            kind = K_STRING
        elif c == 116 or c == 84 or c == 102 or c == 70:  # t T f F
            i = _take(buf, i, end, FVAL)
            kind = K_BOOL
            ok = is_bool(buf, v0, i)
            if not ok:
                return E_BOOL, v0, i, k0, k1, v0, i, i, False
        elif c == 45 or c == 46 or 48 <= c <= 57:
            i = _take(buf, i, end, FVAL)
            last = buf[i - 1]
            if last == 105 or last == 117:  # 'i', 'u'
                kind = K_INT if last == 105 else K_UINT
                good, _, val = parse_int(buf, v0, i - 1, last == 105)
                if not good:
                    return (E_INT if last == 105 else E_UINT), v0, i, k0, k1, v0, i, i, False
            else:
                kind = K_FLOAT
                st, val = parse_float(buf, v0, i)
                if st == 2:
                    return E_FLOAT, v0, i, k0, k1, v0, i, i, False
                slow = st != 0
        elif c == 32 or c == 44:
            return E_FVAL_MISSING, i, i, k0, k1, 0, 0, i, False
        else:
            i = _take(buf, i, end, FVAL)
            return E_FVAL_TYPE, v0, i, k0, k1, v0, i, i, False
        h1f, h2f = _hash(h1, h2, _SEP, 0, 1)  # never in UTF-8: head and key stay apart
        h1f, h2f = _hash(h1f, h2f, buf, k0, k1)
        f_line[n[0]], f_k0[n[0]], f_k1[n[0]], f_v0[n[0]], f_v1[n[0]] = line, k0, k1, v0, i
        f_kind[n[0]], f_val[n[0]], f_slow[n[0]] = kind, val, slow
        f_h1[n[0]], f_h2[n[0]] = h1f | np.uint64(1), h2f
        n[0] += 1
        if i >= end:
            return OK, 0, i, 0, 0, 0, 0, i, False
        c = buf[i]
        if c == 44:
            i += 1
            continue
        if not (c == 32 or c == 10 or c == 13):
            return E_AFTER_FIELD, i, i, k0, k1, v0, i, i, False
        i = _skip_spaces(buf, i, end)
        j = _eol(buf, i, end)
        if j >= 0:
            return OK, 0, j, 0, 0, 0, 0, j, False
        return OK, 0, i, 0, 0, 0, 0, i, True


@njit
def _head(buf, i, end):
    """Read the measurement and tags from ``i``.

    Returns (code, error offset, stop, measurement end, head end, fields start, key span,
    value span).
    """
    m0 = i
    i, ok = _take_esc(buf, i, end, MEAS, ESC_MEAS)
    if not ok:
        return E_UTF8, m0, i, 0, 0, 0, m0, i
    if i == m0:
        return (E_MEAS_EOF if i >= end else E_MEAS_START), i, i, 0, 0, 0, i, i
    if buf[m0] == 35:
        return E_COMMENT, m0, i, 0, 0, 0, m0, i
    m1 = i
    while True:  # i is just after the measurement or a tag value
        if i < end and buf[i] == 44:
            i += 1
            if i >= end:
                return E_TAG_COMMA_EOF, i, i, m1, 0, 0, i, i
            if buf[i] == 32 or buf[i] == 10 or buf[i] == 13:
                return E_TAG_COMMA_SPACE, i, i, m1, 0, 0, i, i
        elif i < end and buf[i] == 32:
            return OK, 0, i, m1, i, _skip_spaces(buf, i, end), 0, 0
        elif i >= end:
            return E_TAG_EOF, i, i, m1, 0, 0, i, i
        t0 = i
        i, ok = _take_esc(buf, i, end, KEY, ESC_KEY)
        if not ok:
            return E_UTF8, t0, i, m1, 0, 0, t0, i
        if i == t0 or i >= end or buf[i] != 61:
            if i >= end:
                code = E_TAG_EOF if i == t0 else E_TAG_NO_EQ
            elif i == t0:
                code = E_TAG_EMPTY_KEY if buf[i] == 61 else E_TAG_BAD
            else:
                code = E_TAG_NO_EQ
            return code, i, i, m1, 0, 0, t0, i
        t1 = i
        i, ok = _take_esc(buf, i + 1, end, KEY, ESC_KEY)
        if not ok:
            return E_UTF8, t1 + 1, i, m1, 0, 0, t0, t1
        if i == t1 + 1:
            return E_TAG_EMPTY_VALUE, i, i, m1, 0, 0, t0, t1
        if i >= end:  # the reference then wants a field key: none
            return E_FKEY_EOF, i, i, m1, 0, 0, i, i


@njit
def _time(buf, i, end):
    """Read the time section at ``i``: (code, offset, stop, token end, has time, time [unit]).

    A bad number is found after the line's end is consumed (as the reference does).
    """
    j = _take(buf, i, end, TIME)
    if j < end and not (buf[j] == 32 or buf[j] == 10 or buf[j] == 13):
        k = _take(buf, j, end, NOT_EOL)
        return E_TS_SYNTAX, i, k, k, False, 0
    k = _skip_spaces(buf, j, end)
    stop = _eol(buf, k, end)
    if stop < 0:
        return E_TS_EXTRA, k, k, _take(buf, k, end, NOT_EOL), False, 0
    if j == i:
        return OK, 0, stop, j, False, 0
    st, t = parse_time(buf, i, j)
    if st != 0:
        return (E_TS_SYNTAX if st == 1 else E_TS_RANGE), i, stop, j, False, 0
    return OK, 0, stop, j, True, t


TIME = _table("-0123456789")
NOT_EOL = ~_table("\r\n")


@njit
def _to_newline(buf, i, end):
    while i < end and buf[i] != 10:
        i += 1
    return min(i + 1, end)


def scan(buf: np.ndarray, ends: np.ndarray, mult: int, lo_ns: int, hi_ns: int) -> tuple:
    """Scan ``buf`` (payloads back to back, payload k ending at ``ends[k]``).

    Parameters
    ----------
    buf : array [uint8]
    ends : array [int64]
        Exclusive end offset of each payload.
    mult : int
        Nanoseconds per timestamp unit.
    lo_ns, hi_ns : int
        Timestamps outside ``[lo_ns, hi_ns)`` [ns] refuse their record.

    Returns
    -------
    records : tuple of arrays
        payload, start, stop, measurement end, head end, code, error offset, key span,
        value span, time [ns], has time.
    fields : tuple of arrays
        record, key span, value span, kind, value, needs slow conversion, hash (2 x uint64).
    """
    # the hashes wrap modulo 2**64 by design; numpy scalars (NUMBA_DISABLE_JIT=1) warn on it
    with np.errstate(over="ignore"):
        return _scan(buf, ends, mult, lo_ns, hi_ns)


@njit
def _scan(buf, ends, mult, lo_ns, hi_ns):
    n_nl = 0
    n_eq = 0
    for c in buf:
        n_nl += c == 10
        n_eq += c == 61
    nr = n_nl + len(ends) + 1
    r_pay = np.empty(nr, np.int32)
    r_start = np.empty(nr, np.int64)
    r_stop = np.empty(nr, np.int64)
    r_m1 = np.zeros(nr, np.int64)
    r_h1 = np.zeros(nr, np.int64)
    r_code = np.zeros(nr, np.int8)
    r_epos = np.zeros(nr, np.int64)
    r_k = np.zeros((nr, 4), np.int64)
    r_time = np.zeros(nr, np.int64)
    r_has_t = np.zeros(nr, np.bool_)
    nf = n_eq + 1
    f = (np.empty(nf, np.int32), np.empty(nf, np.int64), np.empty(nf, np.int64),
         np.empty(nf, np.int64), np.empty(nf, np.int64), np.empty(nf, np.int8),
         np.empty(nf, np.float64), np.empty(nf, np.bool_), np.empty(nf, np.uint64),
         np.empty(nf, np.uint64), np.zeros(1, np.int64))
    n = 0
    p0 = 0
    for pi in range(len(ends)):
        end = ends[pi]
        i = p0
        while True:
            i = _skip_empty(buf, i, end)
            if i >= end:
                break
            r_pay[n], r_start[n] = pi, i
            first = f[10][0]
            code, epos, stop, m1, h1, i2, a0, a1 = _head(buf, i, end)
            b0 = b1 = 0
            r_m1[n], r_h1[n] = m1, h1
            consumed = False  # stop is already past the end of the line
            if code == OK:
                g1, g2 = _hash(np.uint64(0xCBF29CE484222325), np.uint64(0x2545F4914F6CDD1D),
                               buf, i, h1)
                code, epos, stop, a0, a1, b0, b1, i3, timed = _fields(buf, i2, end, n, g1, g2, f)
                consumed = code == OK
                if code == OK and timed:
                    code, epos, stop, b1, has_t, t = _time(buf, i3, end)
                    a0 = a1 = 0
                    b0 = i3
                    consumed = code == OK or code == E_TS_RANGE
                    if code == OK and has_t:
                        if mult != 1 and (t > (2**63 - 1) // mult or t < -((2**63 - 1) // mult)):
                            code, epos = E_TS_RANGE, i3
                        else:
                            t = t * mult
                            r_time[n], r_has_t[n] = t, True
                            if t < lo_ns or t >= hi_ns:
                                code, epos = E_TS_OUT, i3
                    elif code == OK:
                        code, epos = E_NO_TS, i3
                elif code == OK:
                    code, epos = E_NO_TS, stop
            if not consumed:
                stop = _to_newline(buf, max(stop, i), end)
            if not (code == OK or code == E_NO_TS or code == E_TS_OUT):
                f[10][0] = first  # a record with a syntax error yields no fields
            r_code[n], r_epos[n], r_stop[n] = code, epos, stop
            r_k[n, 0], r_k[n, 1], r_k[n, 2], r_k[n, 3] = a0, a1, b0, b1
            n += 1
            i = stop
        p0 = end
    m = f[10][0]
    return ((r_pay[:n], r_start[:n], r_stop[:n], r_m1[:n], r_h1[:n], r_code[:n], r_epos[:n],
             r_k[:n], r_time[:n], r_has_t[:n]),
            (f[0][:m], f[1][:m], f[2][:m], f[3][:m], f[4][:m], f[5][:m], f[6][:m], f[7][:m],
             f[8][:m], f[9][:m]))
