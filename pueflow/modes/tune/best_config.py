"""The best settings as a ready-to-use config file.

When the config came from a file, that file's text is edited in place, so its comments and
layout survive: each tuned value replaces the old one on its line (``# tuned, was …``), a
setting the file did not give is added to its table, a table it did not have is added at
the end of the site's block. The edited text is parsed and compared with the expected
config; if anything differs (a layout this editor does not follow, such as inline tables),
the whole config is written out from its validated form instead.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from pueflow.config.load import parse_config
from pueflow.exceptions import ConfigError, PueflowError
from pueflow.optimizers.assets import apply_overrides

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*(\]\]?)\s*(#.*)?$")
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def tuned_config_text(cfg: Any, site_id: str, overrides: dict[str, Any], note: str) -> str:
    """TOML text of ``cfg`` with ``overrides`` applied to ``site_id``'s ``[sites.dispatch]``."""
    index = [s.id for s in cfg.sites].index(site_id)
    want = cfg.model_copy(deep=True)
    want.sites[index].dispatch = apply_overrides(cfg.sites[index].dispatch, overrides)
    expected = want.model_dump()
    src = Path(cfg.source) if cfg.source else None
    if src is not None and src.is_file():
        text: str | None = src.read_text(encoding="utf-8")
        for key, value in overrides.items():
            text = _edit(text, index, key, value) if text is not None else None
        if text is not None and _same(text, expected, parse_config):
            return _comment(note) + text
    data = cfg.model_dump(mode="json", exclude_unset=True)
    node = data["sites"][index].setdefault("dispatch", {})
    for key, value in overrides.items():
        _put(node, key.split("."), value)
    text = _comment(note) + dumps(data)
    if not _same(text, expected, parse_config):
        msg = "writing the tuned config failed its own check (please report this); the best settings are in best.json"
        raise PueflowError(msg)
    return text


def _comment(note: str) -> str:
    return "".join(f"# {line}\n" for line in note.splitlines()) + "\n"


def _same(text: str, expected: dict[str, Any], parse: Any) -> bool:
    try:
        return parse(tomllib.loads(text), "<tuned>").model_dump() == expected
    except (tomllib.TOMLDecodeError, ConfigError):
        return False


def _put(node: Any, parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


# ------------------------------------------------------------------ editing the file's text
def _headers(lines: list[str]) -> list[tuple[int, str, bool]]:
    """(line, dotted name, is array table) of every table header outside multi-line strings."""
    out = []
    in_str = False
    for i, line in enumerate(lines):
        if line.count('"""') % 2 or line.count("'''") % 2:
            in_str = not in_str
            continue
        if in_str:
            continue
        m = _HEADER.match(line)
        if m and (m.group(1) == "[[") == (m.group(3) == "]]"):
            name = ".".join(p.strip().strip("\"'") for p in m.group(2).split("."))
            out.append((i, name, m.group(1) == "[["))
    return out


def _site_block(headers: list[tuple[int, str, bool]], n_lines: int, index: int) -> tuple[int, int] | None:
    starts = [i for i, name, arr in headers if name == "sites" and arr]
    if index >= len(starts):
        return None
    start = starts[index]
    end = next((i for i, name, arr in headers if i > start and
                ((name == "sites" and arr) or not name.startswith("sites."))), n_lines)
    return start, end


def _edit(text: str, site: int, key: str, value: Any) -> str | None:
    """``text`` with dispatch ``key`` of site number ``site`` set to ``value``; None if unsure."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    parts = key.split(".")
    digits = [i for i, p in enumerate(parts) if p.isdigit()]
    if len(digits) > 1 or (digits and digits[0] != len(parts) - 2):
        return None
    table = ".".join(["sites", "dispatch", *(parts[:digits[0]] if digits else parts[:-1])])
    item = int(parts[digits[0]]) if digits else None
    leaf = parts[-1]
    headers = _headers(lines)
    block = _site_block(headers, len(lines), site)
    if block is None:
        return None
    b0, b1 = block
    found = [(i, arr) for i, name, arr in headers if b0 < i < b1 and name == table]
    if item is not None:
        found = [f for f in found if f[1]]
        if item >= len(found):
            return None
    elif any(arr for _, arr in found):
        return None
    lit = literal(value)
    if not found:
        if item is not None:
            return None
        at = b1
        while at - 1 > b0 and (not lines[at - 1].strip() or lines[at - 1].lstrip().startswith("#")):
            at -= 1
        lines[at:at] = [f"\n[{table}]\n", f"{leaf} = {lit}  # tuned\n"]
        return "".join(lines)
    h = found[item or 0][0]
    end = next((i for i, _, _ in headers if i > h), len(lines))
    pat = re.compile(rf"^(\s*)(?:{re.escape(leaf)}|\"{re.escape(leaf)}\")(\s*=\s*)(.*?)\s*$")
    for i in range(h + 1, end):
        m = pat.match(lines[i].rstrip("\n"))
        if not m:
            continue
        old, comment = _split_value(m.group(3))
        if old is None:
            return None
        rest = f"; {comment.lstrip('#').strip()}" if comment else ""
        lines[i] = f"{m.group(1)}{leaf}{m.group(2)}{lit}  # tuned, was {old}{rest}\n"
        return "".join(lines)
    at = end
    while at - 1 > h and (not lines[at - 1].strip() or lines[at - 1].lstrip().startswith("#")):
        at -= 1
    lines.insert(at, f"{leaf} = {lit}  # tuned\n")
    return "".join(lines)


def _split_value(rest: str) -> tuple[str | None, str]:
    """(value text, comment) of a one-line ``value  # comment``; None for multi-line values."""
    rest = rest.strip()
    if rest[:1] in "\"'":
        q = rest[0]
        j = 1
        while j < len(rest) and rest[j] != q:
            j += 2 if rest[j] == "\\" and q == '"' else 1
        if j >= len(rest):
            return None, ""
        return rest[:j + 1], rest[j + 1:].strip()
    if rest.startswith(("[", "{")) and rest.count(rest[0]) != rest.count("]" if rest[0] == "[" else "}"):
        return None, ""
    value, _, comment = rest.partition("#")
    return value.strip(), ("#" + comment) if comment else ""


# ------------------------------------------------------------------ writing a config from data
def literal(v: Any) -> str:
    """Return ``v`` as a TOML literal (a scalar, an inline array or an inline table).

    Floats keep a decimal point (``2.0``) and map NaN/inf to ``nan``/``inf``; a ``None``
    inside a table is left out (TOML has no null).

    Raises
    ------
    TypeError
        ``v`` (or an item in it) has a type TOML cannot hold, e.g. ``None`` or a set.
    """
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        r = repr(v)
        return r if any(c in r for c in ".en") else r + ".0"
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {literal(x)}" for k, x in v.items() if x is not None) + "}"
    msg = f"cannot write {type(v).__name__} {v!r} to TOML"
    raise TypeError(msg)


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _tables(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dumps(data: dict[str, Any]) -> str:
    """TOML text of nested dicts/lists (None values are left out: TOML has no null)."""
    out: list[str] = []
    _body(out, [], data, header=None)
    return "\n".join(out).strip() + "\n"


def _body(out: list[str], path: list[str], d: dict[str, Any], header: str | None) -> None:
    scalars = [(k, v) for k, v in d.items() if v is not None and not isinstance(v, dict) and not _tables(v)]
    subs = [(k, v) for k, v in d.items() if isinstance(v, dict)]
    arrays = [(k, v) for k, v in d.items() if _tables(v)]
    if header is not None and (header.startswith("[[") or scalars or not (subs or arrays)):
        out.extend(["", header])
    out.extend(f"{_key(k)} = {literal(v)}" for k, v in scalars)
    for k, v in subs:
        p = [*path, _key(k)]
        _body(out, p, v, f"[{'.'.join(p)}]")
    for k, items in arrays:
        p = [*path, _key(k)]
        for item in items:
            _body(out, p, item, f"[[{'.'.join(p)}]]")
