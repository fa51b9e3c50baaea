"""History for tuning: what ``--input`` holds, as a backtest history of one site, split in time.

``--input`` may be any of (detected from the columns, not the name):

* a **history frame** (Parquet/CSV with ``time, pv_kw, wind_kw, it_kw, ambient_c`` and
  optionally ``price_per_kwh, carbon_kg_per_kwh``) at the dispatch step, ``it_kw`` being the
  *firm* IT load: used as it is;
* **window rows**: the simulator's ``truth.parquet`` (or a folder holding it), or the ``kpi``
  rows of a replay (a Parquet store folder, or a file of rows with ``window, pv_kwh, it_kwh``);
* **telemetry** (long form ``time, site, device, point, value``, or Telegraf JSON-lines /
  line protocol): replayed through the shared core (:func:`pueflow.modes.replay.replay`)
  into KPI rows first.

Window rows become a history the way the live dispatcher reads its KPI rows: energies of
the window equal to the dispatch step (or of finer windows summed into it) divided by the
step, ambient from ``ambient_temp_c``, and firm IT = measured IT minus what the site's
flexible jobs draw on average over their windows (measured IT includes the jobs; the
backtest adds the tuned jobs back on top). Edge windows covering less than half a step are
dropped; missing steps inside are interpolated and counted in :class:`History`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pueflow.connectors.parquet_store import read_store
from pueflow.exceptions import ConfigError, InputFormatError
from pueflow.modes.replay import replay
from pueflow.optimizers.assets import SiteModel
from pueflow.optimizers.backtest import REQUIRED
from pueflow.optimizers.dispatcher import _expected_flex_kw
from pueflow.units import parse_duration_ns

_TELEMETRY = {"time", "device", "point", "value"}
_WINDOW_ROWS = {"time", "window", "it_kwh"}


@dataclass
class History:
    """A site's history on the dispatch step grid, and where it came from."""

    frame: pl.DataFrame
    source: str  # "history", "truth", "kpi" or "telemetry"
    filled_steps: int = 0


@dataclass
class Periods:
    """Train and validation histories; each starts with ``warmup_days`` that only feed forecasters."""

    train: pl.DataFrame
    validation: pl.DataFrame | None
    warmup_days: float
    train_days: float
    validation_days: float
    split: datetime


def _columns(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return list(pl.read_parquet_schema(path))
    if suffix == ".csv":
        return list(pl.read_csv(path, n_rows=0).columns)
    return []


def load_history(cfg: Any, site: Any, model: SiteModel, path: str | Path, *,
                 progress: bool = False) -> History:
    """Load the backtest history of ``site`` from ``path`` (detected from its columns).

    Parameters
    ----------
    cfg : Config
        The whole config (telemetry is replayed through it).
    site : Site
        The config site being tuned.
    model : SiteModel
        Its dispatch model (step, jobs, ambient default).
    path : str or Path
        A history frame, window rows (``truth.parquet``, a Parquet store or a folder
        holding either) or telemetry; see the module doc.
    progress : bool
        Show the replay's progress bar (telemetry only).

    Returns
    -------
    History
        Rows at the dispatch step: ``time`` (UTC), ``pv_kw``, ``wind_kw``, ``it_kw`` (firm)
        [kW] and ``ambient_c`` [degC], with its source and the count of filled steps.

    Raises
    ------
    InputFormatError
        ``path`` does not exist, holds none of the forms above, holds several runs or no
        rows of the site, or has fewer than two full dispatch steps.
    """
    p = Path(path)
    if not p.exists():
        raise InputFormatError(str(p), "no such file or directory; give a history frame, the "
                                       "simulator's truth.parquet, a Parquet store or telemetry")
    if p.is_dir():
        if (p / "truth.parquet").exists():
            return _from_windows(pl.read_parquet(p / "truth.parquet"), model, "truth", str(p))
        if (p / "measurement=kpi").is_dir():
            return _from_windows(read_store(p, "kpi", site=site.id), model, "kpi", str(p))
        return _from_telemetry(cfg, site, model, p, progress)
    cols = set(_columns(p))
    if set(REQUIRED) <= cols:
        return History(_read(p), "history")
    if _WINDOW_ROWS <= cols:
        df = _read(p)
        return _from_windows(df, model, "truth" if "coverage" in cols and "run" not in cols else "kpi", str(p))
    if _TELEMETRY <= cols or p.suffix.lower() in (".jsonl", ".lp", ".gz"):
        return _from_telemetry(cfg, site, model, p, progress)
    msg = (f"columns {sorted(cols)} are neither a history frame ({', '.join(REQUIRED)}), window rows "
           f"(time, window, it_kwh, pv_kwh, ...: truth.parquet or kpi rows) nor telemetry "
           f"(time, site, device, point, value)")
    raise InputFormatError(str(p), msg)


def _read(p: Path) -> pl.DataFrame:
    if p.suffix.lower() == ".csv":
        df = pl.read_csv(p, try_parse_dates=True)
        if df.schema["time"] == pl.String:
            df = df.with_columns(pl.col("time").str.to_datetime(time_zone="UTC"))
        return df
    return pl.read_parquet(p)


def _from_telemetry(cfg: Any, site: Any, model: SiteModel, p: Path, progress: bool) -> History:
    res = replay(cfg, [p], progress=progress, write=False, run="tune")
    if not res.kpi.height:
        raise InputFormatError(str(p), f"replaying it gave no KPI rows for site {site.id!r}; "
                                       "check the meter map in the config")
    h = _from_windows(res.kpi, model, "kpi", str(p))
    h.source = "telemetry"
    return h


def _from_windows(rows: pl.DataFrame, model: SiteModel, source: str, where: str) -> History:
    """Window rows (truth or kpi) of ``model``'s site -> history on the dispatch step grid."""
    if "site" in rows.columns:
        rows = rows.filter(pl.col("site") == model.site_id)
    if "run" in rows.columns and rows["run"].n_unique() > 1:
        runs = sorted(str(r) for r in rows["run"].unique().to_list())
        raise InputFormatError(where, f"holds rows of several runs {runs}; give a store with one run")
    if not rows.height:
        raise InputFormatError(where, f"holds no rows of site {model.site_id!r}")
    step = model.step_ns
    have = {w: parse_duration_ns(w) for w in rows["window"].unique().to_list()}
    fits = [w for w, n in have.items() if n <= step and step % n == 0]
    if not fits:
        raise InputFormatError(where, f"has windows {sorted(have)}, none dividing the dispatch step "
                                      f"({model.step_s:g} s); replay with a window of the step (e.g. '15m')")
    w = max(fits, key=have.__getitem__)
    df = rows.filter(pl.col("window") == w).sort("time")
    cov = pl.col("coverage") if "coverage" in df.columns else pl.lit(1.0)
    energy = [c for c in ("pv_kwh", "wind_kwh", "it_kwh") if c in df.columns]
    amb = "ambient_temp_c" if "ambient_temp_c" in df.columns else None
    agg = df.with_columns(pl.col("time").dt.truncate(f"{step}ns").alias("time")).group_by("time").agg(
        *(pl.col(c).sum() for c in energy),
        *([pl.col(amb).mean()] if amb else []),
        (cov.fill_null(0.0).sum() * have[w] / step).alias("coverage")).sort("time")
    agg = agg.filter(pl.col("coverage") >= 0.5)
    if agg.height < 2:
        raise InputFormatError(where, f"has fewer than two full {model.step_s:g} s steps of site {model.site_id!r}")
    t0, t1 = agg["time"][0], agg["time"][-1]
    grid = pl.DataFrame({"time": pl.datetime_range(t0, t1, f"{step}ns", eager=True, time_zone="UTC")})
    time_dtype = agg.schema["time"]
    if not isinstance(time_dtype, pl.Datetime):  # dt.truncate above already needs a temporal column
        raise InputFormatError(where, f"column 'time' is {time_dtype}, not a Datetime; write UTC datetimes")
    grid = grid.with_columns(pl.col("time").dt.cast_time_unit(time_dtype.time_unit))
    full = grid.join(agg, on="time", how="left")
    filled = int(full["coverage"].is_null().sum())
    hours = model.step_h
    t = full["time"].dt.cast_time_unit("ns").cast(pl.Int64).to_numpy()
    out: dict[str, np.ndarray] = {}
    for c, name in (("pv_kwh", "pv_kw"), ("wind_kwh", "wind_kw"), ("it_kwh", "it_kw")):
        v = full[c].cast(pl.Float64).to_numpy() / hours if c in full.columns else np.zeros(len(t))
        out[name] = _interpolate(v)
    out["it_kw"] = np.maximum(out["it_kw"] - _expected_flex_kw(model, t), 0.0)
    a = full[amb].cast(pl.Float64).to_numpy() if amb else np.full(len(t), np.nan)
    out["ambient_c"] = _interpolate(a, default=model.spec.forecast.ambient_mean_c)
    frame = pl.DataFrame({"time": full["time"], **out}).with_columns(pl.col("time").dt.cast_time_unit("ns"))
    return History(frame, source, filled)


def _interpolate(v: np.ndarray, default: float = 0.0) -> np.ndarray:
    ok = np.isfinite(v)
    if not ok.any():
        return np.full(len(v), default)
    idx = np.arange(len(v))
    return np.interp(idx, idx[ok], v[ok])


def split_periods(hist: pl.DataFrame, spec: Any, model: SiteModel, source: str = "tune") -> Periods:
    """Cut ``hist`` to ``[tune] start..end`` and split it into train and validation periods.

    The validation period is preceded by ``warmup_days`` of the train period's history, so its
    forecasters start from the same knowledge a live dispatcher would have.
    """
    h = hist.sort("time")
    if spec.start is not None:
        h = h.filter(pl.col("time") >= spec.start)
    if spec.end is not None:
        h = h.filter(pl.col("time") < spec.end)
    if h.height < 2:
        _bad(source, "tune.start", spec.start, "the history window holds no data; widen start..end "
                                               f"(the input covers {_span(hist)})")
    step = timedelta(seconds=model.step_s)
    first, end = h["time"][0], h["time"][-1] + step
    split = spec.split or (end - timedelta(days=spec.validation_days))
    k = round((split - first) / step)
    split = first + k * step
    warm = timedelta(days=spec.warmup_days)
    if split - first < warm + timedelta(days=1):
        _bad(source, "tune.validation_days" if spec.split is None else "tune.split", spec.split or spec.validation_days,
             f"leaves {(split - first) / timedelta(days=1):.2f} d to train, less than warmup_days "
             f"({spec.warmup_days:g}) + 1 d; give more history (input covers {_span(h)}) or shorten the validation")
    if split > end:
        _bad(source, "tune.split", spec.split, f"is after the history's end {end.isoformat()}")
    train = h.filter(pl.col("time") < split)
    val = h.filter(pl.col("time") >= split - warm) if split < end else None
    if val is not None and val.height <= round(spec.warmup_days * 86400 / model.step_s):
        val = None
    return Periods(train, val, spec.warmup_days, (split - first - warm) / timedelta(days=1),
                   (end - split) / timedelta(days=1) if val is not None else 0.0, split)


def _span(h: pl.DataFrame) -> str:
    if not h.height:
        return "nothing"
    return f"{h['time'][0].isoformat()} .. {h['time'][-1].isoformat()}"


def _bad(source: str, key: str, value: object, fix: str) -> None:
    raise ConfigError(source, [(key, value, fix)])
