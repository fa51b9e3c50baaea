"""The aggregate stage's book: site windows in (from the KPI topic), fleet rows out.

Each site window (site, window, time key, energy totals) is kept until its fleet windows can
no longer change. A fleet window of a scope (the fleet, or one jurisdiction) is written once
every member site has reported it, or once the stage's event time (the latest window end
seen from any site) passes its end by ``deadline_ns``: then with ``sites_reporting <
sites_expected``. A site window arriving later, but within ``lateness_ns`` of its end,
restates the fleet window (same key: the store keeps the newest); later ones are refused.
The same window arriving twice (a restarted consumer re-publishes) changes nothing.

Sums go through :func:`~pueflow.pipeline.fleet.group_contributions` and
:func:`~pueflow.pipeline.fleet.fleet_frame`, so rows equal the in-core aggregator's.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from pueflow.config.models import Config
from pueflow.config.routing import kpi_topic_windows
from pueflow.exceptions import StateError
from pueflow.pipeline.fleet import TOTALS, fleet_frame, fleet_scopes, group_contributions
from pueflow.units import parse_duration_ns

STATE_VERSION = 1


class FleetBook:
    """Open and recently closed fleet windows of every scope.

    Parameters
    ----------
    cfg : Config
        Sites and their jurisdictions (the scopes), windows.
    run : str
        ``run`` tag of the rows.
    deadline_ns : int
        Completeness deadline past a window's end [ns of event time].
    lateness_ns : int
        Allowed lateness of a site window past its end [ns of event time].
    """

    def __init__(self, cfg: Config, run: str, deadline_ns: int, lateness_ns: int):
        self.run = run
        self.scopes = fleet_scopes(cfg)
        self.scope_size = {k: len(v) for k, v in self.scopes.items()}
        self.site_scopes = {s.id: [sc for sc, m in self.scopes.items() if s.id in m] for s in cfg.sites}
        sent = kpi_topic_windows(cfg)
        #: windows each scope is built at: those every member site publishes to the KPI topic
        self.scope_windows = {sc: frozenset.intersection(*(sent[m] for m in members))
                              for sc, members in self.scopes.items()}
        self.win_ns = {w: parse_duration_ns(w) for w in cfg.pipeline.windows}
        self.deadline_ns = deadline_ns
        self.lateness_ns = lateness_ns
        self.now_ns = -(2**62)  # event time: latest window end seen
        self.windows: dict[tuple[str, int, str], tuple[float, ...]] = {}  # (window, key, site)
        self.written: dict[tuple[str, str, int], int] = {}  # (scope, window, key) -> sites in it
        self._touched: set[tuple[str, int]] = set()

    def add(self, site: str, window: str, key_ns: int, totals: tuple[float, ...]) -> str | None:
        """Take one site window; return why it is refused, or None.

        Parameters
        ----------
        site, window : str
            Site id and window name (as in the config).
        key_ns : int
            Fleet key of the window [ns]: its UTC start, or for days the local date's UTC midnight.
        totals : tuple of float
            facility [kWh], IT [kWh], renewable [kWh], CO2 [kg], water [L].
        """
        if site not in self.site_scopes:
            return f"unknown_site: {site!r} is not a site of the config"
        if window not in self.win_ns:
            return f"unknown_window: {window!r} is not one of {sorted(self.win_ns)}"
        if len(totals) != len(TOTALS) or not all(np.isfinite(totals)):
            return f"invalid_value: totals {totals!r} are not {len(TOTALS)} finite numbers"
        end = key_ns + self.win_ns[window]
        if end + self.lateness_ns < self.now_ns:
            return (f"late: {site}/{window} window at {key_ns} ns ended more than the allowed "
                    f"lateness before the stage's event time {self.now_ns} ns")
        k = (window, key_ns, site)
        if self.windows.get(k) != totals:
            self.windows[k] = totals
            self._touched.add((window, key_ns))
        self.now_ns = max(self.now_ns, end)
        return None

    def ready(self) -> pl.DataFrame | None:
        """Fleet rows that are complete, past their deadline, or restated; then forget old windows."""
        due = {(w, k) for (w, k, _) in self.windows
               if k + self.win_ns[w] + self.deadline_ns <= self.now_ns}
        cand = self._touched | due
        self._touched = set()
        rows = []
        for w, k in sorted(cand):
            for site in self.scopes["fleet"]:
                tot = self.windows.get((w, k, site))
                if tot is None:
                    continue
                for sc in self.site_scopes[site]:
                    if w not in self.scope_windows[sc]:
                        continue
                    rows.append((sc, w, k, site, *tot))
        out = None
        if rows:
            df = pl.DataFrame(rows, schema=["scope", "window", "time", "site", *TOTALS], orient="row")
            g = group_contributions(df)
            keep = []
            for sc, w, k, n in zip(g["scope"], g["window"], g["time"].to_list(), g["sites"], strict=True):
                closed = n >= self.scope_size[sc] or (w, k) in due
                keep.append(closed and self.written.get((sc, w, k)) != n)
                if keep[-1]:
                    self.written[(sc, w, k)] = n
            done = g.filter(pl.Series(keep, dtype=pl.Boolean))
            out = fleet_frame(done, self.run, self.scope_size) if done.height else None
        self._expire()
        return out

    def _expire(self) -> None:
        horizon = self.now_ns - self.lateness_ns - self.deadline_ns
        self.windows = {k: v for k, v in self.windows.items() if k[1] + self.win_ns[k[0]] >= horizon}
        self.written = {k: v for k, v in self.written.items() if k[2] + self.win_ns[k[1]] >= horizon}

    # ------------------------------------------------------------------ checkpoint
    def snapshot(self, sites: list[str]) -> bytes:
        """State of ``sites``' windows, with the event time and every written mark, as bytes."""
        keep = set(sites)
        body = {"version": STATE_VERSION, "now_ns": self.now_ns,
                "windows": [[w, k, s, list(v)] for (w, k, s), v in self.windows.items() if s in keep],
                "written": [[sc, w, k, n] for (sc, w, k), n in self.written.items()]}
        return json.dumps(body).encode()

    def restore(self, blob: bytes) -> list[str]:
        """Merge :meth:`snapshot` bytes in; returns the sites whose windows were restored."""
        try:
            body = json.loads(blob)
        except ValueError as exc:
            msg = f"checkpointed aggregate state is unreadable ({exc}); delete the state record to start fresh"
            raise StateError(msg) from None
        if body.get("version") != STATE_VERSION:
            msg = (f"checkpointed aggregate state has format version {body.get('version')}; this pueflow "
                   f"reads version {STATE_VERSION}. Reset the aggregate group's state records")
            raise StateError(msg)
        self.now_ns = max(self.now_ns, int(body["now_ns"]))
        sites = set()
        for w, k, s, v in body["windows"]:
            self.windows[(w, int(k), s)] = tuple(float(x) for x in v)
            sites.add(s)
        for sc, w, k, n in body["written"]:
            key = (sc, w, int(k))
            self.written[key] = max(self.written.get(key, 0), int(n))
        return sorted(sites)
