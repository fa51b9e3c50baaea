"""Energy-weighted fleet aggregates across sites, for the whole fleet and per jurisdiction.

Fleet PUE = sum of facility energy / sum of IT energy over the sites, never a mean of the
sites' PUEs. Daily windows are keyed by each site's local date (a day in Casablanca is not a
day in Texas); shorter windows by their UTC start.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from pueflow.config import ROLE_INDEX, Config, Site
from pueflow.pipeline.windows import DAY, local_date

R = ROLE_INDEX
COOLING = [i for r, i in R.items() if r.startswith("cooling.")]


def site_totals(energy: np.ndarray, metered: np.ndarray, co2: float) -> np.ndarray:
    """(facility, it, renewable, grid CO2 kg, water L) of one site window."""
    it = energy[R["it"]]
    if metered[R["facility"]]:
        fac = energy[R["facility"]]
    else:
        fac = it + energy[COOLING].sum() + energy[R["electrical_losses"]] + energy[R["other"]]
    ren = energy[R["pv"]] + energy[R["wind"]]
    grid = energy[R["grid_import"]] if metered[R["grid_import"]] else max(fac - ren, 0.0)
    return np.array([fac, it, ren, grid * co2, energy[R["water_l"]]])


def fleet_row(totals: np.ndarray) -> dict[str, float | None]:
    """KPIs from summed (facility, it, renewable, co2, water) totals."""
    fac, it, ren, co2, water = (float(x) for x in totals)
    ok = it > 0
    return {
        "facility_kwh": fac, "it_kwh": it, "renewable_kwh": ren, "co2_kg": co2, "water_l": water,
        "pue": fac / it if ok and fac >= it else None,
        "ref": min(ren / fac, 1.0) if fac > 0 else None,
        "cue_kg_per_kwh": co2 / it if ok else None,
        "wue_l_per_kwh": water / it if ok else None,
    }


class FleetAggregator:
    """Collects site windows; emits a fleet row once every site of a scope has reported."""

    def __init__(self, cfg: Config, run: str = ""):
        self.run = run
        self.scopes: dict[str, set[str]] = {"fleet": {s.id for s in cfg.sites}}
        for s in cfg.sites:
            self.scopes.setdefault(s.jurisdiction, set()).add(s.id)
        self.pending: dict[tuple[str, str, int], dict[str, np.ndarray]] = {}

    def add(self, site: Site, window: str, start_ns: int, energy: np.ndarray,
            metered: np.ndarray, tz: ZoneInfo) -> None:
        if window == DAY:
            d = datetime.fromisoformat(local_date(start_ns, tz)).replace(tzinfo=UTC)
            key_ns = int(d.timestamp()) * 10**9
        else:
            key_ns = start_ns
        tot = site_totals(energy, metered, site.grid_co2_kg_per_kwh)
        for scope, members in self.scopes.items():
            if site.id in members:
                self.pending.setdefault((scope, window, key_ns), {})[site.id] = tot

    def flush(self, final: bool) -> pl.DataFrame | None:
        rows = []
        for key in sorted(self.pending):
            scope, window, t_ns = key
            got = self.pending[key]
            if not final and len(got) < len(self.scopes[scope]):
                continue
            totals = np.sum([got[s] for s in sorted(got)], axis=0)
            rows.append({"time": t_ns, "scope": scope, "window": window, "run": self.run,
                         **fleet_row(totals), "sites": len(got)})
            del self.pending[key]
        if not rows:
            return None
        return pl.DataFrame(rows).with_columns(
            pl.col("time").cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"))
