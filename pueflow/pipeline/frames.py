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
    # column by column: from a dict of float arrays with nan_to_null, polars starts a
    # thread pool on every call (~2 ms), several times the work on a day's windows
    df = pl.DataFrame([pl.Series(k, v, nan_to_null=True) for k, v in cols.items()]).with_columns(
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


class QualityLog:
    """Quality rows of single readings kept as arrays, made one frame when asked.

    The same rows as :func:`screen_quality` and :func:`quality_rows` built call by call
    (identical screening events of one call fold into one row with a count), for a caller
    that wants rows once, not per call: polars' fixed cost per frame is then paid once.
    """

    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._kinds: list[str] = []
        self.rows = 0

    def _kind(self, name: str) -> int:
        if name not in self._kinds:
            self._kinds.append(name)
        return self._kinds.index(name)

    def screened(self, batch: Batch, bad: np.ndarray, codes: np.ndarray, call: int) -> None:
        """Note the readings ``bad`` (indices into ``batch``) screening excluded, by code."""
        lut = np.array([self._kind(SCREEN_NAMES[c]) if c in SCREEN_NAMES else -1
                        for c in range(int(codes.max()) + 1)], np.int16)
        self._add(batch.time_ns[bad], batch.series[bad], batch.value[bad],
                  lut[codes[bad]], np.full(len(bad), call, np.int64))

    def readings(self, b: Batch, kind: str, values: np.ndarray | None = None) -> None:
        """Note one row per reading of ``b`` (``values`` replaces the readings' values)."""
        n = len(b)
        self._add(b.time_ns.copy(), b.series.copy(), (b.value if values is None else values).copy(),
                  np.full(n, self._kind(kind), np.int16), np.full(n, -1, np.int64))

    def _add(self, *cols: np.ndarray) -> None:
        if len(cols[0]):
            self._parts.append(cols)
            self.rows += len(cols[0])

    def frame(self, registry: Registry, run: str) -> pl.DataFrame | None:
        """Build one frame of the rows noted so far and forget them (None: there are none)."""
        if not self._parts:
            return None
        t, s, v, k, call = (np.concatenate(c) for c in zip(*self._parts, strict=True))
        self._parts, self.rows = [], 0
        df = quality_rows(registry, run, Batch(t, s, v), "").with_columns(
            pl.Series("kind", self._kinds, pl.String).gather(k))
        screened = call >= 0
        if not screened.any():
            return df
        # a screening call's identical events fold into one row, as screen_quality does
        key = np.where(screened, call, -2 - np.arange(len(call)))
        return (df.with_columns(pl.Series("__call", key))
                .group_by([*rw.identity_columns("quality"), "__call"], maintain_order=True)
                .agg(pl.col("count").sum(), pl.col("value").first(), pl.col("detail").first())
                .drop("__call").select(df.columns))
