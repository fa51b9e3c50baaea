"""Replay: telemetry files -> the shared core -> sinks, with progress and a summary.

A file is complete history, so by default replay feeds the core in event-time order
(:mod:`pueflow.modes.spill`), whatever the file's row order: time-major, series-major,
shuffled, or several files overlapping in time give the same rows. ``as_streamed``
instead feeds rows in file order with the config's grace, as a live service saw them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pueflow.config.models import Config
from pueflow.connectors.files import GraceBound, grace_bound, iter_file, time_lateness
from pueflow.connectors.sink import SinkSet, build_sinkset
from pueflow.modes.spill import EventOrder, event_ordered
from pueflow.optimizers.dispatcher import Dispatcher
from pueflow.pipeline.core import Pipeline
from pueflow.schema.registry import Registry
from pueflow.schema.rows import Output


@dataclass
class ReplayResult:
    """Rows produced by a replay (all measurements) and what it cost."""

    kpi: pl.DataFrame
    quality: pl.DataFrame
    setpoint: pl.DataFrame
    fleet: pl.DataFrame
    readings: int = 0
    rejected: int = 0
    seconds: float = 0.0
    sinks: list[str] = field(default_factory=list)
    sink_rows: dict[str, dict[str, int]] = field(default_factory=dict)
    spilled: bool = False

    @property
    def samples_per_s(self) -> float:
        """Readings replayed per second of wall time [1/s]."""
        return self.readings / self.seconds if self.seconds else 0.0


#: Site of a ``decode_error`` row whose file row names no configured site. Such rows reach
#: only the local Parquet store (``site=_unknown`` partition), never a remote sink.
UNKNOWN_SITE = "_unknown"


def decode_error_rows(path: str, errors: list[tuple[int, str]], run: str = "",
                      sites: dict[int, str] | None = None,
                      known: set[str] | frozenset[str] = frozenset()) -> pl.DataFrame:
    """Rows of a file that gave no reading, as ``quality`` rows of kind ``decode_error``.

    Parameters
    ----------
    path : str
        The file; ``device`` is the path as read (two files of one name stay apart).
    errors : list of (int, str)
        1-based row number and reason; ``point`` is ``row N``, ``detail`` ``path:N: reason``.
    run : str
        The run tag.
    sites : dict of int to str, optional
        The site each row names, where it names one.
    known : set of str
        Configured site ids; a row naming none of them goes under :data:`UNKNOWN_SITE`.

    Returns
    -------
    polars.DataFrame
        Quality rows; their event time is unknown, so they carry the epoch.
    """
    n = len(errors)
    sites = sites or {}
    site = [sites.get(r, UNKNOWN_SITE) for r, _ in errors]
    site = [s if s in known else UNKNOWN_SITE for s in site]
    return pl.DataFrame({
        "time": [0] * n, "site": site, "kind": ["decode_error"] * n,
        "device": [str(path) or "?"] * n, "point": [f"row {r}" for r, _ in errors],
        "run": [run] * n, "count": [1] * n, "value": [float("nan")] * n,
        "detail": [f"{path}:{r}: {why}" for r, why in errors],
    }).with_columns(pl.col("time").cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"))


def local_store(sinks: SinkSet | None) -> Any:
    """Return the sink that keeps rows of no configured site: the first Parquet sink."""
    if sinks is None:
        return None
    return next((s for spec, s in sinks.pairs if spec.type == "parquet"), None)


class CountingSink:
    """Wraps a sink and counts, per measurement, the rows it was actually handed."""

    def __init__(self, sink: Any):
        self.inner = sink
        self.name = sink.name
        self.rows: dict[str, int] = {}

    def write(self, measurement: str, rows: pl.DataFrame) -> None:
        """Count ``rows`` [rows] under ``measurement`` and pass them on."""
        self.rows[measurement] = self.rows.get(measurement, 0) + rows.height
        self.inner.write(measurement, rows)

    def flush(self) -> None:
        """Flush the wrapped sink."""
        self.inner.flush()

    def close(self) -> None:
        """Close the wrapped sink."""
        self.inner.close()


def count_rows(sinks: SinkSet) -> SinkSet:
    """Wrap every sink of ``sinks`` in a :class:`CountingSink` (in place); return it."""
    sinks.pairs = [(spec, s if isinstance(s, CountingSink) else CountingSink(s))
                   for spec, s in sinks.pairs]
    return sinks


def _collect(parts: dict[str, list[pl.DataFrame]], out: Output) -> None:
    for m, df in out.frames().items():
        parts[m].append(df)


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def replay_batches(cfg: Config, chunks: Iterable[Any], *, registry: Registry | None = None,
                   sinks: SinkSet | None = None, run: str = "", dispatcher: Any = None,
                   on_chunk: Callable[[Any], None] | None = None,
                   pipeline: Pipeline | None = None) -> ReplayResult:
    """Drive the core over chunks (objects with ``.batch``), write sinks, collect rows."""
    t0 = time.perf_counter()
    pipe = pipeline or Pipeline(cfg, registry, run=run, dispatcher=dispatcher)
    parts: dict[str, list[pl.DataFrame]] = {m: [] for m in ("kpi", "quality", "setpoint", "fleet")}
    known = {s.id for s in cfg.sites}
    local = local_store(sinks)
    # with rows deferred, the chunks' quality rows also go to the sinks in one write
    held: list[Output] | None = [] if pipe.defer_rows else None
    try:
        _drive(pipe, chunks, parts, sinks, known, local, on_chunk, held)
    except BaseException:
        if held is not None:  # what was complete reaches the store before the error surfaces
            out = pipe.flush_deferred()
            _collect(parts, out)
            if sinks is not None:
                sinks.write(_merged([*held, out]))
        raise
    out = pipe.finalize()
    _collect(parts, out)
    if sinks is not None:
        sinks.write(out if held is None else _merged([*held, out]))
        sinks.flush()
    return ReplayResult(
        kpi=_concat(parts["kpi"]), quality=_concat(parts["quality"]),
        setpoint=_concat(parts["setpoint"]), fleet=_concat(parts["fleet"]),
        readings=pipe.stats["readings_in"], rejected=pipe.stats["readings_rejected"],
        seconds=time.perf_counter() - t0,
        sinks=[s.name for s, _ in sinks.pairs] if sinks else [],
        sink_rows={s.name: dict(getattr(s, "rows", {})) for _, s in sinks.pairs} if sinks else {},
    )


def _drive(pipe: Pipeline, chunks: Iterable[Any], parts: dict[str, list[pl.DataFrame]],
           sinks: SinkSet | None, known: set[str], local: Any,
           on_chunk: Callable[[Any], None] | None, held: list[Output] | None) -> None:
    for chunk in chunks:
        out = pipe.process(chunk.batch)
        errors = getattr(chunk, "errors", None)
        if errors:
            bad = decode_error_rows(getattr(chunk, "path", ""), errors, pipe.run,
                                    getattr(chunk, "error_sites", None), known)
            mine = bad.filter(pl.col("site") != UNKNOWN_SITE)
            if mine.height:  # routed like any row of its site
                out.quality = mine if out.quality is None else pl.concat(
                    [out.quality, mine], how="diagonal_relaxed")
            orphans = bad.filter(pl.col("site") == UNKNOWN_SITE)
            if orphans.height:  # no site to route by: the local store keeps them
                parts["quality"].append(orphans)
                if local is not None:
                    local.write("quality", orphans)
        _collect(parts, out)
        if held is not None:
            held.append(out)
        elif sinks is not None:
            sinks.write(out)
        if on_chunk is not None:
            on_chunk(chunk)


def _merged(outs: list[Output]) -> Output:
    """One Output holding every row of ``outs``, measurement by measurement."""
    out = Output()
    for m in ("kpi", "quality", "setpoint", "fleet"):
        frames = [df for o in outs if (df := getattr(o, m)) is not None and df.height]
        setattr(out, m, pl.concat(frames, how="diagonal_relaxed") if frames else None)
    return out


def replay(cfg: Config, inputs: list[str | Path], *, out_dir: str | Path | None = None,
           time_from_ns: int | None = None, time_to_ns: int | None = None,
           progress: bool = True, run: str = "", dispatch: str | None = None,
           chunk_rows: int = 1_000_000, write: bool = True, as_streamed: bool = False,
           memory_mb: float = 1024.0, spill_dir: str | Path | None = None,
           timestamp_unit: str | None = None) -> ReplayResult:
    """Replay telemetry files through the core into the configured sinks.

    Parameters
    ----------
    inputs : paths
        Parquet / CSV / JSON-lines (Telegraf JSON) / line-protocol files or folders.
    out_dir : path, optional
        Where Parquet stores go (overrides the config's paths).
    time_from_ns, time_to_ns : int, optional
        Keep readings with ``from <= time < to`` [ns, UTC].
    dispatch : "mpc" | "rule" | "oracle", optional
        Also compute dispatch setpoints with that policy.
    as_streamed : bool
        Feed rows in file order with the config's grace (what a live service saw from a
        dump of its topic); default: event-time order, the rows do not depend on file order.
    memory_mb : float
        Budget [MiB] for the readings held while putting them in time order; past it they
        are spilled to Parquet under ``spill_dir`` (default: the temp folder), then removed.
    timestamp_unit : str, optional
        Unit of Telegraf JSON timestamps (default: ``cfg.kafka.timestamp_unit``, as in
        consume mode, so a file and a topic of the same Telegraf output agree).
    """
    registry = Registry(cfg)
    dispatcher = None
    if dispatch:
        dispatcher = Dispatcher(cfg, policy=dispatch)
    sinks = count_rows(build_sinkset(cfg, run, out_dir)) if write else None
    pipe = Pipeline(cfg, registry, run=run, dispatcher=dispatcher)
    # the store is written at the end anyway: KPI and fleet frames are built once, then
    # (a dispatcher plans on each call's KPI rows, so with one they come per call)
    pipe.defer_rows = dispatcher is None
    order = None if as_streamed else EventOrder(memory_mb, spill_dir, chunk_rows)
    # decode in pieces the budget holds several times over
    read_rows = chunk_rows if order is None else max(min(chunk_rows, order.budget_rows // 4), 1000)

    def decoded():
        for path in inputs:
            yield from iter_file(path, registry, chunk_rows=read_rows,
                                 time_from_ns=time_from_ns, time_to_ns=time_to_ns,
                                 json_timestamp_unit=timestamp_unit or cfg.kafka.timestamp_unit)

    def start() -> Iterator[Any]:
        nonlocal order, read_rows
        if order is None:
            return decoded()
        # a time-ordered or nearly ordered input streams straight into the core, neither
        # buffered nor spilled: with a grace of its lateness no reading is late, and the
        # core's rows do not depend on order within the grace (the readings held back stay
        # within a quarter of the budget). Where the Parquet row-group statistics bound the
        # lateness within that, each chunk gets its own grace as it comes (nothing read
        # ahead); else the time column is read first
        bound = grace_bound(inputs, order.budget_rows // 4)
        if bound is not None:
            order = None
            read_rows = chunk_rows
            return _graced(decoded(), pipe, bound)
        with ThreadPoolExecutor(1) as pool:
            probe = pool.submit(time_lateness, inputs, chunk_rows, order.budget_rows // 4)
            # pieces are the same either way: the first is decoded while the probe reads
            src = _primed(decoded()) if read_rows == chunk_rows else None
            late = probe.result()
        if late is not None:
            order = None
            pipe.grace_ns = max(pipe.grace_ns, late)
            read_rows = chunk_rows
        return src if src is not None else decoded()

    def chunks(src):
        return src if order is None else event_ordered(src, order)

    def done(res: ReplayResult) -> ReplayResult:
        res.spilled = order is not None and order.spilled
        return res

    try:
        src = start()
        if not progress:
            return done(replay_batches(cfg, chunks(src), registry=registry, sinks=sinks,
                                       pipeline=pipe))
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        total = sum(_size(p) for p in inputs)
        with Progress(TextColumn("replay"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                      TextColumn("{task.fields[rows]:,} readings"), TimeElapsedColumn(),
                      MofNCompleteColumn(), transient=False) as bar:
            task = bar.add_task("replay", total=total or None, rows=0)
            seen = {"rows": 0}

            def tick(chunk: Any) -> None:
                seen["rows"] += len(chunk.batch)
                done = getattr(chunk, "bytes_read", None)
                if done is not None:
                    bar.update(task, completed=done, rows=seen["rows"])
                else:
                    bar.update(task, rows=seen["rows"])

            def ticking(src):
                for chunk in src:
                    tick(chunk)
                    yield chunk

            res = replay_batches(cfg, chunks(ticking(src)), registry=registry,
                                 sinks=sinks, pipeline=pipe)
            bar.update(task, completed=total)
            return done(res)
    finally:
        if order is not None:
            order.close()
        if sinks is not None:
            sinks.close()


def _graced(chunks: Iterable[Any], pipe: Pipeline, bound: GraceBound) -> Iterator[Any]:
    """Yield ``chunks``, setting the core's grace for each before it is processed."""
    base = pipe.grace_ns
    for chunk in chunks:
        pipe.grace_ns = max(base, bound.grace(chunk))
        yield chunk


def _primed(items: Iterable[Any]) -> Iterator[Any]:
    """Return ``items`` with its first item already produced (its work done now)."""
    it = iter(items)
    first = next(it, _END)
    return it if first is _END else itertools.chain([first], it)


_END = object()


def _size(path: str | Path) -> int:
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size if p.exists() else 0
