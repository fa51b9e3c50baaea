"""Tokens of Telegraf JSON for the numba scan (:mod:`.json_scan`).

White space, plain strings, numbers, scalars, and the ``tags``, ``fields`` and
``timestamp`` members.

Every reader returns the position after what it read, or -1 where the input is anything
but the plain form it accepts (the payload then goes to the Python decoder).
"""

from __future__ import annotations

import numpy as np

from pueflow.connectors.lp_numbers import parse_float, parse_int, parse_time, utf8_ok
from pueflow.jit import njit, njit_inline

_FNV = np.uint64(0x100000001B3)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_I64_MAX = 2**63 - 1
K_SITE = np.frombuffer(b'"site"', np.uint8)
K_DEVICE = np.frombuffer(b'"device"', np.uint8)
_W_TRUE = np.frombuffer(b"true", np.uint8)
_W_FALSE = np.frombuffer(b"false", np.uint8)
_W_NULL = np.frombuffer(b"null", np.uint8)


@njit_inline
def ws(buf, i, end):
    """Skip JSON white space from ``i``."""
    while i < end:
        c = buf[i]
        if c == 32 or c == 10 or c == 13 or c == 9:
            i += 1
        else:
            break
    return i


@njit_inline
def same(buf, a, b, word):
    """Whether ``buf[a:b]`` equals ``word``."""
    if b - a != len(word):
        return False
    for k in range(len(word)):
        if buf[a + k] != word[k]:
            return False
    return True


@njit_inline
def string(buf, i, end):
    """Return the end (after the closing quote) of the plain string literal at ``i``.

    -1 if it is not one: not a string, an escape, a control character, invalid UTF-8 or no
    closing quote.
    """
    if i >= end or buf[i] != 34:
        return -1
    j = i + 1
    high = False
    while j < end:
        c = buf[j]
        if c == 34:
            if high and not utf8_ok(buf, i + 1, j):
                return -1
            return j + 1
        if c == 92 or c < 32:
            return -1
        high |= c >= 128
        j += 1
    return -1


@njit_inline
def number(buf, i, end):
    """(end, is integer) of the JSON number at ``i``; end -1 if there is none."""
    j = i
    if j < end and buf[j] == 45:
        j += 1
    if j >= end:
        return -1, False
    c = buf[j]
    if c == 48:
        j += 1
    elif 49 <= c <= 57:
        while j < end and 48 <= buf[j] <= 57:
            j += 1
    else:
        return -1, False
    is_int = True
    if j < end and buf[j] == 46:
        j += 1
        is_int = False
        k = j
        while j < end and 48 <= buf[j] <= 57:
            j += 1
        if j == k:
            return -1, False
    if j < end and (buf[j] | 32) == 101:
        j += 1
        is_int = False
        if j < end and (buf[j] == 43 or buf[j] == 45):
            j += 1
        k = j
        while j < end and 48 <= buf[j] <= 57:
            j += 1
        if j == k:
            return -1, False
    return j, is_int


@njit
def scalar(buf, i, end):
    """End of the string, number, true, false or null at ``i``; -1 for anything else."""
    c = buf[i] if i < end else 0
    if c == 34:
        return string(buf, i, end)
    if c == 45 or 48 <= c <= 57:
        return number(buf, i, end)[0]
    for w in (_W_TRUE, _W_FALSE, _W_NULL):
        if i + len(w) <= end and same(buf, i, i + len(w), w):
            return i + len(w)
    return -1


@njit_inline
def mix(h1, h2, buf, i, j):
    """Extend the 128-bit hash (h1, h2) with ``buf[i:j]``."""
    for k in range(i, j):
        b = np.uint64(buf[k])
        h1 = (h1 ^ b) * _FNV
        h2 = (h2 + b + np.uint64(1)) * _GOLD
    return h1, h2


@njit_inline
def after(buf, i, end, close):
    """After a member: (position, more) past ``,`` (more) or ``close``; position -1 if neither."""
    i = ws(buf, i, end)
    if i < end and buf[i] == 44:
        return ws(buf, i + 1, end), True
    if i < end and buf[i] == close:
        return i + 1, False
    return -1, False


@njit
def tags(buf, i, end):
    """Read the tags object at ``i``: (end or -1, site span, device span; -1 where absent)."""
    s0 = s1 = d0 = d1 = -1
    i = ws(buf, i + 1, end)
    if i < end and buf[i] == 125:
        return i + 1, s0, s1, d0, d1
    while True:
        k0 = i
        i = string(buf, i, end)
        if i < 0:
            return -1, s0, s1, d0, d1
        k1 = i
        i = ws(buf, i, end)
        if i >= end or buf[i] != 58:
            return -1, s0, s1, d0, d1
        i = ws(buf, i + 1, end)
        v0 = i
        is_site = same(buf, k0, k1, K_SITE)
        is_dev = same(buf, k0, k1, K_DEVICE)
        i = string(buf, i, end) if is_site or is_dev else scalar(buf, i, end)
        if i < 0 or (is_site and s0 >= 0) or (is_dev and d0 >= 0):
            return -1, s0, s1, d0, d1
        if is_site:
            s0, s1 = v0, i
        elif is_dev:
            d0, d1 = v0, i
        i, more = after(buf, i, end, 125)
        if i < 0 or not more:
            return i, s0, s1, d0, d1


@njit_inline
def fields(buf, i, end, f):
    """Read the fields object at ``i`` into ``f``: its end, or -1.

    -1 if any field is not a plain number under a plain, unrepeated key.
    """
    f_key0, f_key1, f_v0, f_v1, f_val, f_slow, f_kh, n = f
    first = n[0]
    i = ws(buf, i + 1, end)
    if i < end and buf[i] == 125:
        return i + 1
    while True:
        k0 = i
        i = string(buf, i, end)
        if i < 0:
            return -1
        k1 = i
        i = ws(buf, i, end)
        if i >= end or buf[i] != 58:
            return -1
        v0 = ws(buf, i + 1, end)
        i, is_int = number(buf, v0, end)
        if i < 0:
            return -1
        slow = False
        if is_int:
            ok, over, val = parse_int(buf, v0, i, True)
            if over and buf[v0] != 45:
                ok, over, val = parse_int(buf, v0, i, False)
            if not ok:
                return -1
            val += 0.0  # -0 is the integer 0
        else:
            st, val = parse_float(buf, v0, i)
            if st == 2 or st == 3:
                return -1
            slow = st == 1
        kh, _ = mix(np.uint64(0xCBF29CE484222325), np.uint64(0), buf, k0, k1)
        m = n[0]
        for p in range(first, m):  # a repeated key: JSON keeps the last, Python says so
            if f_kh[p] == kh and same(buf, k0, k1, buf[f_key0[p]:f_key1[p]]):
                return -1
        f_key0[m], f_key1[m], f_v0[m], f_v1[m] = k0, k1, v0, i
        f_val[m], f_slow[m], f_kh[m] = val, slow, kh
        n[0] = m + 1
        i, more = after(buf, i, end, 125)
        if i < 0 or not more:
            return i


@njit
def timestamp(buf, i, end, mult, lo_ns, hi_ns):
    """Read the numeric timestamp at ``i``: (end or -1, time [ns]).

    In units of ``mult`` ns, computed as the Python decoder does; -1 also when it is
    outside [lo_ns, hi_ns).
    """
    j, is_int = number(buf, i, end)
    if j < 0:
        return -1, 0
    if is_int:
        st, t = parse_time(buf, i, j)
        if st != 0 or t > _I64_MAX // mult or t < -(_I64_MAX // mult):
            return -1, 0
        t = t * mult
    else:
        st, v = parse_float(buf, i, j)
        if st != 0:
            return -1, 0
        whole = np.floor(v)
        if not abs(whole) < _I64_MAX // mult:
            return -1, 0
        t = np.int64(whole) * mult + np.int64(np.rint((v - whole) * mult))
    if t < lo_ns or t >= hi_ns:
        return -1, 0
    return j, t
