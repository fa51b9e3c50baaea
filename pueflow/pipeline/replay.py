"""Replay: telemetry files -> the shared core -> sinks, with progress and a summary."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pueflow.config import Config
from pueflow.pipeline.core import Output, Pipeline
from pueflow.pipeline.registry import Registry
from pueflow.sovereignty import Router


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

    @property
    def samples_per_s(self) -> float:
        return self.readings / self.seconds if self.seconds else 0.0


class SinkSet:
    """Every configured sink behind the sovereignty router."""

    def __init__(self, cfg: Config, sinks: list[Any]):
        self.cfg = cfg
        self.router = Router(cfg)
        by_name = {s.name: s for s in cfg.sinks}
        self.pairs = [(by_name[s.name], s) for s in sinks if s.name in by_name]

    def write(self, out: Output) -> int:
        n = 0
        for measurement, df in out.frames().items():
            for spec, sink in self.pairs:
                rows = self.router.rows_for(spec, measurement, df)
                if rows is not None:
                    sink.write(measurement, rows)
                    self.router.audit(spec, measurement, rows)  # what left a jurisdiction
                    n += rows.height
        return n

    def flush(self) -> None:
        for _, sink in self.pairs:
            sink.flush()

    def close(self) -> None:
        for _, sink in self.pairs:
            sink.close()


def build_sinkset(cfg: Config, run: str = "", out_dir: str | Path | None = None) -> SinkSet:
    """Sinks from the config. ``out_dir`` relocates Parquet stores (one store: that folder;
    several: a sub-folder per sink name, so jurisdictions never share a folder)."""
    from pueflow.connectors.sink import build_sinks

    if out_dir is not None:
        parquet = [s for s in cfg.sinks if s.type == "parquet"]
        cfg = cfg.model_copy(deep=True)
        for s in cfg.sinks:
            if s.type == "parquet":
                s.path = str(out_dir) if len(parquet) == 1 else str(Path(out_dir) / s.name)
        if not parquet:
            from pueflow.config import Sink

            jur = cfg.sites[0].jurisdiction
            cfg.sinks.append(Sink(name="local", type="parquet", path=str(out_dir), jurisdiction=jur))
    return SinkSet(cfg, build_sinks(cfg, run=run))


def decode_error_rows(path: str, errors: list[tuple[int, str]], run: str = "") -> pl.DataFrame:
    """Rows of a file that gave no reading, as ``quality`` rows of kind ``decode_error``.

    Their event time is unknown, so they carry the epoch; ``device`` names the file and
    ``point`` the 1-based row, ``detail`` the reason.
    """
    n = len(errors)
    return pl.DataFrame({
        "time": [0] * n, "site": ["?"] * n, "kind": ["decode_error"] * n,
        "device": [Path(path).name or "?"] * n, "point": [f"row {r}" for r, _ in errors],
        "run": [run] * n, "count": [1] * n, "value": [float("nan")] * n,
        "detail": [f"{path}:{r}: {why}" for r, why in errors],
    }).with_columns(pl.col("time").cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"))


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
    for chunk in chunks:
        out = pipe.process(chunk.batch)
        errors = getattr(chunk, "errors", None)
        if errors:
            bad = decode_error_rows(getattr(chunk, "path", ""), errors, run)
            out.quality = bad if out.quality is None else pl.concat(
                [out.quality, bad], how="diagonal_relaxed")
        _collect(parts, out)
        if sinks is not None:
            sinks.write(out)
        if on_chunk is not None:
            on_chunk(chunk)
    out = pipe.finalize()
    _collect(parts, out)
    if sinks is not None:
        sinks.write(out)
        sinks.flush()
    return ReplayResult(
        kpi=_concat(parts["kpi"]), quality=_concat(parts["quality"]),
        setpoint=_concat(parts["setpoint"]), fleet=_concat(parts["fleet"]),
        readings=pipe.stats["readings_in"], rejected=pipe.stats["readings_rejected"],
        seconds=time.perf_counter() - t0,
        sinks=[s.name for s, _ in sinks.pairs] if sinks else [],
    )


def replay(cfg: Config, inputs: list[str | Path], *, out_dir: str | Path | None = None,
           time_from_ns: int | None = None, time_to_ns: int | None = None,
           progress: bool = True, run: str = "", dispatch: str | None = None,
           chunk_rows: int = 1_000_000, write: bool = True,
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
    timestamp_unit : str, optional
        Unit of Telegraf JSON timestamps (default: ``cfg.kafka.timestamp_unit``, as in
        consume mode, so a file and a topic of the same Telegraf output agree).
    """
    from pueflow.connectors.files import iter_file

    registry = Registry(cfg)
    dispatcher = None
    if dispatch:
        from pueflow.optimizers.dispatcher import Dispatcher

        dispatcher = Dispatcher(cfg, policy=dispatch)
    sinks = build_sinkset(cfg, run, out_dir) if write else None

    def chunks():
        for path in inputs:
            yield from iter_file(path, registry, chunk_rows=chunk_rows,
                                 time_from_ns=time_from_ns, time_to_ns=time_to_ns,
                                 json_timestamp_unit=timestamp_unit or cfg.kafka.timestamp_unit)

    try:
        if not progress:
            return replay_batches(cfg, chunks(), registry=registry, sinks=sinks, run=run,
                                  dispatcher=dispatcher)
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

            res = replay_batches(cfg, chunks(), registry=registry, sinks=sinks, run=run,
                                 dispatcher=dispatcher, on_chunk=tick)
            bar.update(task, completed=total)
            return res
    finally:
        if sinks is not None:
            sinks.close()


def _size(path: str | Path) -> int:
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size if p.exists() else 0
