"""Output frames of the core: KPI rows from complete windows, and quality rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from pueflow.config.models import Config
from pueflow.pipeline import kpi as kp
from pueflow.pipeline.history import Windows
from pueflow.pipeline.screen import SCREEN_NAMES
from pueflow.roles import ALL_ROLES, ROLE_INDEX, SENSOR_ROLES
from pueflow.schema import rows as rw
from pueflow.schema.batch import Batch
from pueflow.schema.registry import Registry
from pueflow.units import parse_duration_ns

ENERGY_COLUMNS = tuple(
    (r.replace(".", "_") + ("" if r.endswith(("_kwh", "_l")) else "_kwh"), ROLE_INDEX[r])
    for r in ALL_ROLES if r not in SENSOR_ROLES
)
SENSOR_COLUMNS = tuple((r, ROLE_INDEX[r]) for r in SENSOR_ROLES)


def kpi_frame(cfg: Config, metered: np.ndarray, run: str, blocks: list[Windows],
              quality: list[pl.DataFrame]) -> pl.DataFrame:
    """KPI rows of complete windows; null-PUE windows with data add quality rows."""
    site_idx = np.concatenate([np.full(len(b.start), b.site) for b in blocks])
    n = len(site_idx)
    energy = np.concatenate([b.e for b in blocks])
    fields = np.empty((n, len(kp.KPI_FIELDS)))
    flags = np.empty(n, np.int8)
    for i in np.unique(site_idx):
        sel = site_idx == i
        f, fl = kp.compute(energy[sel], metered[i], cfg.sites[i].grid_co2_kg_per_kwh)
        fields[sel] = f
        flags[sel] = fl
    metered = metered[site_idx]
    ids = np.array([s.id for s in cfg.sites], dtype=object)
    cats = np.array([str(s.pue_category) for s in cfg.sites], dtype=object)
    cols: dict[str, Any] = {
        "time": np.concatenate([b.start for b in blocks]).astype("datetime64[ns]"),
        "site": ids[site_idx].tolist(),
        "window": [b.window for b in blocks for _ in range(len(b.start))],
        "category": cats[site_idx].tolist(),
        "run": [run] * n,
    }
    for name, j in ENERGY_COLUMNS:
        cols[name] = np.where(metered[:, j], energy[:, j], np.nan)
    for j, name in enumerate(kp.KPI_FIELDS):
        if name not in cols:
            cols[name] = fields[:, j]
    cols["facility_kwh"] = fields[:, kp.F["facility_kwh"]]
    # hourly matching is defined on hours: other windows carry no cfe fields
    hourly = np.concatenate([np.full(len(b.start), parse_duration_ns(b.window) == kp.CFE_WINDOW_NS)
                             for b in blocks])
    for name in kp.CFE_FIELDS:
        cols[name] = np.where(hourly, cols[name], np.nan)
    cover = np.concatenate([b.cover for b in blocks])
    cols["coverage"] = cover
    ev = np.concatenate([b.ev for b in blocks])
    cols["rollovers"], cols["resets"], cols["gaps"] = ev[:, 0], ev[:, 1], ev[:, 2]
    means = np.concatenate([b.means for b in blocks])
    for name, j in SENSOR_COLUMNS:
        cols[name] = means[:, j]
    df = pl.DataFrame(cols, nan_to_null=True).with_columns(
        pl.col("time").dt.replace_time_zone("UTC"))
    data_rows = (np.concatenate([b.den for b in blocks]) > 0) & (cover > 0)
    for flag, kind in ((kp.FLAG_NON_POSITIVE_IT, "non_positive_it"),
                       (kp.FLAG_BETTER_THAN_PERFECT, "better_than_perfect")):
        sel = np.flatnonzero((flags == flag) & data_rows)
        if len(sel):
            sub = df[sel]
            quality.append(pl.DataFrame({
                "time": sub["time"], "site": sub["site"], "kind": [kind] * len(sel),
                "device": ["*"] * len(sel), "point": sub["window"], "run": [run] * len(sel),
                "count": np.ones(len(sel), np.int64),
                "value": (sub["facility_kwh"] / sub["it_kwh"]).fill_null(np.nan).to_numpy(),
                "detail": [f"window {w}: facility/IT not reported" for w in sub["window"]],
            }))
    return df


def quality_rows(registry: Registry, run: str, b: Batch, kind: str,
                 values: np.ndarray | None = None, detail: str = "") -> pl.DataFrame:
    """One ``quality`` row per reading of ``b`` (``values`` replaces the readings' values)."""
    n, m = len(b), len(registry)
    # the registry's key columns, gathered by series id (ids naming no series read "?")
    ids = b.series.astype(np.int64)
    at = np.where((ids >= 0) & (ids < m), ids, m)
    parts = [col.gather(at) for col in registry.key_columns()]

    def const(x: str) -> pl.Series:
        return pl.Series([x], dtype=pl.String).new_from_index(0, n) if n else pl.Series(
            [], dtype=pl.String)

    return pl.DataFrame({
        "time": pl.Series(b.time_ns).cast(pl.Datetime("ns", "UTC")),
        "site": parts[0], "kind": const(kind), "device": parts[1], "point": parts[2],
        "run": const(run), "count": np.ones(n, np.int64),
        "value": b.value if values is None else values, "detail": const(detail),
    })

def screen_quality(registry: Registry, run: str, batch: Batch, bad: np.ndarray,
                   codes: np.ndarray) -> pl.DataFrame:
    """Quality rows of the readings screening excluded; identical events fold into one."""
    parts = []
    for c, name in SCREEN_NAMES.items():
        sel = bad[codes[bad] == c]
        if len(sel):
            parts.append(quality_rows(registry, run, batch.take(sel), name))
    df = pl.concat(parts)
    # identical events (same identity) fold into one row with a count
    return (df.group_by(rw.identity_columns("quality"), maintain_order=True)
            .agg(pl.col("count").sum(), pl.col("value").first(), pl.col("detail").first()))
