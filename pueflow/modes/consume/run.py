"""Consume: run the service until stopped (signals drain it), the ``consume`` verb."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from pueflow.config.models import Config
from pueflow.connectors.ops import configure_json_logging
from pueflow.modes.consume.service import ConsumeService, ServiceStats

log = logging.getLogger("pueflow.service")



def run_consume(cfg: Config, *, metrics_port: int | None = None, run: str = "",
                max_seconds: float | None = None, stop_event: threading.Event | None = None,
                group_id: str | None = None, consumer_overrides: dict | None = None,
                json_logs: bool = True, handle_signals: bool = True,
                **service_kwargs: Any) -> ServiceStats:
    """Run the consume service until stopped; the ``consume`` verb of the CLI.

    Parameters
    ----------
    cfg : Config
    metrics_port : int, optional
        Serve ``/metrics`` (Prometheus) and ``/health`` on this port (0 = a free one).
    run : str
        ``run`` tag on every row ("" for production).
    max_seconds : float, optional
        Stop after this long (demos, tests).
    stop_event : threading.Event, optional
        Stop when set (embedding). SIGTERM/SIGINT also stop it when called from the main
        thread (``handle_signals``); a second signal exits at once (nothing is committed
        that is not durable, so that is safe too).
    group_id : str, optional
        Overrides ``kafka.group_id``.
    consumer_overrides : dict, optional
        kafka-python consumer settings (e.g. ``session_timeout_ms``).
    json_logs : bool
        Configure the root logger for JSON lines on stderr.
    **service_kwargs
        :class:`ConsumeService` options: ``flush_interval_s``, ``drain_timeout_s`` (bound on
        the final checkpoint, default 20 s), ``max_message_bytes``, ``dispatch``, ``sinks``.

    Returns
    -------
    ServiceStats
    """
    if json_logs:
        configure_json_logging()
    if group_id:
        cfg = cfg.model_copy(deep=True)
        cfg.kafka.group_id = group_id
    stop = stop_event or threading.Event()
    previous = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        def _stop(signum, _frame):
            if stop.is_set():
                log.warning("second %s: exiting without draining", signal.Signals(signum).name)
                raise SystemExit(128 + signum)
            log.info("signal %s: draining", signal.Signals(signum).name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _stop)
    try:
        svc = ConsumeService(cfg, run=run, metrics_port=metrics_port,
                             consumer_overrides=consumer_overrides, **service_kwargs)
        return svc.run(max_seconds=max_seconds, stop_event=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


