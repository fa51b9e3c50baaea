"""Read-only views of Parquet stores for the operators' pages and the annual report.

A store is the hive-partitioned folder the ``parquet`` sink writes
(``measurement=<m>/<site|scope>=<v>/date=<YYYY-MM-DD>/part-0.parquet``). A fleet whose
sovereignty rules keep each country's rows in its own folder is read as several stores;
a site's rows live in one of them. Scans are lazy (:func:`polars.scan_parquet` with hive
partitions), so a filter on ``site`` and ``date`` reads only the matching files.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from pueflow.config.models import Config
from pueflow.exceptions import PueflowError

#: Hive partition columns added by the scan (dropped from what pages show).
HIVE_COLUMNS = ("measurement", "date")
#: Columns that identify a row (the union over measurements, see ``schema.rows``): a row
#: several stores hold (a coarse-window group sink next to a country's store) counts once.
IDENTITY = ("time", "site", "scope", "window", "category", "kind", "device", "point", "asset", "run")


def store_paths(cfg: Config, stores: list[str] | None) -> list[Path]:
    """Store folders to read: ``stores`` if given, else every ``parquet`` sink's path.

    Raises
    ------
    PueflowError
        If no folder is given and the config has no ``parquet`` sink.
    """
    if stores:
        return [Path(s) for s in stores]
    paths = [Path(s.path) for s in cfg.sinks if s.type == "parquet"]
    if not paths:
        msg = (f"{cfg.source or 'config'} has no [[sinks]] of type 'parquet'; "
               f"pass the store folder with --store DIR")
        raise PueflowError(msg)
    return paths


def scan(stores: list[Path], measurement: str) -> pl.LazyFrame | None:
    """Lazy rows of ``measurement`` over ``stores`` (None if no store has any).

    The newest partition file's columns are the schema: older files lacking a newer field
    (e.g. ``ppa_kwh``) read it as null.
    """
    frames = []
    for root in stores:
        base = root / f"measurement={measurement}"
        files = sorted(base.rglob("*.parquet"), key=lambda f: f.parent.name) if base.is_dir() else []
        files = [f for f in files if not f.name.startswith(".")]
        if not files:
            continue
        schema = pl.read_parquet_schema(files[-1])
        frames.append(pl.scan_parquet(
            f"{base}/**/*.parquet", hive_partitioning=True, schema=schema,
            hive_schema={"measurement": pl.String, "site": pl.String, "date": pl.Date}, missing_columns="insert", extra_columns="ignore"))
    if not frames:
        return None
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def latest_date(stores: list[Path], measurement: str = "kpi") -> date | None:
    """Newest ``date=`` partition (UTC date) of ``measurement`` in ``stores``, from folder names."""
    newest = None
    for root in stores:
        base = root / f"measurement={measurement}"
        if not base.is_dir():
            continue
        for part in base.iterdir():
            if not part.is_dir():
                continue
            for d in part.iterdir():
                if d.name.startswith("date="):
                    try:
                        v = date.fromisoformat(d.name[5:])
                    except ValueError:
                        continue
                    newest = v if newest is None or v > newest else newest
    return newest


def pick_run(stores: list[Path], run: str | None, measurement: str = "kpi") -> str:
    """Return the ``run`` tag to show.

    ``run`` if given, else ``""`` (production) when the newest day's files hold it, else
    the only run in them (reading only those files' ``run`` column).

    Raises
    ------
    PueflowError
        If the newest day holds several runs and none was chosen.
    """
    if run is not None:
        return run
    newest = latest_date(stores, measurement)
    if newest is None:
        return ""
    files = [f for root in stores for f in (root / f"measurement={measurement}").glob(
        f"*/date={newest.isoformat()}/*.parquet") if not f.name.startswith(".")]
    runs = sorted(set(pl.concat([pl.read_parquet(f, columns=["run"]) for f in files])["run"].to_list()))
    if "" in runs or not runs:
        return ""
    if len(runs) == 1:
        return runs[0]
    msg = f"the store holds rows of several runs {runs}; choose one with --run"
    raise PueflowError(msg)


def local_bounds(tz: str, first: date, end: date) -> tuple[datetime, datetime]:
    """UTC instants of local midnight of ``first`` and of ``end`` (exclusive) in ``tz``."""
    z = ZoneInfo(tz)
    lo = datetime(first.year, first.month, first.day, tzinfo=z)
    hi = datetime(end.year, end.month, end.day, tzinfo=z)
    return lo.astimezone(UTC), hi.astimezone(UTC)


def at(t: datetime) -> pl.Expr:
    """``t`` as a literal of the rows' time type (``Datetime("ns", "UTC")``)."""
    return pl.lit(t.astimezone(UTC)).cast(pl.Datetime("ns", "UTC"))


def rows_between(lf: pl.LazyFrame, site: str, run: str, lo: datetime, hi: datetime,
                 windows: list[str] | None = None) -> pl.LazyFrame:
    """Rows of ``site`` and ``run`` with ``lo <= time < hi``, optionally of some windows only.

    ``date`` partitions (UTC dates) outside the range are pruned before any file is read.
    """
    d0 = (lo - timedelta(days=1)).date()
    d1 = (hi + timedelta(days=1)).date()
    out = lf.filter((pl.col("site") == site) & (pl.col("date") >= d0) & (pl.col("date") <= d1)
                    & (pl.col("run") == run)
                    & (pl.col("time") >= at(lo)) & (pl.col("time") < at(hi)))
    if windows is not None:
        out = out.filter(pl.col("window").is_in(windows))
    names = lf.collect_schema().names()
    return (out.drop(HIVE_COLUMNS, strict=False)
            .unique(subset=[c for c in IDENTITY if c in names], keep="first", maintain_order=True))
