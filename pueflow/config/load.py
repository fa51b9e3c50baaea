"""Loading: TOML -> validated :class:`Config`, with every problem as (key, value, fix)."""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from pueflow.config.models import Config
from pueflow.config.routing import route_problems
from pueflow.config.tune_check import tune_problems
from pueflow.exceptions import ConfigError
from pueflow.roles import SENSOR_ROLES

# --------------------------------------------------------------------------- loading


def _key(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """Render a pydantic location as ``sites[0].meters[2].kind``, using site ids when known."""
    out = ""
    node: Any = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return out


def _value_at(loc: tuple[Any, ...], data: Any) -> Any:
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return "<missing>"
    return node


def _fix_for(err: ErrorDetails, model_fields: list[str]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        name = str(err["loc"][-1])
        close = difflib.get_close_matches(name, model_fields, n=1)
        return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key; remove it"
    if kind == "missing":
        return "required; add this key"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def _known_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model at ``loc`` (for 'did you mean' hints)."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        cand = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not cand:
            return []
        model = cand[0]
    return list(model.model_fields)


def _cross_checks(cfg: Config) -> list[tuple[str, object, str]]:
    problems: list[tuple[str, object, str]] = []
    ids = [s.id for s in cfg.sites]
    for i, sid in enumerate(ids):
        if ids.index(sid) != i:
            problems.append((f"sites[{i}].id", sid, "site ids must be unique; rename one"))
    names = [s.name for s in cfg.sinks]
    for i, n in enumerate(names):
        if names.index(n) != i:
            problems.append((f"sinks[{i}].name", n, "sink names must be unique; rename one"))
    for i, site in enumerate(cfg.sites):
        if not site.meters:
            problems.append((f"sites[{i}].meters", [], "add [[sites.meters]] rules mapping device/point globs to roles"))
        roles = {m.role for m in site.meters}
        if site.meters and "it" not in roles:
            problems.append((f"sites[{i}].meters", sorted(roles), "no meter has role 'it'; PUE needs IT energy"))
        for j, m in enumerate(site.meters):
            key = f"sites[{i}].meters[{j}]"
            sensor = m.role in SENSOR_ROLES
            if sensor and m.kind != "sensor":
                problems.append((f"{key}.kind", m.kind, f"role {m.role!r} is a sensor; set kind = 'sensor'"))
            if not sensor and m.kind == "sensor":
                problems.append((f"{key}.kind", m.kind, f"role {m.role!r} is an energy; use 'register' or 'power'"))
    site_ids = set(ids)
    for i, sink in enumerate(cfg.sinks):
        for sid in sink.sites:
            if sid not in site_ids:
                problems.append((f"sinks[{i}].sites", sid, f"no such site; known: {sorted(site_ids)}"))
        if sink.type == "influx" and not sink.url:
            problems.append((f"sinks[{i}].url", sink.url, "an influx sink needs url = 'http://host:8086'"))
        if sink.type == "influx" and not sink.bucket:
            problems.append((f"sinks[{i}].bucket", sink.bucket, "an influx sink needs a bucket"))
        if sink.type == "kafka" and not sink.topic:
            problems.append((f"sinks[{i}].topic", sink.topic, "a kafka sink needs a topic"))
    problems.extend(tune_problems(cfg))
    problems.extend(route_problems(cfg))
    return problems


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a config dict; raise ConfigError listing every problem."""
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems = [
            (_key(e["loc"], data), _value_at(e["loc"], data), _fix_for(e, _known_fields(e["loc"])))
            for e in exc.errors()
        ]
        raise ConfigError(source, problems) from None
    cfg.source = source
    problems = _cross_checks(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [("<file>", str(p), f"cannot read: {exc.strerror}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), [("<toml>", str(exc), "fix the TOML syntax at that line")]) from None
    return parse_config(data, str(p))
