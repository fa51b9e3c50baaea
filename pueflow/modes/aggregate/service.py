"""The aggregate stage: the KPI topic in, fleet and jurisdiction rows out, exactly once.

``pueflow consume`` processes publish every closed site window's energy totals to
``[kafka] kpi_topic`` (keyed by site); this service reads that topic in its own consumer
group (``[kafka] aggregate_group_id``), keeps a :class:`~pueflow.pipeline.fleet_book.FleetBook`
and writes ``fleet`` rows through the sovereignty-routed sinks. Its checkpoint is stage 1's:
sinks and dead letters durable -> one state record per owned KPI partition (that partition's
sites' windows, the event time and the written marks) -> offsets committed; on assignment it
restores the partitions' records and seeks to their offsets. Records it cannot use (not
JSON, unknown site, late) go to the dead-letter topic with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import orjson
from kafka import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from pueflow.config.models import Config
from pueflow.connectors import kafka as kc
from pueflow.connectors import kafka_state as ks
from pueflow.connectors.ops import (
    Health,
    RebalanceGuard,
    ServiceMetrics,
    close_service,
    serve,
)
from pueflow.connectors.sink import SinkSet, build_sinkset
from pueflow.exceptions import SinkBackpressure, SinkError, StateError
from pueflow.pipeline.fleet import TOTALS
from pueflow.pipeline.fleet_book import FleetBook
from pueflow.schema.rows import Output
from pueflow.units import parse_duration_ns

log = logging.getLogger("pueflow.aggregate")


class AggregateService:
    """Run the aggregate stage over its consumer group. Build, then :meth:`run` (blocks).

    Parameters
    ----------
    cfg : Config
        ``kafka.kpi_topic`` (required), ``aggregate_group_id``, ``kpi_deadline``,
        ``kpi_allowed_lateness``, state and dead-letter topics; sites and sinks.
    sinks : SinkSet, optional
        Default: every sink of ``cfg`` behind the sovereignty router (writes audited).
    run : str
        ``run`` tag on every row.
    metrics_port : int, optional
        Serve ``/metrics`` and ``/health`` on this port (0 = any free port).
    consumer_overrides : dict, optional
        Extra kafka-python consumer settings.
    drain_timeout_s : float
        Bound on the final checkpoint [s].
    """

    def __init__(self, cfg: Config, *, sinks: SinkSet | None = None, run: str = "",
                 metrics_port: int | None = None, consumer_overrides: dict | None = None,
                 drain_timeout_s: float = 20.0):
        k = cfg.kafka
        if not k.kpi_topic:
            msg = "[kafka] kpi_topic is not set: the aggregate stage reads it (set it for consume too)"
            raise StateError(msg)
        self.cfg = cfg
        self.kcfg = k.model_copy(update={"group_id": k.aggregate_group_id, "topics": [k.kpi_topic]})
        self.book = FleetBook(cfg, run, parse_duration_ns(k.kpi_deadline),
                              parse_duration_ns(k.kpi_allowed_lateness))
        self.ckpt_s = parse_duration_ns(cfg.pipeline.checkpoint_interval) / 1e9
        self.drain_timeout_s = drain_timeout_s
        self.metrics = ServiceMetrics()
        self.health = Health()
        self.health.info = lambda: {"partitions": sorted(f"{t.topic}/{t.partition}" for t in self.offsets),
                                    "records": self.records}
        self._http = serve(metrics_port, self.metrics, self.health) if metrics_port is not None else None
        self.sinks = sinks if sinks is not None else build_sinkset(cfg, run)
        try:
            kc.ensure_topics(self.kcfg, {k.kpi_topic: (1, {}), k.dlq_topic: (1, {}),
                                         k.state_topic: (1, ks.STATE_TOPIC_CONFIG)})
        except Exception as exc:  # noqa: BLE001 - broker may forbid admin calls; topics may exist
            log.warning("could not create the KPI/dead-letter/state topics (%s); they must exist", exc)
        self.producer = kc.build_producer(self.kcfg, max_request_size=ks.STATE_MAX_BYTES)
        self.dlq = kc.DeadLetters(self.producer, k.dlq_topic)
        self.state = ks.StateStore(self.kcfg, self.producer, self.kcfg.group_id)
        self.consumer = kc.build_consumer(self.kcfg, **(consumer_overrides or {}))
        self.offsets: dict[Any, int | None] = {}
        self.part_sites: dict[Any, set[str]] = {}
        self.records = 0
        self.rows = 0
        self.checkpoints = 0
        self._dirty = False
        self._rebalance = RebalanceGuard(log)
        self._last_ckpt = time.monotonic()

    # ------------------------------------------------------------------ loop
    def run(self, *, max_seconds: float | None = None, stop_event: threading.Event | None = None,
            max_records: int | None = None) -> int:
        """Aggregate until told to stop, then drain (a final checkpoint) and close.

        Returns
        -------
        int
            Fleet rows written (once per sink).
        """
        svc = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                svc._guard(svc._on_revoked, revoked)

            def on_partitions_assigned(self, assigned):
                svc._guard(svc._on_assigned, assigned)

        t0 = time.monotonic()
        self.consumer.subscribe(topics=list(self.kcfg.topics), listener=Listener())
        broken = False
        try:
            while not (stop_event is not None and stop_event.is_set()):
                if max_seconds is not None and time.monotonic() - t0 >= max_seconds:
                    break
                if max_records is not None and self.records >= max_records:
                    break
                self.health.beat("running")
                records = self.consumer.poll(timeout_ms=100, max_records=self.kcfg.max_poll_records)
                self._raise_fatal()
                if records:
                    self._handle(records)
                if self._dirty and time.monotonic() - self._last_ckpt >= self.ckpt_s:
                    self._checkpoint_quietly()
        except BaseException as exc:
            broken = True
            self.health.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._shutdown(broken)
        return self.rows

    def _raise_fatal(self) -> None:
        self._rebalance.raise_fatal()

    def _guard(self, fn, arg) -> None:
        self._rebalance.guard(fn, arg)

    def _handle(self, records: dict) -> None:
        for tp, rs in records.items():
            if tp not in self.offsets:
                continue
            for r in rs:
                why = self._take(r, tp)
                if why is not None:
                    self.dlq.send(r.value, why, r.topic, r.partition, r.offset, key=r.key)
                    self.metrics.dlq.labels(why.split(":", 1)[0]).inc()
            self.offsets[tp] = rs[-1].offset + 1
            self.records += len(rs)
            self.metrics.records_in.labels(tp.topic).inc(len(rs))
        self._dirty = True
        rows = self.book.ready()
        if rows is not None and rows.height:
            out = Output()
            out.fleet = rows
            self.rows += self.sinks.write(out)
            self.metrics.rows_out.labels("fleet").inc(rows.height)

    def _take(self, r: Any, tp: Any) -> str | None:
        try:
            m = orjson.loads(r.value or b"")
            site, window, key = str(m["site"]), str(m["window"]), int(m["time"])
            totals = tuple(float("nan") if m[c] is None else float(m[c]) for c in TOTALS)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return f"decode: not a KPI-topic record ({type(exc).__name__}: {exc})"
        why = self.book.add(site, window, key, totals)
        if why is None:
            self.part_sites.setdefault(tp, set()).add(site)
        return why

    # ------------------------------------------------------------------ checkpoint
    def checkpoint(self, commit: bool = True) -> None:
        """Sinks and dead letters durable -> state records written -> offsets committed."""
        t0 = time.monotonic()
        self.sinks.flush()
        self.dlq.flush()
        commits = {}
        for tp, off in self.offsets.items():
            if off is None:
                continue
            sites = sorted(self.part_sites.get(tp, ()))
            self.state.write(ks.StateRecord(tp.topic, tp.partition, off, sites, self.book.snapshot(sites)))
            commits[tp] = OffsetAndMetadata(off, "", -1)
        if commits:
            self.state.flush()
            if commit:
                try:
                    self.consumer.commit(commits)
                    self.metrics.last_commit.set(time.time())
                except Exception as exc:  # noqa: BLE001 - the state records stand by themselves
                    log.warning("offset commit failed (%s); state records stand", exc)
        self._dirty = False
        self._last_ckpt = time.monotonic()
        self.checkpoints += 1
        self.metrics.checkpoints.inc()
        self.metrics.checkpoint_s.observe(self._last_ckpt - t0)

    def _checkpoint_quietly(self, commit: bool = True) -> bool:
        try:
            self.checkpoint(commit)
        except (SinkBackpressure, SinkError, StateError) as exc:
            log.warning("checkpoint failed (%s); retrying at the next interval", exc)
            self._last_ckpt = time.monotonic()
            return False
        return True

    def _on_revoked(self, revoked) -> None:
        if set(revoked) & set(self.offsets):
            self._checkpoint_quietly(commit=False)
        self._reset()

    def _reset(self) -> None:
        self.offsets.clear()
        self.part_sites.clear()
        self.book = FleetBook(self.cfg, self.book.run, self.book.deadline_ns, self.book.lateness_ns)

    def _on_assigned(self, assigned) -> None:
        self._reset()
        recs = self.state.read([(tp.topic, tp.partition) for tp in assigned]) if assigned else {}
        for tp in assigned:
            self.offsets[tp] = None
            rec = recs.get((tp.topic, tp.partition))
            if rec is None:
                continue
            self.part_sites[tp] = set(self.book.restore(rec.state))
            self.consumer.seek(tp, rec.offset)
            self.offsets[tp] = rec.offset
            self.metrics.restores.labels("state_topic").inc()
        self.metrics.assigned.set(len(assigned))
        log.info("partitions assigned", extra={"partitions": sorted(f"{t.topic}/{t.partition}" for t in assigned)})

    def _shutdown(self, broken: bool) -> None:
        self.health.beat("draining")
        try:
            if self.offsets and not broken:
                deadline = time.monotonic() + self.drain_timeout_s
                while not self._checkpoint_quietly() and time.monotonic() < deadline:
                    time.sleep(0.5)
        finally:
            close_service(self.consumer, self.state, self.producer, self.sinks, self._http,
                          self.health)
