"""Durations and units: the one parser of ``"30s"``-style durations (no pydantic here)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)\s*$")
_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
            "h": 3600 * 10**9, "d": 86400 * 10**9}


def parse_duration_ns(text: str) -> int:
    """Parse ``"30s"``, ``"15m"``, ``"1h"``, ``"1d"``, ``"500ms"`` into integer nanoseconds.

    Raises
    ------
    ValueError
        With the accepted forms, if ``text`` is not a duration.
    """
    m = _DURATION.match(str(text))
    if not m:
        msg = f"{text!r} is not a duration; write a number and a unit, e.g. '30s', '15m', '1h', '1d'"
        raise ValueError(msg)
    return int(round(float(m.group(1)) * _UNIT_NS[m.group(2)]))


def fmt_duration_ns(ns: int) -> str:
    """Render nanoseconds as the shortest whole duration, e.g. ``3600e9 -> "1h"``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if ns % (size * 10**9) == 0 and ns:
            return f"{ns // (size * 10**9)}{unit}"
    return f"{ns}ns"
