"""Shared pieces of the two wire encoders (Telegraf JSON and line protocol).

The canonical long form (time, site, device, point, value) is grouped into snapshots, one
metric per run of (time, site, device) in arrival order, so the simulator can feed Kafka and
files.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

CANONICAL = ("time", "site", "device", "point", "value")
_GROUP = ["t", "site", "device"]


def canonical(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` as t [ns], site, device, point, value; ValueError naming missing columns."""
    missing = [c for c in CANONICAL if c not in df.columns]
    if missing:
        msg = f"encode needs the canonical columns {CANONICAL}; missing {missing}"
        raise ValueError(msg)
    return df.select(pl.col("time").cast(pl.Datetime("ns", "UTC")).dt.epoch("ns").alias("t"),
                     *(pl.col(c).cast(pl.String) for c in CANONICAL[1:4]),
                     pl.col("value").cast(pl.Float64))


def escaped(col: str, escape: Callable[[str], str]) -> pl.Expr:
    """``col`` mapped through ``escape``, which runs once per distinct value."""
    return pl.col(col).map_batches(
        lambda s: s.replace_strict(u := s.unique(), [escape(x) for x in u.to_list()],
                                   return_dtype=pl.String), return_dtype=pl.String)


def _runs(df: pl.DataFrame) -> pl.Expr:
    """Return the run number of consecutive rows sharing (time, site, device).

    A snapshot is a run, so encoding never reorders readings (a late reading stays late on
    the wire).
    """
    changed = pl.lit(False)
    for c in _GROUP:
        changed = changed | (pl.col(c) != pl.col(c).shift()).fill_null(True)
    return changed.cum_sum()


def snapshots(df: pl.DataFrame, field: pl.Expr) -> pl.DataFrame | None:
    """Return one row per run of (time, site, device) in arrival order, fields joined by commas.

    None when a snapshot repeats a point (then the Python path keeps it).
    """
    g = (df.with_columns(field.alias("f"), _runs(df).alias("_run"))
         .group_by("_run", maintain_order=True)
         .agg(*[pl.col(c).first() for c in _GROUP], pl.col("f").str.join(","),
              pl.len().alias("n"), pl.col("point").n_unique().alias("u")))
    return None if (g["n"] != g["u"]).any() else g


def metric_groups(df: pl.DataFrame):  # noqa: ANN201 - a generator of tuples
    """Yield (time_ns, site, device, fields) per snapshot in arrival order.

    A repeated point or a change of (time, site, device) starts a new metric.
    """
    t, sites, devs = df["t"].to_list(), df["site"].to_list(), df["device"].to_list()
    points, values = df["point"].to_list(), df["value"].to_list()
    key = None
    fields: dict[str, float] = {}
    for k in range(len(t)):
        nk = (t[k], sites[k], devs[k])
        if nk != key or points[k] in fields:
            if key is not None:
                yield (*key, fields)
            key, fields = nk, {}
        fields[points[k]] = values[k]
    if key is not None:
        yield (*key, fields)


def timestamp_text(mult: int) -> pl.Expr:
    """Integer ns -> exact decimal text in units of ``mult`` ns ("1714564800001.5")."""
    t = pl.col("t")
    if mult == 1:
        return t.cast(pl.String)
    a = t.abs()
    whole = pl.concat_str(pl.when(t < 0).then(pl.lit("-")).otherwise(pl.lit("")),
                          (a // mult).cast(pl.String))
    frac = (a % mult).cast(pl.String).str.zfill(len(str(mult)) - 1).str.strip_chars_end("0")
    return pl.when(a % mult == 0).then(whole).otherwise(pl.concat_str(whole, pl.lit("."), frac))


def pack(lines: list[str], per_message: int, head: str, sep: str, tail: str) -> list[bytes]:
    """``lines`` encoded, one a message or ``per_message`` joined by ``sep`` in head/tail."""
    if per_message <= 1:
        return [ln.encode() for ln in lines]
    return [(head + sep.join(lines[i:i + per_message]) + tail).encode()
            for i in range(0, len(lines), per_message)]
