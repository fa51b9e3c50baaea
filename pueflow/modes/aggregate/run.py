"""Aggregate: run the stage until stopped (signals drain it), the ``aggregate`` verb."""

from __future__ import annotations

import logging
import signal
import threading

from pueflow.config.models import Config
from pueflow.connectors.ops import configure_json_logging
from pueflow.modes.aggregate.service import AggregateService

log = logging.getLogger("pueflow.aggregate")


def run_aggregate(cfg: Config, *, metrics_port: int | None = None, run: str = "",
                  max_seconds: float | None = None, stop_event: threading.Event | None = None,
                  consumer_overrides: dict | None = None, json_logs: bool = True,
                  drain_timeout_s: float = 20.0) -> int:
    """Run the aggregate stage until stopped; the ``aggregate`` verb of the CLI.

    Parameters
    ----------
    cfg : Config
        Needs ``[kafka] kpi_topic``.
    metrics_port : int, optional
        Serve ``/metrics`` and ``/health`` on this port (0 = a free one).
    run : str
        ``run`` tag on every row.
    max_seconds : float, optional
        Stop after this long [s].
    stop_event : threading.Event, optional
        Stop when set. SIGTERM/SIGINT also stop it (from the main thread): a final
        checkpoint, then exit; a second signal exits at once.
    consumer_overrides : dict, optional
        kafka-python consumer settings (e.g. ``session_timeout_ms``).
    json_logs : bool
        Configure the root logger for JSON lines on stderr.
    drain_timeout_s : float
        Bound on the final checkpoint [s].

    Returns
    -------
    int
        Fleet rows written (once per sink).
    """
    if json_logs:
        configure_json_logging()
    stop = stop_event or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        def _stop(signum, _frame):
            if stop.is_set():
                raise SystemExit(128 + signum)
            log.info("signal %s: draining", signal.Signals(signum).name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _stop)
    try:
        svc = AggregateService(cfg, run=run, metrics_port=metrics_port,
                               consumer_overrides=consumer_overrides, drain_timeout_s=drain_timeout_s)
        return svc.run(max_seconds=max_seconds, stop_event=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
