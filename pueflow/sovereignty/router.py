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
from typing import TYPE_CHECKING

from pueflow.config.routing import Allowance, allowance, sink_sites
from pueflow.sovereignty.audit import AuditLog, audit_path
from pueflow.units import parse_duration_ns

if TYPE_CHECKING:
    import polars as pl

    from pueflow.config.models import Config, Sink

#: Columns that make a row device-level; such a row never leaves its jurisdiction.
DEVICE_TAGS = ("device", "point", "asset")
#: ``scope`` of the all-sites fleet aggregate (other scopes are jurisdiction codes).
FLEET_SCOPE = "fleet"
#: Jurisdiction of a row whose site or scope the config does not know: foreign everywhere.
UNKNOWN = "?"

_HOME = -1  # per-row limit meaning "not crossing a border": always allowed
_NEVER = 2**62  # per-row limit no window reaches

log = logging.getLogger("pueflow.sovereignty.router")


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
        """Name each row's source.

        Returns ("site", site ids) or ("scope", fleet scopes), nulls read as unknown; rows
        that name neither give ("none", unknown), foreign everywhere.
        """
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
        if all(v == _HOME for v in limit.values()):  # nothing crosses a border: no window check
            return pl.Series("ok", [True], pl.Boolean).new_from_index(0, df.height), kind, keys
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
