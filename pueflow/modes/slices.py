"""One site's time slice of a replay, exactly as a single process would replay it.

:func:`plan_slices` cuts each site's period at its local midnights (every window of the
config is then cut at a boundary); :func:`run_slice` replays one slice on its own:

- it reads a warm-up span before the slice (twice the longest ``max_gap`` of the site's
  meters, at least an hour) so every open interval at the slice start is integrated as a
  single process integrates it, and a tail of the longest ``max_gap`` after the slice
  (the reading after the slice end can still add energy to its last buckets);
- each meter's reading before the warm-up (looked up backwards, doubling the span, up to
  :data:`LOOKBACK_MAX_NS`) seeds its state: whether it had reported (coverage counts it) and,
  for a meter silent across the warm-up start, its last reading (the gap and its energy);
- it keeps only what belongs to the slice: windows that start inside it, quality rows of
  readings inside it, and the site windows the fleet aggregates are built from.

The replay itself is the shared core (:class:`~pueflow.pipeline.core.Pipeline`) fed in
event-time order (:mod:`pueflow.modes.spill`), so the rows are those of ``replay()``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from pueflow.config.models import Config
from pueflow.connectors.files import iter_file
from pueflow.connectors.sink import build_sinkset
from pueflow.exceptions import PueflowError
from pueflow.modes.replay import count_rows
from pueflow.modes.spill import EventOrder, OrderedChunk
from pueflow.pipeline.core import Pipeline
from pueflow.pipeline.fleet import FleetAggregator
from pueflow.pipeline.windows import DAY, window_end, window_start
from pueflow.schema.batch import Batch
from pueflow.schema.registry import Registry
from pueflow.schema.rows import Output
from pueflow.units import parse_duration_ns

HOUR_NS = 3_600 * 10**9
#: A meter silent longer than this before a slice is treated as never having reported [ns].
LOOKBACK_MAX_NS = 64 * 86_400 * 10**9


class SliceDataError(PueflowError):
    """A slice failed for a reason in the data or config: not worth retrying."""


@dataclass(frozen=True)
class Slice:
    """Site ``site`` (index in the config) from ``start`` to ``end`` [ns, UTC, end exclusive].

    ``last`` marks the site's final slice (its end is the end of the data).
    """

    site: int
    start: int
    end: int
    last: bool = False


@dataclass
class SliceResult:
    """Rows of one slice, what the fleet needs from it, and what it cost."""

    kpi: pl.DataFrame
    quality: pl.DataFrame
    fleet_parts: pl.DataFrame
    readings: int = 0
    rejected: int = 0
    read: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, int, str, str | None]] = field(default_factory=list)
    sink_rows: dict[str, dict[str, int]] = field(default_factory=dict)


def plan_slices(cfg: Config, spans: dict[int, tuple[int, int]], days: int = 1,
                own_last: dict[int, int] | None = None) -> list[Slice]:
    """Cut each site's ``spans[site]`` = (first, last) reading [ns] into slices of local days.

    Slices start at the site's local midnight, so no window (sub-day windows align to UTC,
    ``1d`` to local midnight) crosses a slice boundary. A slice is its site's ``last`` once
    it ends after ``own_last[site]`` (default: the span's end), the site's own last reading.

    Raises
    ------
    PueflowError
        A site's local midnight is not aligned to a sub-day window (e.g. a zone at UTC+5:45
        with 1h windows).
    """
    if days < 1:
        msg = f"slice length {days} day(s): use 1 or more"
        raise PueflowError(msg)
    sub_day = [parse_duration_ns(w) for w in cfg.pipeline.windows if w != DAY]
    out: list[Slice] = []
    for i, (t_lo, t_hi) in sorted(spans.items()):
        s = cfg.sites[i]
        tz = ZoneInfo(s.timezone)
        starts = [window_start(DAY, t_lo, tz)]
        while starts[-1] <= t_hi:
            starts.append(window_end(DAY, starts[-1], tz))
        cuts = starts[::days] if (len(starts) - 1) % days == 0 else [*starts[::days], starts[-1]]
        for c in cuts:
            bad = [n for n in sub_day if c % n]
            if bad:
                msg = (f"site {s.id!r}: local midnight {c} ns is not a multiple of window "
                       f"{bad[0]} ns in zone {s.timezone}; replay this site in one process")
                raise PueflowError(msg)
        last = t_hi if own_last is None or i not in own_last else own_last[i]
        out.extend(Slice(i, a, z, z > last) for a, z in zip(cuts[:-1], cuts[1:], strict=True))
    return out


def site_gap_ns(cfg: Config, site: int) -> int:
    """Longest ``max_gap`` [ns] of a site's meter rules (0 if it has none)."""
    return max((m.max_gap_ns() for m in cfg.sites[site].meters), default=0)


def warm_up_ns(gap_ns: int) -> int:
    """Span read before a slice [ns]: twice the longest ``max_gap``, at least an hour."""
    return max(2 * gap_ns, HOUR_NS)


class _SliceFleet(FleetAggregator):
    """Keeps the site windows that start inside the slice; emits nothing itself."""

    def __init__(self, cfg: Config, run: str, start: int, end: int):
        super().__init__(cfg, run)
        self.start, self.end = start, end

    def add_many(self, site, window, starts, energy, metered, tz) -> None:
        """Record the windows of ``starts`` [ns] inside the slice; see the base class."""
        sel = (starts >= self.start) & (starts < self.end)
        if sel.any():
            super().add_many(site, window, starts[sel], energy[sel], metered, tz)

    def flush(self, final, passed=None):
        """Emit nothing: fleet rows are computed after every slice is done."""
        return None


def _decoded(cfg: Config, reg: Registry, inputs: list[str | Path], lo: int | None,
             hi: int | None, chunk_rows: int, unit: str | None):
    for path in inputs:
        yield from iter_file(path, reg, chunk_rows=chunk_rows, time_from_ns=lo, time_to_ns=hi,
                             json_timestamp_unit=unit or cfg.kafka.timestamp_unit)


def site_inputs(inputs: list[str | Path], site_ids: list[str], site: int) -> list[str | Path]:
    """Narrow ``inputs`` to what a slice of ``site`` must read.

    Of a folder with ``site=<id>`` sub-folders (Hive layout, the files keeping their
    ``site`` column) only that site's (site 0 also reads the folders of sites not in the
    config); other inputs whole.
    """
    out: list[str | Path] = []
    for p in inputs:
        root = Path(p)
        parts = sorted(root.glob("site=*")) if root.is_dir() else []
        if not parts:
            out.append(p)
            continue
        known = {f"site={s}" for s in site_ids}
        out.extend(d for d in parts if d.name == f"site={site_ids[site]}"
                   or (site == 0 and d.name not in known))
    return out


def _mine(reg: Registry, site: int, b: Batch) -> Batch:
    """Keep the readings of ``site``; site 0's slices also keep unknown sites' readings."""
    s = reg.site[b.series]
    keep = (s == site) | (s < 0) if site == 0 else s == site
    return b if keep.all() else b.take(np.flatnonzero(keep))


def _seed(pipe: Pipeline, cfg: Config, inputs, sl: Slice, w0: int, t_lo: int,
          chunk_rows: int, unit: str | None) -> None:
    """Give the site's meters their state at ``w0`` from their last reading before it.

    Looks back in spans doubling from the warm-up length until every meter seen so far
    has been found, the data starts, or :data:`LOOKBACK_MAX_NS` is reached.
    """
    reg = pipe.registry
    n = len(reg)
    want = set(np.flatnonzero((reg.site[:n] == sl.site) & (reg.role[:n] >= 0)).tolist())
    found: set[int] = set()
    span = warm_up_ns(site_gap_ns(cfg, sl.site))
    hi = w0
    while want - found and hi > t_lo and w0 - hi < LOOKBACK_MAX_NS:
        lo = hi - span
        last: dict[int, tuple[int, float]] = {}
        for ch in _decoded(cfg, reg, inputs, lo, hi, chunk_rows, unit):
            b = ch.batch
            sel = reg.site[b.series] == sl.site
            if not sel.any():
                continue
            t, s, v = b.time_ns[sel], b.series[sel], b.value[sel]
            order = np.lexsort((v, t, s))  # the core's (time, series, value) order per series
            t, s, v = t[order], s[order], v[order]
            for j in np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]:
                k = int(s[j])
                if k not in found and (k not in last or t[j] >= last[k][0]):
                    last[k] = (int(t[j]), float(v[j]))
        pipe._alloc_series(len(reg))
        for k, (t, v) in last.items():
            pipe.first_t[k] = t  # any time before w0 counts the same: it had reported
            if w0 - t > reg.max_gap_ns[k]:  # silent across w0: the next reading is a gap
                pipe.last_t[k], pipe.last_v[k] = t, v
        found.update(last)
        hi, span = lo, 2 * span
    i = sl.site
    if found and not sl.last:  # the site reported before: it runs from w0 even if silent now
        b = w0 // pipe.base_ns
        pipe.started[i] = True
        pipe.site_b0[i] = b
        pipe.hist[i].b0 = b
        pipe.next_start[i] = {w: window_start(w, b * pipe.base_ns, pipe.tz[i])
                              for w in pipe.windows}


def run_slice(cfg: Config, inputs: list[str | Path], sl: Slice, *, t_lo: int,
              out_dir: str | Path | None = None, run: str = "", write: bool = True,
              chunk_rows: int = 1_000_000, memory_mb: float = 512.0,
              spill_dir: str | Path | None = None,
              timestamp_unit: str | None = None) -> SliceResult:
    """Replay slice ``sl`` of ``inputs`` and write its rows to the configured sinks.

    Parameters
    ----------
    t_lo : int
        Earliest reading time of the input [ns]; the state lookup stops there.
    memory_mb : float
        Budget [MiB] for the slice's readings while putting them in time order.

    Raises
    ------
    SliceDataError
        The data or config is wrong (names the file and the reason); a retry cannot help.
    """
    try:
        return _run_slice(cfg, inputs, sl, t_lo, out_dir, run, write, chunk_rows, memory_mb,
                          spill_dir, timestamp_unit)
    except PueflowError as exc:  # plain message: the worker sends it back pickled
        site = cfg.sites[sl.site].id
        msg = f"site {site!r} slice starting {sl.start} ns: {exc}"
        raise SliceDataError(msg) from None


def _run_slice(cfg, inputs, sl, t_lo, out_dir, run, write, chunk_rows, memory_mb, spill_dir,
               unit) -> SliceResult:
    t0 = time.perf_counter()
    inputs = site_inputs(inputs, [s.id for s in cfg.sites], sl.site)
    reg = Registry(cfg)
    pipe = Pipeline(cfg, reg, run=run)
    pipe.fleet = _SliceFleet(cfg, run, sl.start, sl.end)
    gap = site_gap_ns(cfg, sl.site)
    w0 = sl.start - warm_up_ns(gap)
    hi = None if sl.last else sl.end + gap + 1
    order = EventOrder(memory_mb, spill_dir, chunk_rows)
    res = SliceResult(pl.DataFrame(), pl.DataFrame(), pl.DataFrame())
    kpi: list[pl.DataFrame] = []
    quality: list[pl.DataFrame] = []
    try:
        for ch in _decoded(cfg, reg, inputs, w0, hi, chunk_rows, unit):
            if ch.errors:  # the driver keeps each (file, row) once
                sites = getattr(ch, "error_sites", None) or {}
                res.errors.extend((ch.path, r, why, sites.get(r)) for r, why in ch.errors)
            b = _mine(reg, sl.site, ch.batch)
            res.read += len(b)
            if len(b):
                order.add(OrderedChunk(b))
        # the meters seen now are those whose state at w0 matters
        _seed(pipe, cfg, inputs, sl, w0, t_lo, chunk_rows, unit)
        for ch in order.chunks():
            out = pipe.process(ch.batch)
            t = ch.batch.time_ns
            inside = (t >= sl.start) & (t < sl.end)
            res.readings += int(inside.sum())
            res.rejected += int(inside[out.rejected_index].sum())
            _keep(out, kpi, quality)
        i = sl.site
        if not sl.last and pipe.started[i]:  # the data goes on: close every window of the slice
            pipe.last_data_b[i] = max(int(pipe.last_data_b[i]), (sl.end - 1) // pipe.base_ns)
            pipe.site_max_t[i] = max(int(pipe.site_max_t[i]), sl.end)
        _keep(pipe.finalize(), kpi, quality)
    finally:
        order.close()
    res.kpi = _inside(kpi, sl)
    res.quality = _inside(quality, sl)
    parts = pipe.fleet.pending
    res.fleet_parts = pl.concat(parts) if parts else pl.DataFrame()
    if write:
        sinks = count_rows(build_sinkset(cfg, run, out_dir))
        try:
            sinks.write(Output(kpi=res.kpi, quality=res.quality))
            sinks.flush()
        finally:
            sinks.close()
        res.sink_rows = {s.name: dict(s.rows) for _, s in sinks.pairs}
    res.seconds = time.perf_counter() - t0
    return res


def _keep(out: Output, kpi: list[pl.DataFrame], quality: list[pl.DataFrame]) -> None:
    if out.kpi is not None and out.kpi.height:
        kpi.append(out.kpi)
    if out.quality is not None and out.quality.height:
        quality.append(out.quality)


def _inside(frames: list[pl.DataFrame], sl: Slice) -> pl.DataFrame:
    """Rows whose time lies in the slice (epoch-time decode rows are the driver's)."""
    if not frames:
        return pl.DataFrame()
    df = pl.concat(frames, how="diagonal_relaxed")
    t = df["time"].dt.epoch("ns")
    return df.filter((t >= sl.start) & (t < sl.end))


__all__ = ["Slice", "SliceDataError", "SliceResult", "plan_slices", "run_slice"]
