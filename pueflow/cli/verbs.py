"""The verbs of the command line: each turns parsed flags into one call of a mode."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape

from pueflow.config.load import load_config
from pueflow.config.routing import unreached_sites
from pueflow.connectors.parquet_store import read_store
from pueflow.exceptions import ConfigError, PueflowError
from pueflow.modes.dashboard.server import serve
from pueflow.modes.eed import eed_report, write_report
from pueflow.modes.replay import replay
from pueflow.modes.summary import quality_counts, render, summarise

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def _env_num(name: str, default: str) -> str:
    """Return environment variable ``name`` or ``default``: the text of a numeric flag's default."""
    return os.environ.get(name) or default


def parse_time_ns(text: str, flag: str) -> int:
    """Parse an ISO-8601 time with a zone (``2026-07-01T00:00Z``, ``...+01:00``) into [ns].

    Raises :class:`PueflowError`, naming ``flag``, for a malformed or zone-less (naive) time.
    """
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        msg = f"{flag} {text!r} is not an ISO-8601 time; write e.g. 2026-07-01T00:00Z"
        raise PueflowError(msg) from None
    if t.tzinfo is None:
        msg = f"{flag} {text!r} has no time zone; add 'Z' for UTC or an offset like +01:00"
        raise PueflowError(msg)
    return int(t.timestamp() * 1e9)


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default=_env("PUEFLOW_CONFIG"),
                   help="TOML config file (env PUEFLOW_CONFIG)")


def _load(args: argparse.Namespace):
    if not args.config:
        msg = "no config: pass --config FILE or set PUEFLOW_CONFIG (examples are in config/)"
        raise PueflowError(msg)
    return load_config(args.config)


# ------------------------------------------------------------------------------ verbs
def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate config files, printing every problem; ``EXIT_CONFIG`` if any fails to load.

    Every file is checked even after a failure.
    """
    console = Console()
    bad = 0
    for f in args.files:
        try:
            cfg = load_config(f)
        except ConfigError as exc:
            bad += 1
            console.print(f"[red]✗ {escape(exc.source)}[/red]: {len(exc.problems)} problem(s)")
            for key, value, fix in exc.problems:
                # config text is full of [brackets]: never let rich read it as markup
                console.print(f"    [bold]{escape(key)}[/bold] = {escape(repr(value))}\n"
                              f"      → {escape(fix)}")
            continue
        for sid, why in unreached_sites(cfg):
            console.print(f"[yellow]! {escape(f)}[/yellow]: site {escape(repr(sid))}: {escape(why)}")
        n_m = sum(len(s.meters) for s in cfg.sites)
        console.print(f"[green]✓ {f}[/green]: {len(cfg.sites)} site(s), {n_m} meter rules, "
                      f"{len(cfg.sinks)} sink(s), windows {cfg.pipeline.windows}")
    return EXIT_CONFIG if bad else EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay telemetry files into KPI rows, print the summary; ``EXIT_OK``.

    ``--from``/``--to`` bound event time (``--to`` exclusive); errors raise :class:`PueflowError`.
    """
    cfg = _load(args)
    t_from = parse_time_ns(args.time_from, "--from") if args.time_from else None
    t_to = parse_time_ns(args.time_to, "--to") if args.time_to else None
    if args.dask:
        res = _replay_dask(cfg, args, t_from, t_to)
    else:
        res = replay(cfg, args.input, out_dir=args.out, time_from_ns=t_from, time_to_ns=t_to,
                     progress=not args.quiet, run=args.run, dispatch=args.dispatch,
                     chunk_rows=args.chunk_rows, as_streamed=args.as_streamed,
                     memory_mb=args.memory_mb, spill_dir=args.spill_dir,
                     timestamp_unit=args.timestamp_unit)
    if not args.quiet:
        render(summarise(res.kpi, res.quality), title="replay summary (whole period)")
        qc = quality_counts(res.quality)
        if qc.height:
            print(qc)
    print(f"{res.readings:,} readings ({res.rejected:,} excluded, see quality) in "
          f"{res.seconds:.2f} s = {res.samples_per_s / 1e6:.2f} M readings/s; "
          f"{_sink_line(res.sink_rows)}")
    return EXIT_OK


def _replay_dask(cfg, args: argparse.Namespace, t_from: int | None, t_to: int | None):
    """``replay --dask``: the same rows, computed by site x day tasks on a Dask cluster."""
    if args.dispatch or args.as_streamed:
        msg = "--dask replays in event-time order without dispatch: drop --dispatch/--as-streamed"
        raise PueflowError(msg)
    from pueflow.modes.distributed import replay_dask  # needs the [dask] extra

    return replay_dask(cfg, args.input, args.dask, out_dir=args.out, run=args.run,
                       progress=not args.quiet, slice_days=args.slice_days,
                       chunk_rows=args.chunk_rows, memory_mb=args.memory_mb,
                       spill_dir=args.spill_dir, time_from_ns=t_from, time_to_ns=t_to,
                       timestamp_unit=args.timestamp_unit)


def _sink_line(sink_rows: dict[str, dict[str, int]]) -> str:
    """Say what each sink actually received, e.g. ``182 kpi, 4 quality rows -> tetouan-store``."""
    if not sink_rows:
        return "no sink"
    parts = []
    for name, rows in sink_rows.items():
        got = ", ".join(f"{n:,} {m}" for m, n in rows.items() if n) or "0"
        parts.append(f"{got} rows -> {name}")
    return "; ".join(parts)


def cmd_report(args: argparse.Namespace) -> int:
    """Summarise a Parquet store; days are local with ``--config``, else UTC; ``EXIT_OK``.

    ``--eed YEAR`` writes the EU data-centre report instead (needs ``--config``).
    """
    if args.eed is not None:
        stores = args.stores or ([args.store] if args.store else None)
        text = write_report(eed_report(_load(args), args.eed, stores, run=args.run), args.format, args.out)
        if not args.out:
            print(text)
        return EXIT_OK
    store = args.store or (args.stores[0] if args.stores else "pueflow-out")
    kpi = read_store(store, "kpi")
    quality = read_store(store, "quality")
    tz = None
    if args.config:
        tz = {s.id: s.timezone for s in _load(args).sites}
    render(summarise(kpi, quality, by_day=args.daily, timezones=tz), title=f"report: {store}")
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the operators' pages until Ctrl-C; ``EXIT_OK`` (plotly.js: the [dashboard] extra)."""
    serve(_load(args), args.stores or None, host=args.host, port=args.port, run=args.run)
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate a site's telemetry, with truth and faults, into a file; ``EXIT_OK``."""
    # loaded when the verb runs: it needs the [sim] extra
    from pueflow.sim import simulate_to_file

    cfg = _load(args)
    start = datetime.fromtimestamp(parse_time_ns(args.start, "--start") / 1e9, UTC)
    simulate_to_file(cfg, start, args.days, args.out, fmt=args.format, seed=args.seed,
                     step_s=args.step, faults=not args.no_faults, progress=not args.quiet)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulate the 7.5 MW demo site (default config) and replay it; ``EXIT_OK``."""
    # loaded when the verb runs: it needs the [sim] extra
    from pueflow.modes.demo import run_demo

    run_demo(config=args.config or "config/tetouan-7.5mw.toml", out=args.out, days=args.days,
             seed=args.seed)
    return EXIT_OK


def cmd_consume(args: argparse.Namespace) -> int:
    """Run the Kafka -> KPI -> store service until stopped; ``EXIT_OK``.

    ``--session-timeout-ms`` also sets the heartbeat to a fifth of it (at least 100 ms).
    """
    # loaded when the verb runs: it needs the [kafka] extra
    from pueflow.modes.consume.run import run_consume

    cfg = _load(args)
    overrides = {}
    if args.session_timeout_ms:
        overrides["session_timeout_ms"] = args.session_timeout_ms
        overrides["heartbeat_interval_ms"] = max(args.session_timeout_ms // 5, 100)
    run_consume(cfg, metrics_port=args.metrics_port, run=args.run, max_seconds=args.max_seconds,
                group_id=args.group, consumer_overrides=overrides,
                max_message_bytes=args.max_message_bytes, drain_timeout_s=args.drain_timeout,
                dispatch=args.dispatch)
    return EXIT_OK


def cmd_aggregate(args: argparse.Namespace) -> int:
    """Run the KPI topic -> fleet rows stage until stopped; ``EXIT_OK``."""
    # loaded when the verb runs: it needs the [kafka] extra
    from pueflow.modes.aggregate.run import run_aggregate

    cfg = _load(args)
    overrides = {}
    if args.session_timeout_ms:
        overrides["session_timeout_ms"] = args.session_timeout_ms
        overrides["heartbeat_interval_ms"] = max(args.session_timeout_ms // 5, 100)
    run_aggregate(cfg, metrics_port=args.metrics_port, run=args.run, max_seconds=args.max_seconds,
                  consumer_overrides=overrides, drain_timeout_s=args.drain_timeout)
    return EXIT_OK


def cmd_produce(args: argparse.Namespace) -> int:
    """Publish a telemetry file to Kafka (``--rate`` [messages/s]); ``EXIT_OK``."""
    # loaded when the verb runs: it needs the [kafka] extra
    from pueflow.modes.produce import run_produce

    cfg = _load(args)
    run_produce(cfg, args.input, rate=args.rate, fmt=args.format)
    return EXIT_OK


def cmd_tune(args: argparse.Namespace) -> int:
    """Tune dispatch settings over history and print the best trial.

    ``EXIT_ERROR`` when no trial is feasible (unless ``--no-report``), else ``EXIT_OK``.
    """
    # loaded when the verb runs: it needs the [tune] extra
    from pueflow.modes.tune.report import num
    from pueflow.modes.tune.run import run_tune

    cfg = _load(args)
    res = run_tune(cfg, args.input, trials=args.trials, jobs=args.jobs, storage=args.storage,
                   study=args.study, out=args.out, seed=args.seed, progress=not args.quiet,
                   report=not args.no_report)
    if res.best_number is None and not args.no_report:
        print(f"error: no feasible trial among {res.trials} in study {res.study!r}; widen [[tune.space]] "
              f"or relax the [tune] constraints (report: {res.report_path})", file=sys.stderr)
        return EXIT_ERROR
    if args.no_report:
        best = ("" if res.best_number is None or res.best_value is None
                else f", best #{res.best_number} = {num(res.best_value)}")
        print(f"study {res.study}: {res.trials} trials{best}")
    elif args.quiet:
        val = ", ".join(f"{k} {num(v)}" for k, v in res.validation.items())
        best_value = num(res.best_value) if res.best_value is not None else "-"
        print(f"study {res.study}: {res.trials} trials, best #{res.best_number} = {best_value}"
              f"{' (validation: ' + val + ')' if val else ''} -> {res.config_path}, {res.report_path}")
    return EXIT_OK
