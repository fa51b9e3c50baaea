"""Energy-weighted fleet aggregates across sites, for the whole fleet and per jurisdiction.

Fleet PUE = sum of facility energy / sum of IT energy over the sites, never a mean of the
sites' PUEs. Daily windows are keyed by each site's local date (a day in Casablanca is not a
day in Texas); shorter windows by their UTC start.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from pueflow.config.models import Config, Site
from pueflow.pipeline.kpi import ratios_of_sums
from pueflow.pipeline.windows import DAY, local_date
from pueflow.roles import ROLE_INDEX

R = ROLE_INDEX
COOLING = [i for r, i in R.items() if r.startswith("cooling.")]


def site_totals(energy: np.ndarray, metered: np.ndarray, co2: float) -> np.ndarray:
    """(facility, it, renewable, grid CO2 kg, water L) of one site window [kWh, kg, L]."""
    return site_totals_many(np.asarray(energy)[None, :], metered, co2)[0]


def fleet_row(totals: np.ndarray) -> dict[str, float | None]:
    """KPIs from summed (facility, it, renewable, co2, water) totals."""
    fac, it, ren, co2, water = (float(x) for x in totals)
    r = ratios_of_sums([fac], [it], [ren], [co2], [water])
    kpis = {k: (None if np.isnan(r[k][0]) else float(r[k][0]))
            for k in ("pue", "ref", "cue_kg_per_kwh", "wue_l_per_kwh")}
    return {"facility_kwh": fac, "it_kwh": it, "renewable_kwh": ren, "co2_kg": co2,
            "water_l": water, **kpis}


class FleetAggregator:
    """Collects site windows; emits a fleet row once every site of a scope has reported.

    Rows are kept in columnar blocks; ``flush`` groups them by (scope, window, time).
    """

    _TOTALS = ("facility_kwh", "it_kwh", "renewable_kwh", "co2_kg", "water_l")

    def __init__(self, cfg: Config, run: str = ""):
        self.run = run
        self.scopes = fleet_scopes(cfg)
        self.scope_size = {k: len(v) for k, v in self.scopes.items()}
        self.pending: list[pl.DataFrame] = []
        #: when a list, every site window added is also kept here (site, window, time key,
        #: totals): what consume publishes to the KPI topic for the aggregate stage
        self.tap: list[pl.DataFrame] | None = None
        # (scope, window, time key) -> [rows, sites] of what ``pending`` holds, kept while
        # ``pending`` is the list it was counted from and nothing else changed it: lets
        # ``flush`` see without polars that no fleet window is complete yet
        # per key: rows counted, and the sites seen as a bit mask (plain ints: a container
        # per key would make Python's cyclic GC rescan the heap while many are added)
        self._keys: dict[tuple[str, str, int], int] = {}
        self._seen: dict[tuple[str, str, int], int] = {}
        self._bit = {sid: 1 << i for i, sid in enumerate(sorted(self.scopes.get("fleet", ())))}
        self._counted: tuple[list, int] = (self.pending, 0)

    def add(self, site: Site, window: str, start_ns: int, energy: np.ndarray,
            metered: np.ndarray, tz: ZoneInfo) -> None:
        """Add one window of one site (``energy`` [roles] [kWh]); see :meth:`add_many`."""
        self.add_many(site, window, np.array([start_ns]), energy[None, :], metered, tz)

    def add_many(self, site: Site, window: str, starts: np.ndarray, energy: np.ndarray,
                 metered: np.ndarray, tz: ZoneInfo) -> None:
        """Add ``len(starts)`` windows of one site ([k, roles] energies)."""
        if window == DAY:
            keys = np.array([int(datetime.fromisoformat(local_date(int(t), tz))
                                 .replace(tzinfo=UTC).timestamp()) * 10**9 for t in starts])
        else:
            keys = np.asarray(starts, np.int64)
        tot = site_totals_many(energy, metered, site.grid_co2_kg_per_kwh)
        scopes = [sc for sc, members in self.scopes.items() if site.id in members]
        k = len(keys)
        if not k:
            return
        if self.tap is not None:
            self.tap.append(pl.DataFrame({
                "window": [window] * k, "time": keys, "site": [site.id] * k,
                **{name: tot[:, j] for j, name in enumerate(self._TOTALS)}}))
        if not scopes:
            return
        counted = self._counts_valid()
        n = len(scopes)  # one frame for every scope the site belongs to
        self.pending.append(pl.DataFrame({
            "scope": np.repeat(np.array(scopes, dtype=object), k).tolist(),
            "window": [window] * (n * k), "time": np.tile(keys, n),
            "site": [site.id] * (n * k),
            **{name: np.tile(tot[:, j], n) for j, name in enumerate(self._TOTALS)}}))
        if counted:
            bit = self._bit[site.id]
            for sc in scopes:
                for t in keys.tolist():
                    key = (sc, window, t)
                    self._keys[key] = self._keys.get(key, 0) + 1
                    self._seen[key] = self._seen.get(key, 0) | bit
            self._counted = (self.pending, len(self.pending))

    def flush(self, final: bool, passed: Callable[[str, str, int], bool] | None = None
              ) -> pl.DataFrame | None:
        """Emit every complete fleet window.

        A window is complete when every member site has contributed it, or (``passed``)
        has moved past it without data: ``passed(site_id, window, key_ns)`` says so, e.g.
        for a feed that is silent but whose watermark has moved on. ``final`` emits all.
        """
        if not self.pending:
            self._recount(None)
            return None
        if not final and self._none_ready(passed):
            return None
        df = pl.concat(self.pending).sort("scope", "window", "time", "site")
        g = group_contributions(df)
        if final:
            ready = np.ones(g.height, bool)
        else:
            ready = np.array([
                n >= self.scope_size[sc] or (passed is not None and all(
                    passed(m, w, t) for m in self.scopes[sc].difference(got)))
                for sc, w, t, n, got in zip(g["scope"], g["window"], g["time"].to_list(),
                                            g["sites"], g["site"].to_list(), strict=True)], bool)
        done = g.filter(pl.Series(ready)).drop("site")
        if ready.all():
            self.pending = []
            self._recount(None)
        else:
            rest = g.filter(pl.Series(~ready))
            left = rest.select("scope", "window", "time")
            self.pending = [df.join(left, on=["scope", "window", "time"], how="semi")]
            self._recount(rest)
        if done.height == 0:
            return None
        return fleet_frame(done, self.run, self.scope_size)


    def _none_ready(self, passed: Callable[[str, str, int], bool] | None) -> bool:
        """Whether the counts (when still valid) show no pending fleet window complete."""
        if not self._counts_valid():
            return False
        for (sc, w, t), n in self._keys.items():
            if n >= self.scope_size[sc]:
                return False
            got = self._seen[(sc, w, t)]
            if passed is not None and all(passed(m, w, t) for m in self.scopes[sc]
                                          if not got & self._bit[m]):
                return False
        return True

    def _counts_valid(self) -> bool:
        """Whether ``_keys`` still counts ``pending`` (nobody replaced or cleared it)."""
        lst, n = self._counted
        return self.pending is lst and len(lst) == n

    def _recount(self, groups: pl.DataFrame | None) -> None:
        """Count ``pending`` afresh from its groups (:func:`group_contributions`) or as empty."""
        self._keys, self._seen = {}, {}
        if groups is not None:
            for sc, w, t, n, got in zip(groups["scope"], groups["window"], groups["time"].to_list(),
                                        groups["sites"], groups["site"].to_list(), strict=True):
                self._keys[(sc, w, t)] = n
                self._seen[(sc, w, t)] = sum(self._bit[m] for m in set(got))
        self._counted = (self.pending, len(self.pending))


TOTALS = FleetAggregator._TOTALS  # noqa: SLF001 - the one list of summed columns


def fleet_scopes(cfg: Config) -> dict[str, set[str]]:
    """Member sites of each fleet scope: ``"fleet"`` (every site) and each jurisdiction."""
    scopes: dict[str, set[str]] = {"fleet": {s.id for s in cfg.sites}}
    for s in cfg.sites:
        scopes.setdefault(s.jurisdiction, set()).add(s.id)
    return scopes


def group_contributions(df: pl.DataFrame) -> pl.DataFrame:
    """Sum site contributions (scope, window, time, site, totals) per fleet window.

    Rows are sorted by site inside each window first, so the sums do not depend on the
    order the contributions arrived in (a replay and a consumer group add the same floats
    in the same order).
    """
    df = df.sort("scope", "window", "time", "site")
    return df.group_by("scope", "window", "time", maintain_order=True).agg(
        pl.len().alias("sites"), pl.col("site"), *[pl.col(c).sum() for c in TOTALS])


def fleet_frame(done: pl.DataFrame, run: str, scope_size: dict[str, int]) -> pl.DataFrame:
    """Fleet rows from summed windows (:func:`group_contributions` output).

    ``sites`` and ``sites_reporting`` are the sites whose window is in the sum,
    ``sites_expected`` the scope's member count: fewer reporting means the window closed
    at its completeness deadline (or, in a replay, a site never reported it).
    """
    r = ratios_of_sums(*(done[c].to_numpy() for c in TOTALS))
    return done.select(
        pl.col("time").cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"),
        "scope", "window", pl.lit(run).alias("run"),
        *TOTALS,
        *(pl.Series(k, r[k], nan_to_null=True)
          for k in ("pue", "ref", "cue_kg_per_kwh", "wue_l_per_kwh")),
        pl.col("sites").cast(pl.Int64),
        pl.col("sites").cast(pl.Int64).alias("sites_reporting"),
        pl.col("scope").replace_strict(scope_size, return_dtype=pl.Int64).alias("sites_expected"),
    )


def site_totals_many(energy: np.ndarray, metered: np.ndarray, co2: float) -> np.ndarray:
    """(facility, it, renewable, grid CO2 kg, water L) of each row of [k, roles] energies.

    Facility is its meter where there is one, else IT + cooling + losses + other; renewable
    is on-site PV and wind plus contracted (``ppa``) supply, which never counts against the
    grid estimate (grid import where metered, else facility minus on-site generation).
    Returns [k, 5] [kWh, kWh, kWh, kg, L].
    """
    e = np.asarray(energy, np.float64).reshape(-1, len(R))
    it = e[:, R["it"]]
    if metered[R["facility"]]:
        fac = e[:, R["facility"]]
    else:
        fac = it + e[:, COOLING].sum(axis=1) + e[:, R["electrical_losses"]] + e[:, R["other"]]
    onsite = e[:, R["pv"]] + e[:, R["wind"]]
    ren = onsite + e[:, R["ppa"]]
    grid = e[:, R["grid_import"]] if metered[R["grid_import"]] else np.maximum(fac - onsite, 0.0)
    return np.column_stack([fac, it, ren, grid * co2, e[:, R["water_l"]]])
