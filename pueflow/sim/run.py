"""Simulator driver: chunked telemetry for every site of a config, truth and fault lists.

Samples of every series sit at ``start + i * step`` (``i = 0 .. days * 86400 / step``,
both ends included), so window boundaries are sample times and the last window is closed
by the sample at the end of the run. Telemetry comes out in arrival order, one chunk of
``chunk_s`` simulated seconds at a time, so a week of a 40 MW hall never sits in memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from pueflow.config.models import Config
from pueflow.connectors.telemetry_writer import TelemetryWriter
from pueflow.sim.meters import FAULT_SCHEMA
from pueflow.sim.site import SiteSim
from pueflow.sim.truth import COLUMNS as TRUTH_COLUMNS
from pueflow.units import parse_duration_ns


class _Writer(Protocol):
    def write(self, df: pl.DataFrame) -> None: ...


@dataclass
class SimResult:
    """What a run produced.

    Attributes
    ----------
    telemetry : DataFrame or None
        Canonical long form (time, site, device, point, value) in arrival order; None when
        it was streamed to ``out``.
    truth : DataFrame
        True energies and KPIs per (site, window, time); columns :data:`TRUTH_COLUMNS`.
    faults : DataFrame
        Every injected fault and natural register rollover: time, site, device, point,
        kind, expected_quality (the quality event the pipeline should raise, or null), detail.
    rows, series : int
        Telemetry rows written and distinct series.
    elapsed_s : float
        Wall time of the run [s].
    """

    telemetry: pl.DataFrame | None
    truth: pl.DataFrame
    faults: pl.DataFrame
    rows: int
    series: int
    elapsed_s: float


def _utc_ns(start: datetime) -> int:
    if not isinstance(start, datetime) or start.tzinfo is None:
        msg = f"start = {start!r} must be a timezone-aware datetime, e.g. datetime(2025, 7, 1, tzinfo=UTC)"
        raise ValueError(msg)
    s = start.astimezone(UTC)
    return int(s.timestamp()) * 10**9 + s.microsecond * 1000


class Simulation:
    """A configured run; iterate it for telemetry chunks, then read :meth:`truth` and :meth:`faults`.

    Parameters
    ----------
    cfg : Config
    start : datetime
        Timezone-aware; must be a multiple of ``step_s`` since the epoch.
    days : float
        Length of the run [d]; rounded to whole steps.
    seed : int
        Same seed (and arguments) -> identical output.
    step_s : float
        Sample period [s]; must divide the smallest window.
    faults : bool
        Inject meter faults at the rates of each site's ``plant.faults``.
    chunk_s : float
        Simulated seconds per telemetry chunk.
    """

    def __init__(self, cfg: Config, start: datetime, days: float, *, seed: int, step_s: float = 10.0,
                 faults: bool = True, chunk_s: float = 3600.0):
        if days <= 0:
            msg = f"days = {days} must be > 0"
            raise ValueError(msg)
        step_ns = int(round(step_s * 1e9))
        windows = cfg.pipeline.window_ns()
        base = min(windows.values())
        if step_ns <= 0 or base % step_ns:
            msg = f"step_s = {step_s} must divide the smallest window ({base / 1e9:g} s), e.g. 10 or 60"
            raise ValueError(msg)
        start_ns = _utc_ns(start)
        if start_ns % step_ns:
            msg = f"start = {start.isoformat()} is not a multiple of step_s = {step_s}; round it to the minute"
            raise ValueError(msg)
        self.cfg, self.seed, self.faults_enabled = cfg, seed, faults
        self.start_ns, self.step_ns = start_ns, step_ns
        self.n_total = int(round(days * 86400e9 / step_ns)) + 1
        self.chunk_steps = max(1, int(round(chunk_s * 1e9 / step_ns)))
        grace = parse_duration_ns(cfg.pipeline.grace)
        self.sites = [SiteSim(s, windows, grace, start_ns, step_ns, self.n_total, seed, faults)
                      for s in cfg.sites]
        self.rows = 0

    @property
    def series(self) -> int:
        """Number of telemetry series emitted, summed over the sites."""
        return sum(len(s.table) for s in self.sites)

    def __len__(self) -> int:
        """Return the number of chunks iteration yields."""
        return -(-self.n_total // self.chunk_steps)

    def __iter__(self) -> Iterator[pl.DataFrame]:
        for g0 in range(0, self.n_total, self.chunk_steps):
            n = min(self.chunk_steps, self.n_total - g0)
            frames = [s.chunk(g0, n) for s in self.sites]
            df = pl.concat(frames) if len(frames) > 1 else frames[0]
            self.rows += df.height
            yield df

    def truth(self) -> pl.DataFrame:
        """Truth rows of every site (after iterating)."""
        return pl.concat([s.truth.frame() for s in self.sites]).select(TRUTH_COLUMNS)

    def faults(self) -> pl.DataFrame:
        """Return the recorded faults of every site, sorted by time (after iterating).

        Ties are ordered by site, device and point; with no fault the frame is empty but
        has :data:`FAULT_SCHEMA`.
        """
        frames = [f for s in self.sites for f in s.fault_frames]
        if not frames:
            return pl.DataFrame(schema=FAULT_SCHEMA)
        return pl.concat(frames).sort("time", "site", "device", "point", maintain_order=True)


def simulate(cfg: Config, start: datetime, days: float, *, seed: int, step_s: float = 10.0,
             faults: bool = True, out: str | Path | _Writer | None = None,
             chunk_s: float = 3600.0, on_chunk: Any = None) -> SimResult:
    """Simulate every site of ``cfg`` for ``days`` from ``start``.

    ``out`` None keeps the telemetry in ``SimResult.telemetry``; a path streams it to a file
    (format from the extension, see :class:`pueflow.connectors.files.TelemetryWriter`);
    an object with ``write(df)`` receives each chunk. ``on_chunk(sim, df)`` is called after
    each chunk (progress bars).
    """
    t0 = time.perf_counter()
    sim = Simulation(cfg, start, days, seed=seed, step_s=step_s, faults=faults, chunk_s=chunk_s)
    writer: Any = out
    own = False
    if isinstance(out, str | Path):
        writer, own = TelemetryWriter(out), True
    kept: list[pl.DataFrame] = []
    try:
        for df in sim:
            if writer is None:
                kept.append(df)
            else:
                writer.write(df)
            if on_chunk is not None:
                on_chunk(sim, df)
    finally:
        if own:
            writer.close()
    telemetry = pl.concat(kept) if kept else None
    return SimResult(telemetry, sim.truth(), sim.faults(), sim.rows, sim.series, time.perf_counter() - t0)


def simulate_to_file(cfg: Config, start: datetime, days: float, out_path: str | Path,
                     fmt: str | None = None, seed: int = 0, step_s: float = 10.0, faults: bool = True,
                     progress: bool = True) -> SimResult:
    """Simulate and write telemetry, truth and faults to files.

    Telemetry goes to ``out_path``; ``truth.parquet`` and ``faults.parquet`` go to the same
    directory (overwriting any there). The telemetry writer is closed even if the run fails.

    Parameters
    ----------
    cfg : Config
        Sites to simulate.
    start : datetime
        First sample time (time-zone aware, a multiple of ``step_s``).
    days : float
        Length of the run [d].
    out_path : str or Path
        Telemetry file.
    fmt : {"parquet", "csv", "jsonl", "lp"}, optional
        Default: from the file extension.
    seed : int
        Random seed; equal seeds give equal output.
    step_s : float
        Sample period [s].
    faults : bool
        Inject meter faults (False: perfect meters).
    progress : bool
        Show a progress bar.

    Returns
    -------
    SimResult
        With ``telemetry`` None (it was streamed to the file).
    """
    path = Path(out_path)
    # JSON timestamps in the unit the site's Telegraf is configured for, as replay reads them
    writer = TelemetryWriter(path, fmt, timestamp_unit=cfg.kafka.timestamp_unit)
    bar: Any = None
    task = None
    if progress:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(TextColumn("simulating [bold]{task.fields[what]}"), BarColumn(),
                       TextColumn("{task.percentage:>5.1f}%  {task.fields[rows]:,} rows"),
                       TimeElapsedColumn(), TimeRemainingColumn())
        bar.start()
        task = bar.add_task("sim", total=1.0, what=", ".join(s.id for s in cfg.sites), rows=0)

    def on_chunk(sim: Simulation, df: pl.DataFrame) -> None:
        if bar is not None:
            bar.update(task, advance=sim.chunk_steps / sim.n_total, rows=sim.rows)

    try:
        result = simulate(cfg, start, days, seed=seed, step_s=step_s, faults=faults, out=writer,
                          on_chunk=on_chunk)
        if bar is not None:
            bar.update(task, completed=1.0)
    finally:
        writer.close()
        if bar is not None:
            bar.stop()
    result.truth.write_parquet(path.parent / "truth.parquet")
    result.faults.write_parquet(path.parent / "faults.parquet")
    return result
