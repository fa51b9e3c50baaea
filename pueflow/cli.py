"""Command line: ``pueflow VERB``. Orchestration only: no arithmetic, no I/O formats here."""

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


# ------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    """Build the ``pueflow`` parser; each verb's sub-parser sets ``func`` to its ``cmd_*``."""
    ap = argparse.ArgumentParser(
        prog="pueflow",
        description="AI data-centre telemetry -> ISO/IEC 30134 KPIs (PUE, pPUE, REF, CUE, WUE, "
                    "ERF) and dispatch setpoints.")
    sub = ap.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("check-config", help="validate config files; exit 2 listing every problem")
    p.add_argument("files", nargs="+", help="TOML config files")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("replay", help="replay telemetry files into KPI rows")
    _config_arg(p)
    p.add_argument("--input", "-i", nargs="+", required=True,
                   help="Parquet/CSV/JSON-lines/line-protocol files or folders")
    p.add_argument("--out", "-o", default=_env("PUEFLOW_OUT"),
                   help="folder for the Parquet store (env PUEFLOW_OUT; default: config's path)")
    p.add_argument("--from", dest="time_from", help="first event time, ISO-8601 with zone")
    p.add_argument("--to", dest="time_to", help="end event time (exclusive), ISO-8601 with zone")
    p.add_argument("--run", default=_env("PUEFLOW_RUN", "replay"),
                   help="run tag on every row so replays never overwrite production series "
                        "(env PUEFLOW_RUN; default 'replay')")
    p.add_argument("--dispatch", choices=["mpc", "rule", "oracle"],
                   help="also compute dispatch setpoints with this policy")
    p.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows read per chunk")
    p.add_argument("--as-streamed", action="store_true",
                   help="rows in file order with the config's grace, as a live service saw "
                        "them (default: event-time order, any file order gives the same rows)")
    p.add_argument("--memory-mb", type=float, default=1024.0,
                   help="budget [MiB] for readings held while ordering them by time; past it "
                        "they are spilled to disk (default 1024, fits a 2-core/4 GiB worker)")
    p.add_argument("--spill-dir", help="folder for the spill (default: system temp folder); "
                                       "removed after the run")
    p.add_argument("--timestamp-unit", default=_env("PUEFLOW_TIMESTAMP_UNIT"),
                   help="unit of Telegraf JSON timestamps: s, ms, us, ns or a duration such "
                        "as 10ms (env PUEFLOW_TIMESTAMP_UNIT; default: the config's "
                        "[kafka] timestamp_unit)")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="run on Dask: tcp://host:8786 (a running scheduler; inputs and store on "
                        "shared storage) or local:N (N local worker processes); needs [dask]")
    p.add_argument("--slice-days", type=int, default=1,
                   help="with --dask: local days of one site per task (default 1)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or table")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("report", help="summarise a Parquet store, or write the EU (EED) report")
    p.add_argument("store", nargs="?", default=None, help="store folder (default pueflow-out)")
    p.add_argument("--store", dest="stores", action="append", default=[],
                   help="store folder; repeat for a fleet split by jurisdiction (--eed default: "
                        "the config's parquet sinks)")
    p.add_argument("--daily", action="store_true", help="one row per site and local day")
    p.add_argument("--eed", type=int, metavar="YEAR", default=None,
                   help="EU data-centre report (Delegated Regulation (EU) 2024/1364) for YEAR")
    p.add_argument("--format", default="json", choices=["json", "csv", "html"], help="--eed output form")
    p.add_argument("--out", "-o", default=None, help="--eed output file (default: stdout)")
    p.add_argument("--run", default=None, help="run tag to report (default: production, else the only run)")
    _config_arg(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("dashboard", help="operators' web pages over a Parquet store (127.0.0.1)")
    _config_arg(p)
    p.add_argument("--store", dest="stores", action="append", default=[],
                   help="store folder; repeat for several (default: the config's parquet sinks)")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--run", default=None, help="run tag to show (default: production, else the only run)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("simulate", help="simulate a site's telemetry with known truth")
    _config_arg(p)
    p.add_argument("--start", default="2026-07-01T00:00Z", help="ISO-8601 start with zone")
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--out", "-o", required=True, help="output file (telemetry)")
    p.add_argument("--format", default="parquet", choices=["parquet", "csv", "jsonl", "lp"])
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--step", type=float, default=10.0, help="sample period [s]")
    p.add_argument("--no-faults", action="store_true", help="perfect meters")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="simulate a week of the 7.5 MW Moroccan site and replay it")
    _config_arg(p)
    p.add_argument("--out", default="pueflow-out", help="output folder")
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("consume", help="run the Kafka -> KPI -> store service")
    _config_arg(p)
    p.add_argument("--metrics-port", type=int,
                   default=int(_env_num("PUEFLOW_METRICS_PORT", "0")) or None,
                   help="Prometheus /metrics and /health port (env PUEFLOW_METRICS_PORT)")
    p.add_argument("--run", default=_env("PUEFLOW_RUN", ""), help="run tag (default: none)")
    p.add_argument("--group", default=_env("PUEFLOW_GROUP"),
                   help="consumer group (env PUEFLOW_GROUP; default: the config's kafka.group_id)")
    p.add_argument("--dispatch", choices=["mpc", "rule"], default=_env("PUEFLOW_DISPATCH"),
                   help="also publish dispatch setpoints with this policy (env PUEFLOW_DISPATCH)")
    p.add_argument("--session-timeout-ms", type=int,
                   default=int(_env_num("PUEFLOW_SESSION_TIMEOUT_MS", "0")) or None,
                   help="consumer session timeout: how fast a dead process's partitions move "
                        "(env PUEFLOW_SESSION_TIMEOUT_MS; default: kafka-python's)")
    p.add_argument("--max-message-bytes", type=int,
                   default=int(_env_num("PUEFLOW_MAX_MESSAGE_BYTES", "1000000")),
                   help="larger records go to the dead-letter topic undecoded "
                        "(env PUEFLOW_MAX_MESSAGE_BYTES; default 1000000)")
    p.add_argument("--drain-timeout", type=float,
                   default=float(_env_num("PUEFLOW_DRAIN_TIMEOUT", "20")),
                   help="bound on the final checkpoint at SIGTERM/SIGINT [s] "
                        "(env PUEFLOW_DRAIN_TIMEOUT; default 20)")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    p.set_defaults(func=cmd_consume)

    p = sub.add_parser("aggregate", help="run the KPI topic -> fleet rows stage (its own group)")
    _config_arg(p)
    p.add_argument("--metrics-port", type=int, default=None, help="Prometheus /metrics and /health port")
    p.add_argument("--run", default=_env("PUEFLOW_RUN", ""), help="run tag (default: none)")
    p.add_argument("--session-timeout-ms", type=int, default=None,
                   help="consumer session timeout (default: kafka-python's)")
    p.add_argument("--drain-timeout", type=float, default=20.0, help="bound on the final checkpoint [s]")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("produce", help="publish a telemetry file to Kafka")
    _config_arg(p)
    p.add_argument("--input", "-i", required=True)
    p.add_argument("--rate", type=float, default=None, help="readings per second (default: max)")
    p.add_argument("--format", choices=["json", "line"], default=None,
                   help="wire format (default: the config's kafka.format)")
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("tune", help="tune dispatch settings over history with Optuna")
    _config_arg(p)
    p.add_argument("--input", "-i", required=True,
                   help="history: simulator truth.parquet, a replayed Parquet store or KPI rows, a "
                        "history frame (time, pv_kw, wind_kw, it_kw, ambient_c), or telemetry")
    p.add_argument("--trials", type=int, default=50,
                   help="trials the study should hold in total (a re-run resumes up to it)")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes on this machine")
    p.add_argument("--storage", default=_env("PUEFLOW_TUNE_STORAGE"),
                   help="Optuna storage (default sqlite:///OUT/tune.db; journal:FILE; "
                        "postgresql://… for workers on many machines; env PUEFLOW_TUNE_STORAGE)")
    p.add_argument("--study", default=None,
                   help="study name (default: [tune] study, else pueflow-SITE-<hash of [tune]>, so the "
                        "same [tune] resumes its study); reuse a name to resume it")
    p.add_argument("--out", default="pueflow-tune", help="folder for best-config.toml, report.html")
    p.add_argument("--seed", type=int, default=None, help="seed the sampler (reproducible with --jobs 1)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or tables")
    p.add_argument("--no-report", action="store_true",
                   help="only run trials (a worker joining a shared study); no validation or files")
    p.set_defaults(func=cmd_tune)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run one verb (``argv`` None: ``sys.argv``) and return its exit code.

    ``EXIT_CONFIG`` on :class:`ConfigError`, ``EXIT_ERROR`` on another :class:`PueflowError`
    (message on stderr), 130 on Ctrl-C.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except PueflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
