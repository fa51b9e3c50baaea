"""Routing rules: what may cross a border, to which sink (``[routing]``), checked at load.

The rule functions (the models of ``[routing]`` live in
:mod:`pueflow.config.routing_models`) both the load-time check
(:func:`route_problems`, ``check-config``) and the run-time guard
(:class:`pueflow.sovereignty.router.Router`) apply, so the rule is written once.
"""

from __future__ import annotations

from dataclasses import dataclass

from pueflow.config.models import Config, Sink
from pueflow.config.routing_models import CROSS_BORDER_MEASUREMENTS
from pueflow.units import fmt_duration_ns, parse_duration_ns

DEFAULT_RULE = "routing.cross_border_measurements / routing.cross_border_min_window"


@dataclass(frozen=True)
class Allowance:
    """What may cross from one source to one sink.

    ``min_window_ns`` maps each measurement that may cross to the finest window [ns] that
    may; a measurement absent from it may not cross at all. ``rule`` names the config key
    that decided, for messages.
    """

    min_window_ns: dict[str, int]
    rule: str

    def describe(self) -> str:
        """Say what may cross, e.g. ``"fleet >= 1h, kpi >= 1h"``."""
        if not self.min_window_ns:
            return "nothing"
        return ", ".join(f"{m} >= {fmt_duration_ns(ns)}" for m, ns in sorted(self.min_window_ns.items()))



def default_allowance(cfg: Config) -> Allowance:
    """Return the default rule: ``routing.cross_border_measurements`` at their finest windows."""
    r = cfg.routing
    kpi_ns = parse_duration_ns(r.cross_border_min_window)
    fleet_ns = parse_duration_ns(r.fleet_min_window) if r.fleet_min_window else kpi_ns
    limits = {"kpi": kpi_ns, "fleet": fleet_ns}
    return Allowance({m: limits[m] for m in r.cross_border_measurements
                      if m in CROSS_BORDER_MEASUREMENTS}, DEFAULT_RULE)


def allowance(cfg: Config, sink: Sink, sources: frozenset[str], site: str | None) -> Allowance:
    """Return what may reach ``sink`` across a border from one source.

    ``sources`` are the jurisdictions of a row; ``site`` is its site for a site-level row,
    None for an aggregate. Without an allow-list for ``sink`` this is the default rule;
    with one, the most permissive covering entry (each bounded by the default rule).
    """
    base = default_allowance(cfg)
    entries = [(i, a) for i, a in enumerate(cfg.routing.allow) if a.sink == sink.name]
    if not entries:
        return base
    limits: dict[str, int] = {}
    names = []
    for i, a in entries:
        if a.jurisdictions and not sources <= set(a.jurisdictions):
            continue
        if a.sites and (site is None or site not in a.sites):
            continue
        names.append(f"routing.allow[{i}]")
        own = parse_duration_ns(a.min_window) if a.min_window else 0
        for m in a.measurements:
            if m in base.min_window_ns:
                lim = max(base.min_window_ns[m], own)
                limits[m] = min(limits.get(m, lim), lim)
    if not names:
        who = f"site {site!r}" if site else f"aggregates of {sorted(sources)}"
        idx = ", ".join(str(i) for i, _ in entries)
        return Allowance({}, f"routing.allow[{idx}] (the allow-list of sink {sink.name!r} "
                             f"has no entry for {who})")
    return Allowance(limits, " + ".join(names))


def sink_sites(cfg: Config, sink: Sink) -> list[str]:
    """Sites whose rows a sink receives: those listed, else those of its own jurisdiction."""
    if sink.sites:
        return list(sink.sites)
    return [s.id for s in cfg.sites if s.jurisdiction == sink.jurisdiction]


def unreached_sites(cfg: Config) -> list[tuple[str, str]]:
    """Sites whose ``kpi`` rows reach no sink at all, each with the reason.

    A site's rows reach a sink that lists it, or (listing none) one of its own
    jurisdiction. A site whose only sinks are elsewhere gets nothing written: worth a
    warning, not an error (a config may stage a site before its store exists).
    """
    out = []
    for s in cfg.sites:
        reach = [k.name for k in cfg.sinks if s.id in sink_sites(cfg, k) and "kpi" in k.measurements]
        if reach:
            continue
        foreign = sorted({k.jurisdiction for k in cfg.sinks if k.jurisdiction != s.jurisdiction})
        why = (f"no sink receives its kpi rows: sinks of {s.jurisdiction} would, and the sinks "
               f"in {foreign} do not list it" if foreign else "the config has no kpi sink")
        out.append((s.id, why + f"; add a [[sinks]] entry with jurisdiction = '{s.jurisdiction}'"))
    return out


# ------------------------------------------------------------------------------ load time
def _allow_problems(cfg: Config) -> list[tuple[str, object, str]]:
    problems: list[tuple[str, object, str]] = []
    names = {s.name for s in cfg.sinks}
    sites = {s.id for s in cfg.sites}
    base = default_allowance(cfg)
    for i, a in enumerate(cfg.routing.allow):
        key = f"routing.allow[{i}]"
        if a.sink not in names:
            problems.append((f"{key}.sink", a.sink, f"no such sink; known: {sorted(names)}"))
        for sid in a.sites:
            if sid not in sites:
                problems.append((f"{key}.sites", sid, f"no such site; known: {sorted(sites)}"))
        if a.min_window:
            own = parse_duration_ns(a.min_window)
            finer = [m for m in a.measurements
                     if m in base.min_window_ns and own < base.min_window_ns[m]]
            if finer:
                problems.append((f"{key}.min_window", a.min_window,
                                 f"an allow-list only narrows the default rule ({DEFAULT_RULE}: "
                                 f"{base.describe()}); use a window of at least that, or "
                                 "change the default"))
    return problems


def kpi_topic_windows(cfg: Config) -> dict[str, frozenset[str]]:
    """Windows of each site that consume publishes to ``[kafka] kpi_topic``.

    Every window of a site in ``kpi_topic_jurisdiction`` (or of every site when it is
    unset); for a site of another jurisdiction only the windows the default rule lets its
    ``kpi`` rows cross with (>= ``routing.cross_border_min_window``), none if they may not
    leave. The aggregate stage builds a fleet window of a scope only when every member site
    publishes that window, so no scope is ever summed from part of its sites by design.
    """
    home = cfg.kafka.kpi_topic_jurisdiction
    every = frozenset(cfg.pipeline.windows)
    lim = default_allowance(cfg).min_window_ns.get("kpi")
    away = frozenset() if lim is None else frozenset(
        w for w in cfg.pipeline.windows if parse_duration_ns(w) >= lim)
    return {s.id: every if home is None or s.jurisdiction == home else away for s in cfg.sites}


def kpi_topic_problems(cfg: Config) -> list[tuple[str, object, str]]:
    """Sites of which no window may reach the KPI topic of another jurisdiction.

    Consume publishes to ``[kafka] kpi_topic`` only the windows :func:`kpi_topic_windows`
    allows (never a window finer than the rule lets cross); the aggregator reading it lives
    in ``kpi_topic_jurisdiction``. A site of another jurisdiction none of whose configured
    windows may cross would be missing from every fleet scope it belongs to: refused.
    """
    k = cfg.kafka
    if not k.kpi_topic:
        return []
    juris = sorted({s.jurisdiction for s in cfg.sites})
    home = k.kpi_topic_jurisdiction
    if home is None:
        if len(juris) > 1:
            return [("kafka.kpi_topic_jurisdiction", None,
                     f"sites of {juris} publish to KPI topic {k.kpi_topic!r}: say where it and its "
                     "aggregator live (one of them), so the routing rules can be checked")]
        return []
    a = default_allowance(cfg)
    lim = a.min_window_ns.get("kpi")
    sent = kpi_topic_windows(cfg)
    problems: list[tuple[str, object, str]] = []
    for s in cfg.sites:
        if s.jurisdiction == home or sent[s.id]:
            continue
        where = f"site {s.id!r} ({s.jurisdiction}) -> KPI topic {k.kpi_topic!r} ({home})"
        if lim is None:
            problems.append(("kafka.kpi_topic", k.kpi_topic,
                             f"{where}: kpi rows may not leave {s.jurisdiction} (rule {a.rule}); "
                             f"give {s.jurisdiction} its own KPI topic and aggregator"))
        else:
            problems.append(("pipeline.windows", cfg.pipeline.windows,
                             f"{where}: none of its windows may cross a border, only kpi windows "
                             f">= {fmt_duration_ns(lim)} may (rule {a.rule}); add such a window "
                             f"or give {s.jurisdiction} its own KPI topic and aggregator"))
    return problems


def route_problems(cfg: Config) -> list[tuple[str, object, str]]:
    """List every route in ``cfg`` that would carry data across a border against the rules.

    Returns
    -------
    list of (str, object, str)
        One (config key, value, message naming the site, the sink and the rule) per
        problem; empty when every route is allowed.
    """
    problems = _allow_problems(cfg) + kpi_topic_problems(cfg)
    juris = {s.id: s.jurisdiction for s in cfg.sites}
    for i, sink in enumerate(cfg.sinks):
        site_level = [m for m in sink.measurements if m != "fleet"]
        min_w = parse_duration_ns(sink.min_window) if sink.min_window else 0
        for sid in sink.sites:
            if sid not in juris or juris[sid] == sink.jurisdiction:
                continue
            a = allowance(cfg, sink, frozenset({juris[sid]}), sid)
            where = f"site {sid!r} ({juris[sid]}) -> sink {sink.name!r} ({sink.jurisdiction})"
            bad = [m for m in site_level if m not in a.min_window_ns]
            if bad:
                ok = [m for m in CROSS_BORDER_MEASUREMENTS if m in a.min_window_ns]
                fix = (f"set measurements = {ok}" if ok else
                       f"add a routing.allow entry for sink {sink.name!r} covering it")
                problems.append((f"sinks[{i}].measurements", sink.measurements,
                                 f"{where}: {bad} may not leave {juris[sid]}; rule {a.rule} "
                                 f"lets {'only ' if ok else ''}{a.describe()} cross (quality "
                                 f"details, setpoints and raw telemetry never do). {fix[0].upper()}"
                                 f"{fix[1:]}, or remove the site from sites"))
            lim = a.min_window_ns.get("kpi")
            if "kpi" in site_level and lim is not None and min_w < lim:
                problems.append((f"sinks[{i}].min_window", sink.min_window or "<unset>",
                                 f"{where}: only kpi windows >= {fmt_duration_ns(lim)} may cross a "
                                 f"border (rule {a.rule}); set min_window = '{fmt_duration_ns(lim)}' "
                                 "or remove the site from sites"))
    return problems

