"""Command line: ``pueflow VERB``. Orchestration only: no arithmetic, no I/O formats here.

Every verb and flag is declared here; flags fall back to ``PUEFLOW_*`` environment variables,
named in ``--help``. The verbs themselves are in :mod:`pueflow.cli.verbs`.
"""

from __future__ import annotations

import argparse
import sys

from pueflow.cli.verbs import (
    EXIT_CONFIG,
    EXIT_ERROR,
    _config_arg,
    _env,
    _env_num,
    cmd_aggregate,
    cmd_check_config,
    cmd_consume,
    cmd_dashboard,
    cmd_demo,
    cmd_produce,
    cmd_replay,
    cmd_report,
    cmd_simulate,
    cmd_tune,
)
from pueflow.exceptions import ConfigError, PueflowError


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

