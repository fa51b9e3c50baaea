"""Replay on Dask: site x time-slice tasks, rows identical to a single-process replay.

``replay_dask(cfg, inputs, "tcp://host:8786")`` runs on a running scheduler;
``"local:N"`` starts a :class:`~distributed.LocalCluster` of N worker processes on
127.0.0.1 for one machine. Inputs and the store are shared storage: every worker reads
the same paths and writes its partitions of the Parquet store (idempotent merges, see
:mod:`pueflow.connectors.parquet_store`).

Each task (:func:`~pueflow.modes.slices.run_slice`) replays one site's slice of local days
from the state a single process has at the slice start. Fleet and jurisdiction aggregates
are computed here after the slices, from the site windows they return. A worker that dies
is replaced and its task re-run by the scheduler (``distributed.scheduler.allowed-failures``);
a task that fails for a data reason (:class:`~pueflow.modes.slices.SliceDataError`) stops
the job at once with the slice, file and reason.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dask
import polars as pl
import pyarrow.parquet as pq
from distributed import Client, LocalCluster, as_completed

from pueflow.config.models import Config
from pueflow.connectors.files import format_of, iter_file, telemetry_files
from pueflow.connectors.sink import build_sinkset
from pueflow.exceptions import PueflowError
from pueflow.modes.replay import (
    UNKNOWN_SITE,
    ReplayResult,
    count_rows,
    decode_error_rows,
    local_store,
)
from pueflow.modes.slices import Slice, SliceDataError, plan_slices, run_slice
from pueflow.pipeline.fleet import FleetAggregator
from pueflow.schema.registry import Registry
from pueflow.schema.rows import Output

#: Seconds to wait for a scheduler before giving up.
CONNECT_TIMEOUT_S = 5


class DaskError(PueflowError):
    """The Dask scheduler could not be used (unreachable, bad address)."""


def parse_address(address: str) -> tuple[str, int]:
    """``("local", N)`` for ``local:N``, else ``("remote", 0)``; errors name the fix.

    Raises
    ------
    DaskError
        ``local:`` without a positive worker count, or an empty address.
    """
    a = address.strip()
    if not a:
        msg = "--dask needs an address: tcp://host:8786 or local:N (N worker processes)"
        raise DaskError(msg)
    if a.startswith("local"):
        n = a.partition(":")[2]
        if not n.isdigit() or int(n) < 1:
            msg = f"--dask {address!r}: write local:N with N >= 1 worker processes, e.g. local:2"
            raise DaskError(msg)
        return "local", int(n)
    return "remote", 0


@contextmanager
def local_cluster(n: int) -> Iterator[LocalCluster]:
    """Start ``n`` single-threaded worker processes and a scheduler on 127.0.0.1; stop them after."""
    # the workers' statistical profiler samples every 10 ms: CPU a backfill does not need
    with dask.config.set({"distributed.worker.profile.enabled": False}), \
            LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0") as cluster:
        yield cluster


@contextmanager
def connect(address: str) -> Iterator[Client]:
    """Connect to ``address`` (see :func:`parse_address`); stop a local cluster after.

    Raises
    ------
    DaskError
        No scheduler answers at ``address`` within :data:`CONNECT_TIMEOUT_S` [s].
    """
    kind, n = parse_address(address)
    if kind == "local":
        with local_cluster(n) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError) as exc:
        msg = (f"--dask {address}: no Dask scheduler answered within {CONNECT_TIMEOUT_S} s "
               f"({type(exc).__name__}: {exc}); start one with `dask scheduler` and "
               f"`dask worker {address}`, or use --dask local:N")
        raise DaskError(msg) from None
    try:
        yield client
    finally:
        client.close()


def extent_ns(cfg: Config, inputs: list[str | Path], timestamp_unit: str | None = None
              ) -> dict[str, tuple[int, int]]:
    """First and last reading time [ns] of each site name in ``inputs`` (unknown ones too).

    Parquet files with a ``site`` column answer from their ``site`` and ``time`` columns;
    other files are decoded.
    """
    spans: dict[str, tuple[int, int]] = {}

    def merge(site: str, lo: int, hi: int) -> None:
        a, z = spans.get(site, (lo, hi))
        spans[site] = (min(a, lo), max(z, hi))

    for f in (f for p in inputs for f in telemetry_files(p)):
        got = _parquet_spans(f) if format_of(f) == "parquet" else None
        if got is None:
            reg = Registry(cfg)
            got = {}
            for ch in iter_file(f, reg, json_timestamp_unit=timestamp_unit
                                or cfg.kafka.timestamp_unit):
                b = ch.batch
                if len(b):
                    df = pl.DataFrame({"s": b.series, "t": b.time_ns}).group_by("s").agg(
                        pl.col("t").min().alias("lo"), pl.col("t").max().alias("hi"))
                    for s, lo, hi in df.iter_rows():
                        site = reg.keys[s][0]
                        a, z = got.get(site, (lo, hi))
                        got[site] = (min(a, lo), max(z, hi))
        for site, (lo, hi) in got.items():
            merge(site, lo, hi)
    return spans


def _parquet_spans(f: Path) -> dict[str, tuple[int, int]] | None:
    """Per-site time span [ns] of a Parquet file with ``site`` and a zoned ``time``, else None."""
    schema = pq.read_schema(f)
    if "time" not in schema.names or "site" not in schema.names or \
            not str(schema.field("time").type).startswith("timestamp"):
        return None
    df = (pl.scan_parquet(f).filter(pl.col("site").is_not_null() & pl.col("time").is_not_null())
          .group_by(pl.col("site").cast(pl.String))
          .agg(pl.col("time").min().dt.epoch("ns").alias("lo"),
               pl.col("time").max().dt.epoch("ns").alias("hi")).collect())
    return {s: (int(lo), int(hi)) for s, lo, hi in df.iter_rows()}


def site_spans(cfg: Config, spans: dict[str, tuple[int, int]]
               ) -> tuple[dict[int, tuple[int, int]], dict[int, int]]:
    """Spans to slice per site index, and each site's own last reading [ns].

    Readings of sites not in the config go with site 0's slices (as ``unknown`` quality
    rows), so its span also covers theirs.
    """
    index = {s.id: i for i, s in enumerate(cfg.sites)}
    out = {index[s]: v for s, v in spans.items() if s in index}
    own = {i: v[1] for i, v in out.items()}
    stray = [v for s, v in spans.items() if s not in index]
    if stray:
        lo = min([v[0] for v in stray] + ([out[0][0]] if 0 in out else []))
        hi = max([v[1] for v in stray] + ([out[0][1]] if 0 in out else []))
        out[0] = (lo, hi)
        own.setdefault(0, lo - 1)
    return out, own


def replay_dask(cfg: Config, inputs: list[str | Path], address: str, *,
                out_dir: str | Path | None = None, run: str = "", write: bool = True,
                progress: bool = True, slice_days: int = 1, chunk_rows: int = 1_000_000,
                memory_mb: float = 512.0, spill_dir: str | Path | None = None,
                time_from_ns: int | None = None, time_to_ns: int | None = None,
                timestamp_unit: str | None = None) -> ReplayResult:
    """Replay ``inputs`` on the Dask scheduler at ``address``; rows as ``replay()`` gives.

    Parameters
    ----------
    address : str
        ``tcp://host:port`` of a running scheduler, or ``local:N`` for N local processes.
    slice_days : int
        Local days per task [d]; each task also reads a warm-up of about an hour.
    memory_mb : float
        Budget [MiB] of one task for its readings while ordering them by time.

    Raises
    ------
    DaskError
        The scheduler does not answer; nothing is written.
    SliceDataError
        A slice failed for a data reason; the job stops there.
    """
    if time_from_ns is not None or time_to_ns is not None:
        msg = "--dask does not take --from/--to yet: cut the input files to the period instead"
        raise PueflowError(msg)
    t0 = time.perf_counter()
    with connect(address) as client:
        spans, own = site_spans(cfg, extent_ns(cfg, inputs, timestamp_unit=timestamp_unit))
        slices = plan_slices(cfg, spans, slice_days, own)
        t_lo = min((v[0] for v in spans.values()), default=0)
        if progress:
            print(f"dask: {len(slices)} tasks on {address}; dashboard {client.dashboard_link}")
        ins = [str(p) for p in inputs]
        job = uuid.uuid4().hex[:12]  # a key per job: a scheduler never hands back another's
        shared = client.scatter(cfg, broadcast=True)  # sent to each worker once, not per task
        futures = [client.submit(run_slice, shared, ins, sl, t_lo=t_lo, out_dir=out_dir, run=run,
                                 write=write, chunk_rows=chunk_rows, memory_mb=memory_mb,
                                 spill_dir=spill_dir, timestamp_unit=timestamp_unit,
                                 key=f"pueflow-slice-{job}-{sl.site}-{sl.start}", retries=0,
                                 pure=False)
                   for sl in slices]
        results = _gather(futures, slices, cfg, progress, t0)
    return _combine(cfg, results, run, out_dir, write, t0)


def _gather(futures, slices: list[Slice], cfg: Config, progress: bool, t0: float) -> list:
    """Results in slice order; the first data failure cancels the rest and is raised."""
    by_key = {f.key: i for i, f in enumerate(futures)}
    results: list = [None] * len(futures)
    bar = None
    if progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
        bar = Progress(TextColumn("replay on dask"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]}"), TimeElapsedColumn())
        task = bar.add_task("replay", total=len(futures), rate="")
        bar.start()
    done_readings = 0
    try:
        for fut in as_completed(futures):
            i = by_key[fut.key]
            if fut.status == "error":
                exc = fut.exception()
                for f in futures:
                    f.cancel()
                sl = slices[i]
                if isinstance(exc, SliceDataError):
                    raise exc
                hint = ("; its worker died each time it ran it (out of memory? lower "
                        "--memory-mb or --slice-days)" if type(exc).__name__ == "KilledWorker"
                        else "")
                msg = (f"site {cfg.sites[sl.site].id!r} slice at {sl.start} ns failed: "
                       f"{exc!r}{hint}")
                raise PueflowError(msg) from exc
            results[i] = fut.result()
            done_readings += results[i].readings
            if bar is not None:
                rate = done_readings / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, advance=1, rate=f"{rate / 1e6:.2f} M readings/s")
    finally:
        if bar is not None:
            bar.stop()
    return results


def _combine(cfg: Config, results: list, run: str, out_dir, write: bool, t0: float
             ) -> ReplayResult:
    """Fleet rows from the slices' site windows; decode errors once; one result."""
    agg = FleetAggregator(cfg, run)
    agg.pending = [r.fleet_parts for r in results if r.fleet_parts.height]
    fleet = agg.flush(True)
    seen: set[tuple[str, int]] = set()
    by_path: dict[str, list[tuple[int, str]]] = {}
    site_of: dict[str, dict[int, str]] = {}
    for r in results:
        for path, row, why, site in r.errors:
            if (path, row) not in seen:
                seen.add((path, row))
                by_path.setdefault(path, []).append((row, why))
                if site is not None:
                    site_of.setdefault(path, {})[row] = site
    known = {s.id for s in cfg.sites}
    bad = [decode_error_rows(p, sorted(e), run, site_of.get(p), known) for p, e in by_path.items()]
    kpi = [r.kpi for r in results if r.kpi.height]
    quality = bad + [r.quality for r in results if r.quality.height]
    res = ReplayResult(
        kpi=pl.concat(kpi, how="diagonal_relaxed") if kpi else pl.DataFrame(),
        quality=pl.concat(quality, how="diagonal_relaxed") if quality else pl.DataFrame(),
        setpoint=pl.DataFrame(), fleet=fleet if fleet is not None else pl.DataFrame(),
        readings=sum(r.readings for r in results), rejected=sum(r.rejected for r in results))
    if write:
        sinks = count_rows(build_sinkset(cfg, run, out_dir))
        try:
            all_bad = pl.concat(bad) if bad else None
            sited = None if all_bad is None else all_bad.filter(pl.col("site") != UNKNOWN_SITE)
            sinks.write(Output(fleet=fleet, quality=sited))
            orphans = None if all_bad is None else all_bad.filter(pl.col("site") == UNKNOWN_SITE)
            local = local_store(sinks)
            if orphans is not None and orphans.height and local is not None:
                local.write("quality", orphans)  # no site to route by: the local store keeps them
            sinks.flush()
        finally:
            sinks.close()
        res.sinks = [s.name for s, _ in sinks.pairs]
        res.sink_rows = {s.name: dict(s.rows) for _, s in sinks.pairs}
        for r in results:  # what the tasks wrote, too
            for name, rows in r.sink_rows.items():
                mine = res.sink_rows.setdefault(name, {})
                for m, k in rows.items():
                    mine[m] = mine.get(m, 0) + k
    res.seconds = time.perf_counter() - t0
    return res
