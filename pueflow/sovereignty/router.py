"""Jurisdiction rules: which rows may reach which sink.

Every site-level row stays in its site's jurisdiction unless ``[routing]`` lets it leave:
by default only ``kpi`` rows of windows >= 1 h carrying no device-level tags, and ``fleet``
aggregates of windows >= 1 h. Quality details, setpoints and raw telemetry never leave. A
sink of jurisdiction ``GLOBAL`` is foreign to every site. Per-destination allow-lists
(``[[routing.allow]]``) narrow what one sink may receive.

Two lines of defence:

1. :func:`route_problems` (config load, ``check-config``) refuses a config whose routes
   would carry anything else across a border, naming the site, the sink and the rule.
2. :class:`Router` selects each sink's rows and then guards every write: a row that would
   cross a border against the rules is refused (counted in ``Router.refused``, logged),
   never written. Rows that did cross are recorded in the audit log (:mod:`pueflow.sovereignty.audit`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pueflow.config.models import CROSS_BORDER_MEASUREMENTS, parse_duration_ns
from pueflow.sovereignty.audit import AuditLog, audit_path

if TYPE_CHECKING:
    import polars as pl

    from pueflow.config.models import Config, Sink

#: Columns that make a row device-level; such a row never leaves its jurisdiction.
DEVICE_TAGS = ("device", "point", "asset")
#: ``scope`` of the all-sites fleet aggregate (other scopes are jurisdiction codes).
FLEET_SCOPE = "fleet"
#: Jurisdiction of a row whose site or scope the config does not know: foreign everywhere.
UNKNOWN = "?"
DEFAULT_RULE = "routing.cross_border_measurements / routing.cross_border_min_window"

_HOME = -1  # per-row limit meaning "not crossing a border": always allowed
_NEVER = 2**62  # per-row limit no window reaches

log = logging.getLogger("pueflow.sovereignty.router")


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
        return ", ".join(f"{m} >= {_fmt_ns(ns)}" for m, ns in sorted(self.min_window_ns.items()))


def _fmt_ns(ns: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if ns % (size * 10**9) == 0 and ns:
            return f"{ns // (size * 10**9)}{unit}"
    return f"{ns}ns"


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


def route_problems(cfg: Config) -> list[tuple[str, object, str]]:
    """Every route in ``cfg`` that would carry data across a border against the rules.

    Each problem is (config key, value, message naming the site, the sink and the rule).
    """
    problems = _allow_problems(cfg)
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
                                 f"{where}: only kpi windows >= {_fmt_ns(lim)} may cross a "
                                 f"border (rule {a.rule}); set min_window = '{_fmt_ns(lim)}' "
                                 "or remove the site from sites"))
    return problems


# ------------------------------------------------------------------------------ run time
class Router:
    """Decides which rows each sink receives, guards every write, audits what crossed.

    Routing selects the rows a sink is configured for: its sites and, for kpi, its
    ``min_window``; for fleet aggregates, the scopes and windows the rules let it have.
    The guard then checks each row's source jurisdiction against the sink once more
    (defence in depth): a row that would cross a border against the rules - a measurement
    that may not leave, a window finer than allowed, any device-level column - is refused,
    counted in ``refused`` (rows per sink, an error metric) and logged, never written.
    """

    def __init__(self, cfg: Config, audit: AuditLog | None = None):
        self.cfg = cfg
        self.juris = {s.id: s.jurisdiction for s in cfg.sites}
        everyone = frozenset(self.juris.values())
        self.scope_juris = {FLEET_SCOPE: everyone, **{j: frozenset({j}) for j in everyone}}
        self.sites = {sink.name: set(sink_sites(cfg, sink)) for sink in cfg.sinks}
        self.refused: dict[str, int] = {}
        self.audit_log = audit or AuditLog(audit_path(cfg))
        self._allow: dict[tuple[str, str, str], Allowance] = {}
        self._win: dict[str, int] = {}

    @property
    def refused_total(self) -> int:
        """Rows refused by the guard so far, over all sinks (an error metric)."""
        return sum(self.refused.values())

    # -------------------------------------------------------------- public
    def rows_for(self, sink: Sink, measurement: str, df: pl.DataFrame | None
                 ) -> pl.DataFrame | None:
        """Return the rows of ``df`` (one measurement) that ``sink`` receives, or None."""
        if measurement not in sink.measurements or df is None or df.height == 0:
            return None
        sel = self._select(sink, measurement, df)
        if sel.height:
            sel = self._guard(sink, measurement, sel)
        return sel if sel.height else None

    def audit(self, sink: Sink, measurement: str, rows: pl.DataFrame | None) -> None:
        """Record the rows of a successful write that crossed a border.

        One audit line per set of source jurisdictions; home rows are not recorded.
        """
        import polars as pl

        if rows is None or rows.height == 0:
            return
        kind, keys = self._keys(rows)
        label = {k: ",".join(sorted(self._sources(kind, k))) for k in keys.unique().to_list()}
        foreign = {k: v for k, v in label.items() if v != sink.jurisdiction}
        if not foreign:
            return
        src = keys.replace_strict(label, return_dtype=pl.Utf8)
        groups = []
        for lab in sorted(set(foreign.values())):
            groups.append((lab.split(","), rows.filter(src == lab)))
        self.audit_log.record(sink.name, sink.jurisdiction, measurement, groups)

    # -------------------------------------------------------------- internals
    def _keys(self, df: pl.DataFrame) -> tuple[str, pl.Series]:
        """Name each row's source: ("site", site ids), ("scope", fleet scopes), or
        ("none", "?") for rows that name neither (foreign everywhere)."""
        import polars as pl

        for kind in ("site", "scope"):
            if kind in df.columns:
                return kind, df[kind].cast(pl.Utf8).fill_null(UNKNOWN)
        return "none", pl.Series("source", [UNKNOWN] * df.height, pl.Utf8)

    def _sources(self, kind: str, key: str) -> frozenset[str]:
        if kind == "site":
            return frozenset({self.juris.get(key, UNKNOWN)})
        if kind == "scope":
            return self.scope_juris.get(key, frozenset({UNKNOWN}))
        return frozenset({UNKNOWN})

    def _allowance(self, sink: Sink, kind: str, key: str) -> Allowance:
        ck = (sink.name, kind, key)
        a = self._allow.get(ck)
        if a is None:
            a = allowance(self.cfg, sink, self._sources(kind, key),
                          key if kind == "site" else None)
            self._allow[ck] = a
        return a

    def _window_ns(self, window: str) -> int:
        ns = self._win.get(window)
        if ns is None:
            try:
                ns = parse_duration_ns(window)
            except ValueError:
                ns = -1  # an unreadable window is finer than any rule
            self._win[window] = ns
        return ns

    def _permitted(self, sink: Sink, measurement: str, df: pl.DataFrame
                   ) -> tuple[pl.Series, str, pl.Series]:
        """Per row: may it reach ``sink``? Also returns how rows name their source."""
        import polars as pl

        kind, keys = self._keys(df)
        home = frozenset({sink.jurisdiction})
        device = any(c in df.columns for c in DEVICE_TAGS)
        has_window = "window" in df.columns
        limit = {}
        for k in keys.unique().to_list():
            if self._sources(kind, k) == home:
                limit[k] = _HOME
            elif device or not has_window:
                limit[k] = _NEVER
            else:
                limit[k] = self._allowance(sink, kind, k).min_window_ns.get(measurement, _NEVER)
        lim = keys.replace_strict(limit, return_dtype=pl.Int64)
        if has_window:
            w = df["window"].cast(pl.Utf8).fill_null("")
            wins = {x: self._window_ns(x) for x in w.unique().to_list()}
            win = w.replace_strict(wins, return_dtype=pl.Int64)
        else:
            win = pl.Series("w", [-1] * df.height, pl.Int64)
        return (lim == _HOME) | (win >= lim), kind, keys

    def _select(self, sink: Sink, measurement: str, df: pl.DataFrame) -> pl.DataFrame:
        import polars as pl

        if "site" in df.columns:
            df = df.filter(pl.col("site").is_in(sorted(self.sites[sink.name])))
        elif measurement == "fleet" and df.height:
            # aggregates are not listed per sink: each gets the scopes the rules let it have,
            # so a national store is not refused (an error) every window for foreign scopes
            ok, _, _ = self._permitted(sink, measurement, df)
            df = df.filter(ok)
        if measurement == "kpi" and sink.min_window and "window" in df.columns and df.height:
            min_ns = parse_duration_ns(sink.min_window)
            keep = [w for w in df["window"].unique().to_list()
                    if w is not None and self._window_ns(str(w)) >= min_ns]
            df = df.filter(pl.col("window").is_in(keep))
        return df

    def _guard(self, sink: Sink, measurement: str, df: pl.DataFrame) -> pl.DataFrame:
        ok, kind, keys = self._permitted(sink, measurement, df)
        if ok.all():
            return df
        bad_keys = keys.filter(~ok)
        n = bad_keys.len()
        self.refused[sink.name] = self.refused.get(sink.name, 0) + n
        device = [c for c in DEVICE_TAGS if c in df.columns]
        for key in sorted(set(bad_keys.to_list())):
            count = int((bad_keys == key).sum())
            src = ",".join(sorted(self._sources(kind, key)))
            a = self._allowance(sink, kind, key)
            why = (f"device-level column(s) {device} never leave" if device
                   else f"rule {a.rule} lets only {a.describe()} leave")
            log.error("sovereignty guard refused %d %s rows of %s %r (%s) for sink %r (%s): "
                      "%s; nothing was written", count, measurement, kind, key, src,
                      sink.name, sink.jurisdiction, why)
        return df.filter(ok)
