r"""Line-protocol escaping, written once.

The encoders, the InfluxDB sink and the decoder's name resolution all use it.

The rules are the reference decoder's (influxdata/line-protocol): a measurement escapes
comma and space; tag keys, tag values and field keys escape comma, equals and space; a
backslash is never itself escaped there (the decoder keeps a backslash that precedes any
other byte), so ``two\\ words`` means ``two\\`` + space + ``words``. String field values
escape backslash and double quote. A name with a control character (0x00-0x1f, 0x7f), or
ending in a backslash, cannot be written; :func:`escape_key` refuses it and the sink's
expression replaces those characters with U+FFFD so one odd tag cannot stop a write.
"""

from __future__ import annotations

import re

import polars as pl

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_KEY_ESC = re.compile(r"\\([,= ])")
_MEAS_ESC = re.compile(r"\\([, ])")
_STR_ESC = re.compile(r'\\([\\"nrt])')
_STR_MAP = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def _check(s: str, what: str) -> None:
    if not s or _CONTROL.search(s) or s.endswith("\\"):
        msg = (f"line protocol cannot carry this {what}: {s!r} (empty, a control character "
               "such as a newline, or a trailing backslash)")
        raise ValueError(msg)


def escape_key(s: str) -> str:
    """Escape a tag key, tag value or field key (comma, equals, space).

    Raises
    ------
    ValueError
        ``s`` is empty, holds a control character or ends in a backslash.
    """
    _check(s, "key or tag")
    return s.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def escape_measurement(s: str) -> str:
    """Escape a measurement name (comma, space); ValueError as :func:`escape_key`."""
    _check(s, "measurement")
    return s.replace(",", "\\,").replace(" ", "\\ ")


def escape_string(s: str) -> str:
    """Body of a string field value (backslash and double quote escaped, no quotes)."""
    return s.replace("\\", "\\\\").replace('"', '\\"')


def unescape_key(s: str) -> str:
    """Inverse of :func:`escape_key` as the reference decoder reads a token."""
    return _KEY_ESC.sub(r"\1", s) if "\\" in s else s


def unescape_measurement(s: str) -> str:
    """Inverse of :func:`escape_measurement` as the reference decoder reads it."""
    return _MEAS_ESC.sub(r"\1", s) if "\\" in s else s


def unescape_string(s: str) -> str:
    r"""Return a string field value's body as the reference decodes it (``\\n`` is a newline)."""
    return _STR_ESC.sub(lambda m: _STR_MAP[m[1]], s) if "\\" in s else s


def _safe(expr: pl.Expr) -> pl.Expr:
    return (expr.str.replace_all(r"[\x00-\x1f\x7f]", "\ufffd")
            .str.replace(r"\\$", "\ufffd"))


def escape_key_expr(expr: pl.Expr) -> pl.Expr:
    """:func:`escape_key` over a string column; unwritable characters become U+FFFD."""
    return (_safe(expr).str.replace_all(",", "\\,", literal=True)
            .str.replace_all("=", "\\=", literal=True)
            .str.replace_all(" ", "\\ ", literal=True))


def escape_string_expr(expr: pl.Expr) -> pl.Expr:
    """:func:`escape_string` over a string column."""
    return (expr.str.replace_all("\\", "\\\\", literal=True)
            .str.replace_all('"', '\\"', literal=True))
