"""``[tune]`` against its site: the checks ``pueflow tune`` and ``pueflow check-config`` share.

:mod:`pueflow.config`'s cross-checks call :func:`tune_problems`, and ``pueflow tune``
resolves its search space with :func:`site_space`, so ``check-config`` refuses exactly what
``tune`` would, with the same message: a list item the site does not have (an unknown
cooling loop, a job index past the end) or a bound the site's ``[sites.dispatch]`` cannot
take. Like :mod:`~pueflow.config.tune` it imports nothing heavy (config-level: it
moves with ``tune_spec``).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError

from pueflow.config.dispatch import DispatchSpec
from pueflow.config.tune import ParamSpec, TuneSpec

#: A problem as :class:`~pueflow.exceptions.ConfigError` lists it: (key, value, how to fix).
Problem = tuple[str, object, str]


def tune_site(cfg: Any) -> tuple[Any | None, list[Problem]]:
    """Find the site ``cfg``'s ``[tune]`` tunes (``site``, else the first with ``[sites.dispatch]``)."""
    spec = cfg.tune
    if spec.site:
        ids = [s.id for s in cfg.sites]
        if spec.site not in ids:
            return None, [("tune.site", spec.site, f"no such site; known: {ids}")]
        site = cfg.sites[ids.index(spec.site)]
        if site.dispatch is None:
            return None, [("tune.site", spec.site, "this site has no [sites.dispatch]; add one")]
        return site, []
    site = next((s for s in cfg.sites if s.dispatch is not None), None)
    if site is None:
        return None, [("sites", "", "no site has [sites.dispatch]; tuning needs one")]
    return site, []


def site_space(site: Any, spec: TuneSpec) -> tuple[dict[str, str], list[Problem]]:
    """Map each space key to ``site``'s override key (list items by index), with the problems.

    Every bound and choice is set alone into the site's ``[sites.dispatch]`` and validated,
    so a space that can only make invalid settings is refused before the first trial.
    """
    problems: list[Problem] = []
    keys: dict[str, str] = {}
    data = site.dispatch.model_dump()
    for i, p in enumerate(spec.space):
        try:
            key = _index_key(data, p.key)
        except KeyError as exc:
            problems.append((f"tune.space[{i}].key", p.key, str(exc.args[0])))
            continue
        keys[p.key] = key
        for label, raw in _extremes(p):
            detail = _invalid(data, key, p.value(raw))
            if detail:
                problems.append((f"tune.space[{i}].{label}", raw,
                                 f"{p.key} = {p.value(raw)!r} is invalid for site {site.id!r} ({detail}); "
                                 f"narrow the range"))
    return keys, problems


def tune_problems(cfg: Any) -> list[Problem]:
    """Problems of ``cfg``'s ``[tune]`` against its site (none without ``[tune]``): config's cross-check."""
    if cfg.tune is None:
        return []
    site, problems = tune_site(cfg)
    return problems if site is None else site_space(site, cfg.tune)[1]


def _invalid(data: dict[str, Any], key: str, value: Any) -> str:
    """Why ``[sites.dispatch]`` ``data`` with ``key`` set to ``value`` is invalid ('' if valid)."""
    node: Any = copy.deepcopy(data)
    root = node
    parts = key.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(parts[-1]) if isinstance(node, list) else parts[-1]] = value
    try:
        DispatchSpec.model_validate(root)
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'dispatch'}: {e['msg']}" for e in exc.errors())
    return ""


def _extremes(p: ParamSpec) -> list[tuple[str, Any]]:
    if p.type == "categorical":
        return [(f"choices[{j}]", c) for j, c in enumerate(p.choices)]
    cast = int if p.type == "int" else float
    low, high = p.bounds()
    return [("low", cast(low)), ("high", cast(high))]


def _index_key(data: dict[str, Any], key: str) -> str:
    """``cooling.d2c.supply_max_c`` -> ``cooling.0.supply_max_c``; checks list items exist."""
    node: Any = data
    out = []
    for part in key.split("."):
        if isinstance(node, list):
            names = [str(item.get("name", j)) for j, item in enumerate(node)]
            if part.isdigit() and int(part) >= len(node):
                msg = (f"{key!r}: item {part} does not exist, the site has {len(node)} "
                       f"({', '.join(names) or 'none'}); use an index below {len(node)} or a name")
                raise KeyError(msg)
            if not part.isdigit() and part not in names:
                msg = f"{key!r}: no item named {part!r}; the site has {', '.join(names) or 'none'}"
                raise KeyError(msg)
            j = int(part) if part.isdigit() else names.index(part)
            node = node[j]
            out.append(str(j))
        else:
            node = node.get(part) if isinstance(node, dict) else None
            out.append(part)
    return ".".join(out)
