"""Operations endpoints of the consume service: Prometheus metrics, a health check, JSON logs.

One :class:`ServiceMetrics` per service instance (its own ``CollectorRegistry``, so several
services can live in one process, e.g. in tests). :func:`serve` starts a small threaded
HTTP server answering ``/metrics`` (Prometheus text format) and ``/health`` (JSON; 200 when
the loop is alive, 503 when it is stuck or failed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics:
    """The service's Prometheus metrics (names prefixed ``pueflow_``)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        self.records_in = Counter("pueflow_records_in", "Kafka records consumed", ["topic"],
                                  registry=r)
        self.samples_in = Counter("pueflow_samples_in", "Readings decoded from records",
                                  registry=r)
        self.rows_out = Counter("pueflow_rows_out", "Rows handed to sinks", ["measurement"],
                                registry=r)
        self.dlq = Counter("pueflow_dlq_records", "Records sent to the dead-letter topic",
                           ["reason"], registry=r)
        self.lag = Gauge("pueflow_partition_lag", "High watermark minus next offset to read",
                         ["topic", "partition"], registry=r)
        self.close_latency = Histogram(
            "pueflow_window_close_latency_seconds",
            "From a window's row being emitted (its window closed) to the row being durable "
            "in every sink", buckets=LATENCY_BUCKETS, registry=r)
        self.sink_retries = Counter("pueflow_sink_retries", "Sink write attempts retried",
                                    ["sink"], registry=r)
        self.backpressure = Gauge("pueflow_backpressure", "1 while input is paused for a sink",
                                  registry=r)
        self.paused_s = Counter("pueflow_paused_seconds", "Time spent paused for sinks",
                                registry=r)
        self.checkpoints = Counter("pueflow_checkpoints", "Checkpoints completed", registry=r)
        self.checkpoint_s = Histogram("pueflow_checkpoint_seconds", "Checkpoint duration",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.assigned = Gauge("pueflow_assigned_partitions", "Partitions owned", registry=r)
        self.restores = Counter("pueflow_state_restores", "Partitions restored from state",
                                ["source"], registry=r)
        self.last_commit = Gauge("pueflow_last_commit_timestamp_seconds",
                                 "Wall time of the last offset commit", registry=r)

    def text(self) -> bytes:
        """Return every metric of this instance in the Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class Health:
    """What ``/health`` reports; the loop calls :meth:`beat` every iteration."""

    def __init__(self, stuck_after_s: float = 60.0):
        self.stuck_after_s = stuck_after_s
        self.last_beat = time.monotonic()
        self.state = "starting"
        self.error: str | None = None
        self.info: Callable[[], dict[str, Any]] = dict

    def beat(self, state: str) -> None:
        """Record that the loop is alive, in ``state`` (e.g. ``"running"``, ``"stopped"``)."""
        self.last_beat = time.monotonic()
        self.state = state

    def report(self) -> tuple[int, dict[str, Any]]:
        """Return the HTTP status and JSON body of ``/health``.

        Returns
        -------
        status : int
            200 when no error is set and the last beat is younger than ``stuck_after_s`` (or
            the state is ``"stopped"``), else 503.
        body : dict of str to Any
            ``state``, ``loop_age_s`` [s], the fields of ``info()`` and ``error`` when set.
        """
        age = time.monotonic() - self.last_beat
        body: dict[str, Any] = {"state": self.state, "loop_age_s": round(age, 3), **self.info()}
        if self.error:
            body["error"] = self.error
        ok = self.error is None and (age < self.stuck_after_s or self.state == "stopped")
        return (200 if ok else 503), body


def serve(port: int, metrics: ServiceMetrics, health: Health, host: str = "0.0.0.0"
          ) -> ThreadingHTTPServer:
    """Serve ``/metrics`` and ``/health`` on ``host:port`` from a daemon thread.

    ``port = 0`` picks a free port (read it back from ``server.server_address``).
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                status, body, ctype = 200, metrics.text(), "text/plain; version=0.0.4"
            elif path in ("/health", "/healthz"):
                status, doc = health.report()
                body, ctype = orjson.dumps(doc), "application/json"
            else:
                status, body, ctype = 404, b"try /metrics or /health\n", "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="pueflow-metrics", daemon=True).start()
    return server


# --------------------------------------------------------------------------- logs

_STD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts (UTC ISO), level, logger, msg, and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Format one record as one JSON line; values JSON cannot hold are written with ``str``."""
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STD and not k.startswith("_"):
                doc[k] = v
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure_json_logging(level: int | str = logging.INFO) -> None:
    """Route the root logger to stderr as JSON lines (idempotent)."""
    root = logging.getLogger()
    for h in root.handlers:
        if isinstance(h.formatter, JsonFormatter):
            return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root.handlers = [handler]
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(logging.WARNING)


def close_service(consumer: Any, state: Any, producer: Any, sinks: Any,
                  http: ThreadingHTTPServer | None, health: Health) -> None:
    """Close a stage's clients and sinks at exit, each best effort, then its HTTP endpoint.

    A failure to close one is logged and the rest are still closed; health ends "stopped".
    """
    for close in (lambda: consumer.close(autocommit=False), state.close,
                  lambda: producer.close(timeout=5), sinks.close):
        try:
            close()
        except Exception:  # noqa: BLE001 - best effort at exit
            logging.getLogger(__name__).exception("error while closing")
    if http is not None:
        http.shutdown()
    health.beat("stopped")


class RebalanceGuard:
    """The first exception of a rebalance callback, kept for the poll loop to raise.

    kafka-python logs and swallows exceptions of a consumer-group listener; a streaming
    stage runs its callbacks through :meth:`guard` and calls :meth:`raise_fatal` in its loop.
    """

    def __init__(self, log: logging.Logger):
        self.log = log
        self.fatal: BaseException | None = None

    def guard(self, fn: Any, arg: Any) -> None:
        """Call ``fn(arg)``; keep its exception (the first one) instead of raising it here."""
        try:
            fn(arg)
        except BaseException as exc:
            self.log.exception("rebalance callback failed")
            if self.fatal is None:
                self.fatal = exc

    def raise_fatal(self) -> None:
        """Raise the kept exception, once."""
        if self.fatal is not None:
            exc, self.fatal = self.fatal, None
            raise exc
