"""Consume: the checkpoint protocol, back-pressure, partition moves and the drain at shutdown.

A checkpoint makes the sinks durable, then writes the state records, then commits offsets.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer

import numpy as np
from kafka.structs import OffsetAndMetadata

from pueflow.connectors import kafka_state as ks
from pueflow.connectors.ops import close_service
from pueflow.exceptions import SinkBackpressure, SinkError, StateError

log = logging.getLogger("pueflow.service")


@dataclass
class Part:
    """What the service knows about one owned partition."""

    next_offset: int | None = None     # next offset to read; None until known
    sites: set[str] = field(default_factory=set)
    dirty: bool = False                # state changed since its last state record


class CheckpointMixin:
    """The durability half of :class:`~pueflow.modes.consume.service.ConsumeService`."""

    _http: ThreadingHTTPServer | None
    _unflushed_since: float | None
    _n_topic_parts: int | None

    def _guarded(self, fn) -> bool:
        """Run a flush/checkpoint; on sink trouble pause the input instead of failing."""
        try:
            fn()
        except SinkBackpressure as exc:
            self._pause(exc.retry_after, str(exc))
            return False
        except (SinkError, StateError) as exc:
            self._pause(None, str(exc))
            return False
        return True

    def _flush_sinks(self) -> None:
        self._write_rows()
        self.sinks.flush()
        done = time.monotonic()
        for t, k in self._emits:
            lat = done - t
            for _ in range(min(k, 1000)):
                self.metrics.close_latency.observe(lat)
            self.stats.latencies_s.append(lat)
        if len(self.stats.latencies_s) > 100_000:
            del self.stats.latencies_s[:50_000]
        self._emits.clear()
        self._unflushed_since = None

    def checkpoint(self, commit: bool = True) -> None:
        """Sinks and dead letters durable -> state records written -> offsets committed.

        ``commit=False`` inside rebalance callbacks: they run on kafka-python's IO thread,
        which cannot block on its own consumer. The state records alone are restart points
        (each names its offset), so the next owner loses nothing; the committed offset,
        used for lag monitoring, catches up at the next checkpoint.
        """
        if self._broken:
            msg = "not checkpointing: the service failed mid-poll; the last checkpoint stands"
            raise StateError(msg)
        t0 = time.monotonic()
        self._flush_sinks()
        self.dlq.flush()
        if self.kpi_out is not None:
            self.kpi_out.flush()
        commits = {}
        for tp, part in self.owned.items():
            if not part.dirty or part.next_offset is None:
                continue
            sites = sorted(part.sites)
            disp = self.pipeline.dispatcher
            rec = ks.StateRecord(tp.topic, tp.partition, part.next_offset, sites,
                                 self.pipeline.snapshot(sites),
                                 dispatch=disp.snapshot(sites) if disp is not None else b"")
            self.state.write(rec)
            self.last_state[tp] = rec
            commits[tp] = OffsetAndMetadata(part.next_offset, "", -1)
        if commits:
            self.state.flush()
        if commits and commit:
            try:
                self.consumer.commit(commits)
                self.metrics.last_commit.set(time.time())
            except Exception as exc:  # noqa: BLE001 - e.g. CommitFailedError mid-rebalance
                # the state records are written, and each is a valid restart point by itself
                log.warning("offset commit failed (%s); state records stand", exc)
        for tp in commits:
            self.owned[tp].dirty = False
        self._since_ckpt = 0
        self._last_ckpt = time.monotonic()
        self.stats.checkpoints += 1
        self.metrics.checkpoints.inc()
        self.metrics.checkpoint_s.observe(self._last_ckpt - t0)

    def _pause(self, retry_after: float | None, why: str) -> None:
        delay = retry_after if retry_after is not None else self.backoff_s
        self.backoff_s = min(max(self.backoff_s * 2, delay), 30.0)
        self.retry_at = time.monotonic() + delay
        if not self.paused:
            self.paused = True
            self._pause_start = time.monotonic()
            self.stats.backpressure_events += 1
            self.metrics.backpressure.set(1)
            parts = list(self.consumer.assignment())
            if parts:
                self.consumer.pause(*parts)
            log.warning("pausing input: %s", why, extra={"retry_in_s": round(delay, 2)})

    def _try_resume(self) -> None:
        try:
            self.checkpoint()
        except (SinkError, StateError) as exc:
            self._pause(getattr(exc, "retry_after", None), str(exc))
            return
        self.paused = False
        self.backoff_s = 0.5
        self.metrics.backpressure.set(0)
        self.metrics.paused_s.inc(time.monotonic() - self._pause_start)
        self.consumer.resume(*list(self.consumer.assignment()))
        log.info("sinks recovered; input resumed")

    # ------------------------------------------------------------------ rebalance
    def _on_revoked(self, revoked) -> None:
        revoked = set(revoked)
        if not revoked:
            return
        log.info("partitions revoked", extra={"partitions": _names(revoked)})
        # this runs on the consumer's IO thread and blocks its heartbeats: stay well inside
        # the session timeout; if sinks are down, the next owner re-reads from the last
        # checkpoint instead
        budget = 1.0 if self.paused else min(self.drain_timeout_s, 0.4 * self.session_s)
        ok = self._checkpoint_within(budget, commit=False)
        if not ok:
            log.warning("revoke checkpoint incomplete; the partitions resume from their last "
                        "state records")
        # our latest state records are the newest in the topic (we were the only writer):
        # if a partition comes straight back, restore from memory instead of re-reading
        self.kept = {tp: self.last_state[tp] for tp in revoked if tp in self.last_state}
        self._drop_all()

    def _on_lost(self, lost) -> None:
        """Evicted from the group: another member may own these already; write nothing."""
        log.warning("partitions lost (evicted from the group)", extra={"partitions": _names(lost)})
        self.kept = {}
        self._drop_all()

    def _drop_all(self) -> None:
        self.owned.clear()
        self.site_owner.clear()
        self.last_state.clear()
        self.quiet_since[:] = np.nan
        self._n_topic_parts = None
        self.pipeline = self._new_pipeline()
        self.metrics.assigned.set(0)

    def _on_assigned(self, assigned) -> None:
        assigned = set(assigned)
        self._drop_all()
        need = [tp for tp in assigned if tp not in self.kept]
        from_topic = self.state.read([(tp.topic, tp.partition) for tp in need]) if need else {}
        now = self.idle_clock()
        for tp in assigned:
            rec = self.kept.get(tp)
            source = "memory"
            if rec is None:
                rec, source = from_topic.get((tp.topic, tp.partition)), "state_topic"
            part = self.owned[tp] = Part()
            if rec is None:
                log.info("no state record for %s/%d: starting at its committed offset (or "
                         "the reset policy) with empty state", tp.topic, tp.partition)
                continue
            restored = self.pipeline.restore(rec.state)
            if self.pipeline.dispatcher is not None:
                self.pipeline.dispatcher.restore(rec.dispatch)
            self.consumer.seek(tp, rec.offset)
            part.next_offset = rec.offset
            part.sites = set(restored)
            self.last_state[tp] = rec
            for sid in restored:
                s = self.site_index[sid]
                self.site_owner[s] = tp
                self.quiet_since[s] = now
            self.stats.restores += 1
            self.metrics.restores.labels(source).inc()
        self.kept = {}
        self.metrics.assigned.set(len(assigned))
        self._n_topic_parts = None
        if self.paused and assigned:
            self.consumer.pause(*assigned)
        log.info("partitions assigned", extra={"partitions": _names(assigned)})

    def _checkpoint_within(self, budget_s: float, commit: bool = True) -> bool:
        if self._broken:
            return False
        deadline = time.monotonic() + budget_s
        while True:
            try:
                self.checkpoint(commit=commit)
            except SinkBackpressure as exc:
                wait = min(exc.retry_after or 0.5, deadline - time.monotonic())
            except (SinkError, StateError) as exc:
                log.warning("checkpoint failed: %s", exc)
                wait = min(0.5, deadline - time.monotonic())
            else:
                return True
            if wait <= 0:
                log.warning("checkpoint did not complete within %.1f s; not committing "
                            "(the next owner re-reads from the last checkpoint)", budget_s)
                return False
            time.sleep(wait)

    # ------------------------------------------------------------------ shutdown
    def _shutdown(self) -> None:
        self.health.beat("draining")
        try:
            if self.owned and not self._broken:
                self._checkpoint_within(self.drain_timeout_s)
        finally:
            if self._unwritten:  # rows a failed drain did not hand over: the sinks' close decides
                try:
                    self._write_rows()
                except Exception:  # noqa: BLE001 - best effort at exit, as close_service is
                    log.exception("could not hand the last rows to the sinks")
            close_service(self.consumer, self.state, self.producer, self.sinks, self._http,
                          self.health)
            log.info("stopped", extra={"records": self.stats.records, "rows": self.stats.rows,
                                       "dlq": self.stats.dlq})

    def close_http(self) -> None:
        """Stop the metrics and health HTTP server, if one runs; safe to call again."""
        if self._http is not None:
            self._http.shutdown()
            self._http = None



def _names(tps) -> list[str]:
    return sorted(f"{tp.topic}/{tp.partition}" for tp in tps)


