"""Jurisdiction rules: which rows may reach which sink.

Default rule (DESIGN.md "Config"): every site-level row stays in its site's jurisdiction.
Only ``fleet`` aggregates, and ``kpi`` rows of windows of at least ``cross_border_min_window``
(1 h by default) carrying no device-level tags, may reach a sink of another jurisdiction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pueflow.config import Config, Sink

CROSS_BORDER_MEASUREMENTS = frozenset({"kpi", "fleet"})
DEFAULT_CROSS_BORDER_MIN_WINDOW = "1h"


def cross_border_min_window_ns(cfg: Config) -> int:
    from pueflow.config import parse_duration_ns

    rule = (cfg.routing or {}).get("cross_border_min_window", DEFAULT_CROSS_BORDER_MIN_WINDOW)
    return parse_duration_ns(rule)


def sink_sites(cfg: Config, sink: Sink) -> list[str]:
    """Sites whose rows a sink receives: those listed, else those of its own jurisdiction."""
    if sink.sites:
        return list(sink.sites)
    return [s.id for s in cfg.sites if s.jurisdiction == sink.jurisdiction]


def route_problems(cfg: Config) -> list[tuple[str, object, str]]:
    """Every route in ``cfg`` that would carry data across a border against the rules."""
    from pueflow.config import parse_duration_ns

    problems: list[tuple[str, object, str]] = []
    try:
        limit_ns = cross_border_min_window_ns(cfg)
    except ValueError as exc:
        return [("routing.cross_border_min_window", cfg.routing, str(exc))]
    juris = {s.id: s.jurisdiction for s in cfg.sites}
    for i, sink in enumerate(cfg.sinks):
        foreign = [sid for sid in sink.sites if sid in juris and juris[sid] != sink.jurisdiction]
        if not foreign:
            continue
        bad_meas = sorted(set(sink.measurements) - CROSS_BORDER_MEASUREMENTS)
        min_w = parse_duration_ns(sink.min_window) if sink.min_window else 0
        for sid in foreign:
            where = (f"site {sid!r} ({juris[sid]}) -> sink {sink.name!r} ({sink.jurisdiction})")
            if bad_meas:
                problems.append((f"sinks[{i}].measurements", sink.measurements,
                                 f"{where}: {bad_meas} may not leave {juris[sid]}; rule: only "
                                 f"{sorted(CROSS_BORDER_MEASUREMENTS)} cross borders. Set "
                                 "measurements = ['kpi', 'fleet'] or remove the site"))
            if min_w < limit_ns:
                problems.append((f"sinks[{i}].min_window", sink.min_window or "<unset>",
                                 f"{where}: only kpi windows >= {DEFAULT_CROSS_BORDER_MIN_WINDOW} "
                                 "may cross a border; set min_window = '1h' or remove the site"))
    return problems


class Router:
    """Decides which rows each sink receives, and guards every write.

    Routing selects the rows a sink is configured for. The guard then checks each row's site
    jurisdiction against the sink once more (defence in depth): a row that would cross a
    border against the rules is refused, counted in ``refused`` and logged, never written.
    """

    def __init__(self, cfg: Config):
        from pueflow.config import parse_duration_ns

        self.cfg = cfg
        self.juris = {s.id: s.jurisdiction for s in cfg.sites}
        self.limit_ns = cross_border_min_window_ns(cfg)
        self._dur = parse_duration_ns
        self.refused: dict[str, int] = {}
        self.sites = {sink.name: set(sink_sites(cfg, sink)) for sink in cfg.sinks}

    def rows_for(self, sink: Sink, measurement: str, df):  # df: polars.DataFrame
        import logging

        import polars as pl

        if measurement not in sink.measurements or df is None or df.height == 0:
            return None
        if measurement == "fleet":
            # an aggregate of one jurisdiction may leave it; all-fleet rows go anywhere
            return df
        sel = df.filter(pl.col("site").is_in(sorted(self.sites[sink.name])))
        if measurement == "kpi" and sink.min_window:
            min_ns = self._dur(sink.min_window)
            ok = [w for w in sel["window"].unique().to_list() if self._dur(w) >= min_ns]
            sel = sel.filter(pl.col("window").is_in(ok))
        # guard: site-level rows of a foreign site must satisfy the cross-border rule
        foreign = sel.filter(pl.col("site").replace_strict(self.juris, default="?")
                             != sink.jurisdiction)
        if foreign.height:
            allowed = measurement == "kpi"
            if allowed:
                wins = foreign["window"].unique().to_list()
                allowed = all(self._dur(w) >= self.limit_ns for w in wins)
            if not allowed:
                self.refused[sink.name] = self.refused.get(sink.name, 0) + foreign.height
                logging.getLogger("pueflow.sovereignty").error(
                    "refused %d %s rows of %s for sink %s (%s): they may not leave their "
                    "jurisdiction", foreign.height, measurement,
                    sorted(set(foreign["site"].to_list())), sink.name, sink.jurisdiction)
                sel = sel.filter(pl.col("site").replace_strict(self.juris, default="?")
                                 == sink.jurisdiction)
        return sel if sel.height else None
