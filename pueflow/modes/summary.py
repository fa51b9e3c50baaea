"""End-of-run summary: per site (or per site-day) energy, PUE, pPUE, REF, coverage, quality."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import polars as pl

from pueflow.pipeline.kpi import ratios_of_sums
from pueflow.units import parse_duration_ns


def summarise(kpi: pl.DataFrame, quality: pl.DataFrame, *, by_day: bool = False,
              timezones: dict[str, str] | None = None) -> pl.DataFrame:
    """Ratio-of-sums KPIs over the whole run (or per local day) from the finest windows.

    Uses the ``1d`` rows when ``by_day`` (they are aligned to each site's local midnight and
    labelled with the local ``date`` when ``timezones`` maps site -> zone), else the smallest
    window present so every reading counts exactly once. Windows holding no energy at all
    (only a sensor reading at the period's end instant) are left out.
    """
    if kpi.height == 0:
        return pl.DataFrame()
    windows = kpi["window"].unique().to_list()
    if by_day and "1d" in windows:
        rows = kpi.filter(pl.col("window") == "1d")
        keys = ["site", "time"]
    else:
        finest = min(windows, key=parse_duration_ns)
        rows = kpi.filter(pl.col("window") == finest)
        keys = ["site"]
    rows = rows.filter((pl.col("coverage") > 0) | (pl.col("it_kwh").fill_null(0) != 0))
    # on-site + contracted (ppa) generation, as REF counts it; stores from before ``ppa``
    # have no such column
    ren = pl.sum_horizontal(pl.col(c).fill_null(0) for c in ("pv_kwh", "wind_kwh", "ppa_kwh")
                            if c in rows.columns)
    out = (rows.group_by(keys, maintain_order=True).agg(
        pl.col("facility_kwh").sum().alias("facility_mwh") / 1000,
        pl.col("it_kwh").sum().alias("it_mwh") / 1000,
        pl.col("cooling_kwh").sum().alias("cooling_mwh") / 1000,
        ren.sum().alias("renewable_mwh") / 1000,
        pl.col("coverage").mean().alias("coverage"),
        (pl.col("resets").sum() + pl.col("rollovers").sum()).alias("register_events"),
        pl.col("gaps").sum().alias("gaps"),
        pl.col("ambient_temp_c").mean().alias("ambient_c"),
    ))
    # the kernel's rules on the sums: a period with no IT energy gives null, never inf/nan
    r = ratios_of_sums(out["facility_mwh"].to_numpy(), out["it_mwh"].to_numpy(),
                       out["renewable_mwh"].to_numpy(),
                       cooling_kwh=out["cooling_mwh"].to_numpy())
    out = out.with_columns(pl.Series(k, r[k], nan_to_null=True)
                           for k in ("pue", "ppue_cooling", "ref"))
    if quality is not None and quality.height:
        q = quality.select("site", "time", "count")
        if "time" in keys:
            # each event belongs to the (local) day row whose start is the latest before it
            starts = out.select("site", pl.col("time").alias("day")).sort("day")
            q = q.sort("time").join_asof(starts, left_on="time", right_on="day", by="site",
                                         check_sortedness=False)
            q = q.drop("time").rename({"day": "time"})
        q = q.group_by(keys).agg(pl.col("count").sum().alias("quality_events"))
        out = out.join(q, on=keys, how="left").with_columns(pl.col("quality_events").fill_null(0))
    else:
        out = out.with_columns(pl.lit(0).alias("quality_events"))
    if "time" in keys and timezones:
        out = out.with_columns(pl.struct("site", "time").map_elements(
            lambda r: r["time"].astimezone(ZoneInfo(timezones[r["site"]])).date().isoformat()
            if r["site"] in timezones else r["time"].date().isoformat(),
            return_dtype=pl.Utf8).alias("date"))
    return out.sort(keys)


def quality_counts(quality: pl.DataFrame) -> pl.DataFrame:
    """Count quality events per site and kind over the whole table.

    Parameters
    ----------
    quality : polars.DataFrame or None
        Quality rows with columns site, kind, count.

    Returns
    -------
    polars.DataFrame
        Columns site, kind, count (summed), sorted by site and kind; empty (no rows) when
        ``quality`` is ``None`` or empty.
    """
    if quality is None or quality.height == 0:
        return pl.DataFrame({"site": [], "kind": [], "count": []})
    return quality.group_by(["site", "kind"]).agg(pl.col("count").sum()).sort(["site", "kind"])


def render(summary: pl.DataFrame, title: str = "pueflow summary") -> None:
    """Print the summary with rich."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    cols = [c for c in ("site", "date" if "date" in summary.columns else "time", "facility_mwh", "it_mwh", "pue", "ppue_cooling", "ref",
                        "coverage", "ambient_c", "register_events", "gaps", "quality_events")
            if c in summary.columns]
    for c in cols:
        table.add_column(c, justify="left" if c in ("site", "time", "date") else "right")
    for row in summary.iter_rows(named=True):
        cells = []
        for c in cols:
            v = row[c]
            if c == "time" and v is not None:
                cells.append(v.strftime("%Y-%m-%d"))
            elif isinstance(v, float):
                cells.append(f"{v:,.3f}" if c in ("pue", "ppue_cooling", "ref", "coverage")
                             else f"{v:,.1f}")
            else:
                cells.append("" if v is None else str(v))
        table.add_row(*cells)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # piped or logged: keep every column readable
    console.print(table)
