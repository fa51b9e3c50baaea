"""A PNG of a run: PUE, cooling overhead, renewable share and ambient temperature.

Drawn from hourly KPI rows (the pipeline's ``kpi`` measurement or the simulator's truth);
with the truth given too, it is drawn dashed under the measured line so a reader sees how
close the pipeline got. Uses matplotlib's Agg canvas directly (no global backend change).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

#: Hours at or above this ambient are shaded (hot desert-wind spells) [degC].
HOT_C = 35.0
_COLORS = ("#1f5fa8", "#c0392b", "#2e8b57", "#8e44ad", "#d35400", "#16a085")


def _hourly(df: pl.DataFrame, window: str) -> pl.DataFrame:
    if "window" in df.columns:
        df = df.filter(pl.col("window") == window)
    if "ppue_cooling" not in df.columns and {"cooling_kwh", "it_kwh"} <= set(df.columns):
        df = df.with_columns((1 + pl.col("cooling_kwh") / pl.col("it_kwh")).alias("ppue_cooling"))
    if "site" not in df.columns:
        df = df.with_columns(pl.lit("site").alias("site"))
    return df.sort("site", "time")


def _col(df: pl.DataFrame, name: str, scale: float = 1.0, offset: float = 0.0):
    if name not in df.columns:
        return None
    return (df[name].cast(pl.Float64) * scale + offset).to_numpy()


def _weekly_pue(df: pl.DataFrame) -> str:
    if not {"facility_kwh", "it_kwh"} <= set(df.columns):
        return ""
    parts = []
    for site, g in df.group_by("site", maintain_order=True):
        it = float(g["it_kwh"].sum())
        if it and it > 0:
            parts.append(f"{site[0]}: PUE {float(g['facility_kwh'].sum()) / it:.3f}")
    return "  |  ".join(parts)


def _shade_heat(axes, kpi: pl.DataFrame, hot_c: float = HOT_C) -> None:
    """Shade hours at or above ``hot_c`` in every panel (desert-wind spells)."""
    if "ambient_temp_c" not in kpi.columns or kpi.height == 0:
        return
    amb = kpi.group_by("time").agg(pl.col("ambient_temp_c").max()).sort("time")
    if not (amb["ambient_temp_c"].fill_null(-99) >= hot_c).any():
        return
    axes[-1].axhline(40, color="#c0392b", lw=0.8, ls=":")
    axes[-1].text(amb["time"][0], 40.3, "40 °C", color="#c0392b", fontsize=8, va="bottom")
    t = amb["time"].to_list()
    step = (t[1] - t[0]) if len(t) > 1 else None
    hot = (amb["ambient_temp_c"].fill_null(-99) >= hot_c).to_list()
    handle = None
    i = 0
    while i < len(t):
        if not hot[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(t) and hot[j + 1]:
            j += 1
        end = t[j] + step if step is not None else t[j]
        for ax in axes:
            span = ax.axvspan(t[i], end, color="#f5b7b1", alpha=0.35, lw=0, zorder=0)
        handle = handle or span
        i = j + 1
    if handle is None:  # cannot happen: at least one hour is hot (checked above)
        return
    handle.set_label(f"ambient ≥ {hot_c:.0f} °C (desert-wind spell)")
    axes[-1].legend(handles=[handle], loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8,
                    frameon=False, borderaxespad=0.2)


def write_chart(kpi_df: pl.DataFrame, truth_or_none: pl.DataFrame | None, path: str | Path, *,
                window: str = "1h", title: str | None = None) -> Path:
    """Write a four-panel PNG over the period of ``kpi_df`` and return its path.

    Parameters
    ----------
    kpi_df : DataFrame
        KPI rows with ``time``, ``site``, ``window`` and any of ``pue``, ``ppue_cooling``
        (or ``cooling_kwh`` and ``it_kwh``), ``ref``, ``ambient_temp_c``; rows of
        ``window`` are drawn.
    truth_or_none : DataFrame or None
        Simulator truth with the same columns, drawn dashed for comparison.
    path : str or Path
        Output ``.png``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    kpi = _hourly(kpi_df, window)
    truth = _hourly(truth_or_none, window) if truth_or_none is not None else None
    fig = Figure(figsize=(13, 9.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 1, sharex=True, height_ratios=[1.2, 1, 1, 1])
    panels = [("pue", 1.0, 0.0, "PUE", "PUE (facility / IT energy)"),
              ("ppue_cooling", 100.0, -100.0, "cooling overhead [% of IT]", "Cooling overhead (pPUE$_{cooling}$ − 1)"),
              ("ref", 100.0, 0.0, "renewable share [%]", "Renewable energy factor (on-site PV + wind / facility)"),
              ("ambient_temp_c", 1.0, 0.0, "ambient [°C]", "Ambient dry-bulb temperature")]
    sites = kpi["site"].unique(maintain_order=True).to_list()
    for ax, (col, scale, offset, ylabel, heading) in zip(axes, panels, strict=True):
        for i, site in enumerate(sites):
            color = _COLORS[i % len(_COLORS)]
            k = kpi.filter(pl.col("site") == site)
            y = _col(k, col, scale, offset)
            label = f"{site} (pipeline)" if truth is not None else site
            if truth is not None:
                t = truth.filter(pl.col("site") == site)
                yt = _col(t, col, scale, offset)
                if yt is not None:
                    ax.plot(t["time"].to_numpy(), yt, color="0.55", lw=2.6, ls=(0, (3, 2)),
                            label=f"{site} (truth)", zorder=1)
            if y is not None:
                if col == "ref":
                    ax.fill_between(k["time"].to_numpy(), 0, y, color=color, alpha=0.15, lw=0)
                ax.plot(k["time"].to_numpy(), y, color=color, lw=1.4, label=label, zorder=2)
        ax.set_ylabel(ylabel)
        ax.set_title(heading, loc="left", fontsize=10, fontweight="bold")
        ax.grid(True, color="0.9", lw=0.8)
        ax.spines[["top", "right"]].set_visible(False)
    axes[2].set_ylim(0, 105)
    _shade_heat(axes, kpi)
    if truth is not None or len(sites) > 1:
        axes[0].legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, ncols=4,
                       frameon=False, borderaxespad=0.2)
    loc = AutoDateLocator()
    axes[-1].xaxis.set_major_locator(loc)
    axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(loc))
    axes[-1].set_xlabel("time (UTC)")
    if len(kpi):
        t0, t1 = kpi["time"].min(), kpi["time"].max()
        if not isinstance(t0, date) or not isinstance(t1, date):
            msg = (f"chart: column 'time' has dtype {kpi['time'].dtype}; "
                   "expected a polars Datetime (UTC) column")
            raise TypeError(msg)
        period = f"{t0:%Y-%m-%d} to {t1:%Y-%m-%d}"
    else:
        period = "no data"
    weekly = _weekly_pue(kpi)
    fig.suptitle(title or f"pueflow — {', '.join(sites)} — {period} ({window} windows)"
                 + (f"\n{weekly}" if weekly else ""), fontsize=12)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
