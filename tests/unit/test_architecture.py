"""The package's layout is its architecture: floors, no import loops, small modules.

Reads every module of ``pueflow`` with :mod:`ast` (nothing is imported) and checks the rules
of DESIGN.md's "Layout": module-level imports (``if TYPE_CHECKING`` blocks excluded) form no
cycle, nothing imports a higher floor, the core does no I/O, and no module is over 400 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "pueflow"

#: floor of each top-level part; an import may only go to the same or a lower floor
FLOORS = {
    "exceptions": 0, "units": 0, "roles": 0, "jit": 0, "__init__": 0,
    "config": 1, "schema": 1,
    "sovereignty": 2,
    "connectors": 3,
    "pipeline": 4,
    "optimizers": 5, "sim": 5,
    "modes": 6, "testing": 6,
    "cli": 7,
}
MAX_LINES = 400
#: third-party packages that only connectors/ and modes/ may use (I/O at a system boundary)
BOUNDARY_PACKAGES = ("kafka", "influxdb_client", "optuna", "prometheus_client", "dask",
                     "distributed")


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.append(node)
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try):
                walk(node.body)
                for h in node.handlers:
                    walk(h.body)
                walk(node.orelse)
                walk(node.finalbody)

    walk(tree.body)
    return found


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    """Full names this import statement loads (modules where they exist)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    out = []
    for a in node.names:
        full = f"{base}.{a.name}"
        out.append(full if full in MODULES else base)
    return out


def _function_imports(tree: ast.Module) -> list[tuple[int, str]]:
    out = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    out.extend((node.lineno, t) for t in _targets(node))
    return out


def _graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        deps = set()
        for node in _top_level_imports(tree):
            deps.update(t for t in _targets(node) if t.split(".")[0] == "pueflow")
        g[name] = {d for d in deps if d in MODULES and d != name}
    return g


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            strong(v)
    return out


def test_every_part_has_a_floor():
    assert {_part(m) for m in MODULES} <= set(FLOORS)


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_nothing_imports_a_higher_floor():
    upward = [f"{a} -> {b}" for a, deps in _graph().items() for b in deps
              if FLOORS[_part(b)] > FLOORS[_part(a)]]
    assert upward == []


def test_cycle_finder_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("part", ["pipeline", "connectors", "schema", "config", "sovereignty"])
def test_lower_floors_stay_free_of_modes(part):
    bad = []
    for name, path in MODULES.items():
        if _part(name) != part:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for t in _targets(node):
                    top = t.split(".")
                    if top[0] in BOUNDARY_PACKAGES and part != "connectors":
                        bad.append(f"{name}: {t}")
                    if top[0] == "pueflow" and len(top) > 1 and FLOORS.get(top[1], 0) > FLOORS[part]:
                        bad.append(f"{name}: {t}")
    assert bad == []


def test_connectors_do_no_pipeline_import():
    bad = [f"{a} -> {b}" for a, deps in _graph().items() if _part(a) == "connectors"
           for b in deps if _part(b) == "pipeline"]
    assert bad == []


def test_no_pueflow_import_inside_a_function():
    """Late imports only for optional extras' modules (kafka, influx, tune, sim) at the top."""
    bad = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        bad.extend(f"{name}:{line} {t}" for line, t in _function_imports(tree)
                   if t.startswith("pueflow") and not _optional_extra(name, t))
    assert bad == []


#: verbs whose modules need an optional extra ([kafka], [tune], [sim], [dask]): the CLI and the
#: demo load them when the verb runs, so `pueflow --help` works on a base install
OPTIONAL_ENTRY = ("pueflow.modes.consume", "pueflow.modes.aggregate", "pueflow.modes.demo", "pueflow.modes.produce", "pueflow.modes.tune",
                  "pueflow.sim", "pueflow.connectors.kafka", "pueflow.connectors.influx",
                  "pueflow.connectors.kafka_sink", "pueflow.modes.distributed")


def _optional_extra(importer: str, target: str) -> bool:
    return (importer.startswith("pueflow.cli") or importer in ("pueflow.modes.demo", "pueflow.connectors.sink")) and \
        target.startswith(OPTIONAL_ENTRY)


def test_modules_are_small():
    big = {name: n for name, path in MODULES.items()
           if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert big == {}
