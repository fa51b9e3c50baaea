"""The consume service: Kafka in, the shared core, sinks out, exactly-once results.

Loop: poll -> decode (vectorised per poll) -> :meth:`Pipeline.process` -> sinks buffer the
rows -> sinks flushed every ``flush_interval_s`` (window-close latency) -> every
``checkpoint_interval`` or ``checkpoint_records``: sinks and dead letters made durable ->
one state record per owned partition (the state of that partition's sites and the offset
it belongs to) written to the state topic -> offsets committed. Nothing is committed past
a row that is not durable, so a crash anywhere re-reads from a checkpoint whose rows are
all written, and idempotent sinks turn the re-emitted rows into no-ops.

Partition moves: on revoke the service checkpoints first (bounded); on assignment it builds
a fresh core and restores exactly the assigned partitions' state (from its own revoke
checkpoint when it kept one, else the state topic) and seeks each partition to its record's
offset. Sink trouble pauses every partition, waits (Retry-After / backoff) and retries;
input resumes only after the rows are written.

Quiet feeds: a site whose partition is caught up and unpaused and that delivered nothing for
``pipeline.idle_timeout`` has its watermark moved to ``max event time - grace + quiet
time``; time spent paused or behind never counts as quiet, so a store outage or a backlog
cannot declare data late.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kafka import ConsumerRebalanceListener

from pueflow.config.models import Config
from pueflow.connectors import kafka as kc
from pueflow.connectors import kafka_batches, wire
from pueflow.connectors import kafka_state as ks
from pueflow.connectors.ops import Health, RebalanceGuard, ServiceMetrics, serve
from pueflow.connectors.sink import SinkSet, build_sinkset
from pueflow.modes.consume.checkpoint import CheckpointMixin, Part
from pueflow.modes.consume.records import RecordsMixin
from pueflow.optimizers.dispatcher import Dispatcher
from pueflow.pipeline.core import Pipeline
from pueflow.schema.batch import Batch
from pueflow.schema.rows import Output
from pueflow.units import parse_duration_ns

log = logging.getLogger("pueflow.service")


@dataclass
class ServiceStats:
    """Counters of one :meth:`ConsumeService.run`, returned when it ends.

    Attributes
    ----------
    records : int
        Kafka records consumed.
    samples : int
        Readings decoded from them.
    rows : int
        Output rows handed to sinks (once per sink).
    dlq : int
        Records sent to the dead-letter topic.
    checkpoints : int
        Checkpoints completed.
    restores : int
        Partitions whose state was restored on assignment.
    backpressure_events : int
        Times input was paused for a sink.
    seconds : float
        Wall time of the run [s].
    latencies_s : list of float
        Window-close latencies [s], from a row's emission to its flush in every sink; only
        the newest 50 000 to 100 000 are kept.
    """

    records: int = 0
    samples: int = 0
    rows: int = 0
    dlq: int = 0
    checkpoints: int = 0
    restores: int = 0
    backpressure_events: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)


class ConsumeService(RecordsMixin, CheckpointMixin):
    """Run the pipeline over a consumer group. Build, then :meth:`run` (blocks).

    Parameters
    ----------
    cfg : Config
        ``kafka`` (topics, group, format, DLQ and state topics, security), ``pipeline``
        (windows, grace, idle_timeout, checkpoint_interval, checkpoint_records), sinks.
    sinks : SinkSet, optional
        Default: every sink of ``cfg`` behind the sovereignty router.
    run : str
        ``run`` tag on every row ("" for production).
    metrics_port : int, optional
        Serve ``/metrics`` and ``/health`` on this port (0 = any free port).
    consumer_overrides : dict, optional
        Extra kafka-python consumer settings (e.g. ``session_timeout_ms``).
    flush_interval_s : float
        Longest time an emitted row waits in a sink buffer [s].
    drain_timeout_s : float
        Bound on the final checkpoint at shutdown and on the checkpoint at revoke [s].
    max_message_bytes : int
        Larger records go to the dead-letter topic undecoded.
    dispatch : {"mpc", "rule"}, optional
        Also compute dispatch setpoints. The dispatcher's state (input history, carried plant
        estimate, last LP basis) is checkpointed with its partition's sites, so a restarted
        or rebalanced consumer publishes the same setpoints as an uninterrupted one.
    idle_clock : callable
        Seconds clock of the quiet-feed rule (tests advance it by hand).
    """

    def __init__(self, cfg: Config, *, sinks: SinkSet | None = None, run: str = "",
                 metrics_port: int | None = None, consumer_overrides: dict | None = None,
                 flush_interval_s: float = 0.25, drain_timeout_s: float = 20.0,
                 max_message_bytes: int = 1_000_000, dispatch: str | None = None,
                 idle_clock: Any = time.monotonic):
        self.cfg = cfg
        self.kcfg = cfg.kafka
        self.run_tag = run
        if dispatch == "oracle":
            msg = "dispatch policy 'oracle' needs the whole period; use it with replay, not consume"
            raise ValueError(msg)
        self.dispatch = dispatch
        self.idle_clock = idle_clock  # wall clock of the quiet-feed rule (tests move it)
        pc = cfg.pipeline
        self.idle_s = parse_duration_ns(pc.idle_timeout) / 1e9
        self.grace_ns = parse_duration_ns(pc.grace)
        self.ckpt_s = parse_duration_ns(pc.checkpoint_interval) / 1e9
        self.ckpt_records = pc.checkpoint_records
        self.flush_interval_s = flush_interval_s
        self.drain_timeout_s = drain_timeout_s
        self.max_message_bytes = max_message_bytes
        self.site_ids = [s.id for s in cfg.sites]
        self.site_index = {s: i for i, s in enumerate(self.site_ids)}
        self.metrics = ServiceMetrics()
        self.health = Health()
        self.health.info = self._health_info
        self._http = serve(metrics_port, self.metrics, self.health) if metrics_port is not None else None
        if sinks is None:
            sinks = build_sinkset(cfg, run)
        self.sinks = sinks
        for _, sink in getattr(sinks, "pairs", []):
            if hasattr(sink, "on_retry"):
                sink.on_retry = lambda name: self.metrics.sink_retries.labels(name).inc()
        self._ensure_topics()
        self.producer = kc.build_producer(self.kcfg, max_request_size=ks.STATE_MAX_BYTES)
        self.dlq = kc.DeadLetters(self.producer, self.kcfg.dlq_topic, max_message_bytes)
        #: closed site windows go to the KPI topic for the aggregate stage (None: not configured)
        self.kpi_out = (kc.TopicWriter(self.producer, self.kcfg.kpi_topic)
                        if self.kcfg.kpi_topic else None)
        self.kpi_audit = None  # AuditLog of site windows sent to another jurisdiction's KPI topic
        self.state = ks.StateStore(self.kcfg, self.producer, self.kcfg.group_id)
        copts = kc.consumer_options(self.kcfg, **(consumer_overrides or {}))
        self.session_s = copts["session_timeout_ms"] / 1000
        self.consumer = kc.build_consumer(self.kcfg, **(consumer_overrides or {}))
        #: whether polls return record blocks (numba-parsed batches) besides ConsumerRecords
        self.fast_batches = self.kcfg.fast_batches and kafka_batches.install(self.consumer)
        self.pipeline = self._new_pipeline()
        self.owned: dict[Any, Part] = {}
        self.site_owner: dict[int, Any] = {}
        self.quiet_since = np.full(len(cfg.sites), np.nan)
        self.last_state: dict[Any, ks.StateRecord] = {}
        self.kept: dict[Any, ks.StateRecord] = {}
        self.stats = ServiceStats()
        self.paused = False
        self.retry_at = 0.0
        self.backoff_s = 0.5
        self._rebalance = RebalanceGuard(log)
        self._broken = False
        self._unflushed_since: float | None = None
        self._emits: list[tuple[float, int]] = []
        self._unwritten: list[Output] = []  # emitted rows not yet handed to the sinks
        self._pause_start = 0.0
        self._since_ckpt = 0
        self._last_ckpt = time.monotonic()
        self._last_idle = -1e18
        self._n_topic_parts: int | None = None
        self._decode = self._decoder()
        self._warm_up()

    # ------------------------------------------------------------------ setup
    def _ensure_topics(self) -> None:
        k = self.kcfg
        try:
            topics = {k.dlq_topic: (1, {}), k.state_topic: (1, ks.STATE_TOPIC_CONFIG)}
            if k.kpi_topic:
                topics[k.kpi_topic] = (1, {})
            kc.ensure_topics(k, topics)
        except Exception as exc:  # noqa: BLE001 - broker may forbid admin calls; topics may exist
            log.warning("could not create the dead-letter/state topics (%s); they must exist", exc)

    def _new_pipeline(self) -> Pipeline:
        dispatcher = None
        if self.dispatch:
            dispatcher = Dispatcher(self.cfg, policy=self.dispatch)
        p = Pipeline(self.cfg, run=self.run_tag, dispatcher=dispatcher)
        if self.kcfg.kpi_topic:
            p.fleet.tap = []
        return p

    def _warm_up(self) -> None:
        """Run a few readings through a throwaway core so numba kernels and lazy imports load now.

        Otherwise they would load in the first poll after a partition assignment, delaying
        the first rows by ~2 s and, inside a rebalance, the whole group. A config with no
        power meter skips the warm-up.
        """
        try:
            site = self.cfg.sites[0]
            rule = next(m for m in site.meters if m.kind == "power")
        except (IndexError, StopIteration):
            return
        p = Pipeline(self.cfg, run=self.run_tag)
        dev = rule.device.replace("*", "warm").replace("?", "w")
        pt = rule.point.replace("*", "warm").replace("?", "w")
        sid = p.registry.id(site.id, dev, pt)
        step = 10 * 10**9
        n = int((3 * p.base_ns + p.grace_ns) // step) + 2
        t = 86400 * 10**9 + np.arange(n, dtype=np.int64) * step
        p.process(Batch(t, np.full(n, sid, np.int32), np.ones(n)))
        p.finalize()
        self._decode(np.frombuffer(b"{}", np.uint8), np.array([2], np.int64), p.registry)

    def _decoder(self):
        if self.kcfg.format == "line":
            return lambda buf, ends, reg: wire.decode_line_buffer(buf, ends, reg)
        unit = self.kcfg.timestamp_unit
        return lambda buf, ends, reg: wire.decode_json_buffer(buf, ends, reg, unit)

    def _health_info(self) -> dict[str, Any]:
        return {"partitions": sorted(f"{tp.topic}/{tp.partition}" for tp in self.owned),
                "paused": self.paused, "fast_batches": self.fast_batches,
                "records": self.stats.records,
                "checkpoints": self.stats.checkpoints}

    # ------------------------------------------------------------------ run
    def run(self, *, max_seconds: float | None = None, stop_event: threading.Event | None = None,
            max_records: int | None = None) -> ServiceStats:
        """Consume until told to stop, then drain and close.

        The drain is a final checkpoint, bounded by ``drain_timeout_s``. On any exception the
        state is marked broken (not checkpointed), ``/health`` reports the error, the
        clients are closed and the exception propagates.

        Parameters
        ----------
        max_seconds : float, optional
            Stop after this wall time [s].
        stop_event : threading.Event, optional
            Stop once it is set (checked before every poll).
        max_records : int, optional
            Stop once this many records have been read.

        Returns
        -------
        ServiceStats
            This service's counters (the same object on every call).
        """
        svc = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                svc._guard(svc._on_revoked, revoked)

            def on_partitions_assigned(self, assigned):
                svc._guard(svc._on_assigned, assigned)

            def on_partitions_lost(self, lost):
                svc._guard(svc._on_lost, lost)

        t0 = time.monotonic()
        # config, kernels and warm-up objects live as long as the process: keep them out
        # of the cyclic collector's full passes
        gc.collect()
        gc.freeze()
        self.consumer.subscribe(topics=list(self.kcfg.topics), listener=Listener())
        log.info("consuming", extra={"topics": self.kcfg.topics, "group": self.kcfg.group_id})
        try:
            while True:
                now = time.monotonic()
                if stop_event is not None and stop_event.is_set():
                    break
                if max_seconds is not None and now - t0 >= max_seconds:
                    break
                if max_records is not None and self.stats.records >= max_records:
                    break
                self._step(now)
        except BaseException as exc:
            # the core may hold a half-processed poll: its state must not be checkpointed
            self._broken = True
            self.health.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.stats.seconds = time.monotonic() - t0
            self._shutdown()
        return self.stats

    def _guard(self, fn, arg) -> None:
        self._rebalance.guard(fn, arg)

    def _step(self, now: float) -> None:
        self.health.beat("paused" if self.paused else "running")
        if self.paused:
            self.consumer.poll(timeout_ms=100)  # keeps the membership; returns nothing
            # a paused feed is not a quiet one (and its high watermark is going stale)
            self.quiet_since[~np.isnan(self.quiet_since)] = self.idle_clock()
            self._raise_fatal()
            if time.monotonic() >= self.retry_at:
                self._try_resume()
            return
        records = self.consumer.poll(timeout_ms=100, max_records=self.kcfg.max_poll_records)
        self._raise_fatal()
        if records:
            self._handle(records, time.monotonic())
        now = time.monotonic()
        qnow = self.idle_clock()
        if qnow - self._last_idle >= min(0.5, self.idle_s / 4):
            self._last_idle = qnow
            self._idle(qnow)
        if self._unflushed_since is not None and now - self._unflushed_since >= self.flush_interval_s:
            self._guarded(self._flush_sinks)
        if (now - self._last_ckpt >= self.ckpt_s or self._since_ckpt >= self.ckpt_records):
            self._guarded(self.checkpoint)

    def _raise_fatal(self) -> None:
        self._rebalance.raise_fatal()

