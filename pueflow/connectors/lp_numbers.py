"""Numbers and UTF-8 as the line-protocol reference reads them, for the numba scan.

Integers follow Go's ``strconv.ParseInt``/``ParseUint`` (base 10, no underscores, range
checked); floats follow ``strconv.ParseFloat``'s decimal syntax. A float with at most 19
significant digits, a mantissa below 2**53 and a power of ten within 10**22 is converted
exactly here (one correctly rounded IEEE operation, Clinger's fast path); any other valid
float is left to Python's correctly rounded ``float`` outside the kernel.
"""

from __future__ import annotations

import numpy as np

from pueflow.jit import njit

_POW10 = np.array([10.0 ** k for k in range(23)])
_I64_MAX = np.uint64(2**63 - 1)
_U64_MAX = np.uint64(2**64 - 1)


@njit
def utf8_ok(buf, i, j):
    """Whether ``buf[i:j]`` is valid UTF-8 (Go's rules: no overlongs, surrogates or > U+10FFFF)."""
    k = i
    while k < j:
        c = buf[k]
        if c < 0x80:
            k += 1
            continue
        lo, hi = 0x80, 0xBF
        if 0xC2 <= c <= 0xDF:
            n = 1
        elif c == 0xE0:
            n, lo = 2, 0xA0
        elif c == 0xED:
            n, hi = 2, 0x9F
        elif 0xE1 <= c <= 0xEF:
            n = 2
        elif c == 0xF0:
            n, lo = 3, 0x90
        elif c == 0xF4:
            n, hi = 3, 0x8F
        elif 0xF1 <= c <= 0xF3:
            n = 3
        else:
            return False
        if k + n >= j:
            return False
        if not lo <= buf[k + 1] <= hi:
            return False
        for m in range(2, n + 1):
            if not 0x80 <= buf[k + m] <= 0xBF:
                return False
        k += n + 1
    return True


@njit
def parse_int(buf, a, b, signed):
    """(ok, overflow, value) of decimal ``buf[a:b]`` as int64 (``signed``) or uint64."""
    neg = False
    if signed and a < b and (buf[a] == 45 or buf[a] == 43):
        neg = buf[a] == 45
        a += 1
    if a >= b:
        return False, False, 0.0
    limit = _U64_MAX if not signed else (_I64_MAX + np.uint64(neg))
    x = np.uint64(0)
    for k in range(a, b):
        d = np.int64(buf[k]) - 48
        if d < 0 or d > 9:
            return False, False, 0.0
        if x > (limit - np.uint64(d)) // np.uint64(10):
            return False, True, 0.0
        x = x * np.uint64(10) + np.uint64(d)
    v = float(x)
    return True, False, -v if neg else v


@njit
def parse_time(buf, a, b):
    """(status, int64 ns): status 0 ok, 1 bad syntax, 2 out of int64 range."""
    neg = a < b and buf[a] == 45
    k = a + 1 if neg else a
    if k >= b:
        return 1, 0
    limit = _I64_MAX + np.uint64(neg)
    x = np.uint64(0)
    for m in range(k, b):
        d = np.int64(buf[m]) - 48
        if d < 0 or d > 9:
            return 1, 0
        if x > (limit - np.uint64(d)) // np.uint64(10):
            return 2, 0
        x = x * np.uint64(10) + np.uint64(d)
    if neg:
        return 0, -np.int64(x - np.uint64(1)) - 1
    return 0, np.int64(x)


@njit
def parse_float(buf, a, b):
    """Parse a decimal float: (status, value).

    Status 0 exact, 1 valid but needs a correctly rounded conversion outside (many digits
    or a large exponent), 2 invalid, 3 hexadecimal.
    """
    neg = buf[a] == 45
    k = a + 1 if neg or buf[a] == 43 else a
    if k + 1 < b and buf[k] == 48 and (buf[k + 1] | 32) == 120:
        return 3, 0.0
    mant = np.uint64(0)
    nd = 0  # significant digits kept in mant
    e10 = 0
    seen = dot = trunc = False
    while k < b:
        c = buf[k]
        if c == 46:
            if dot:
                return 2, 0.0
            dot = True
        elif 48 <= c <= 57:
            seen = True
            if nd < 19 and (nd > 0 or c != 48):
                mant = mant * np.uint64(10) + np.uint64(np.int64(c) - 48)
                nd += 1
                e10 -= dot
            elif nd >= 19:
                trunc |= c != 48
                e10 += not dot
            else:
                e10 -= dot
        else:
            break
        k += 1
    if not seen:
        return 2, 0.0
    if k < b:
        if buf[k] | 32 != 101:  # 'e'
            return 2, 0.0
        k += 1
        eneg = k < b and buf[k] == 45
        if k < b and (buf[k] == 45 or buf[k] == 43):
            k += 1
        if k >= b:
            return 2, 0.0
        x = 0
        while k < b:
            d = np.int64(buf[k]) - 48
            if d < 0 or d > 9:
                return 2, 0.0
            x = min(x * 10 + d, 100_000)
            k += 1
        e10 += -x if eneg else x
    if mant == 0:
        return 0, -0.0 if neg else 0.0
    if trunc or mant > np.uint64(2**53) or e10 < -22 or e10 > 22:
        return 1, 0.0
    v = float(mant) * _POW10[e10] if e10 >= 0 else float(mant) / _POW10[-e10]
    return 0, -v if neg else v


_WORDS = np.frombuffer(b"truefalse", np.uint8)


@njit
def is_bool(buf, a, b):
    """t, T, true, True, TRUE, f, F, false, False or FALSE (the reference's spellings)."""
    w = b - a
    if w == 1:
        return True
    if w != 4 and w != 5:
        return False
    off = 0 if w == 4 else 4
    upper = buf[a + 1] < 97
    for k in range(w):
        c = buf[a + k]
        if c | 32 != _WORDS[off + k]:
            return False
        if k > 0 and (c < 97) != upper:
            return False
    return not upper or buf[a] < 97
