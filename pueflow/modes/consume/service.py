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
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pueflow.config.models import Config, parse_duration_ns
from pueflow.connectors import kafka as kc
from pueflow.connectors.ops import Health, ServiceMetrics, serve
from pueflow.exceptions import PueflowError, SinkBackpressure, SinkError, StateError
from pueflow.pipeline.core import NO_TIME, Output, Pipeline
from pueflow.schema.batch import Batch

if TYPE_CHECKING:
    from pueflow.modes.replay import SinkSet

log = logging.getLogger("pueflow.service")


@dataclass
class _Part:
    """What the service knows about one owned partition."""

    next_offset: int | None = None     # next offset to read; None until known
    sites: set[str] = field(default_factory=set)
    dirty: bool = False                # state changed since its last state record


@dataclass
class ServiceStats:
    records: int = 0
    samples: int = 0
    rows: int = 0
    dlq: int = 0
    checkpoints: int = 0
    restores: int = 0
    backpressure_events: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)


class ConsumeService:
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
        Also compute dispatch setpoints (a fresh dispatcher per assignment; its state is not
        part of the checkpoint yet, so after a move it re-learns from new windows).
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
            from pueflow.modes.replay import build_sinkset

            sinks = build_sinkset(cfg, run)
        self.sinks = sinks
        for _, sink in getattr(sinks, "pairs", []):
            if hasattr(sink, "on_retry"):
                sink.on_retry = lambda name: self.metrics.sink_retries.labels(name).inc()
        self._ensure_topics()
        self.producer = kc.build_producer(self.kcfg, max_request_size=kc.STATE_MAX_BYTES)
        self.dlq = kc.DeadLetters(self.producer, self.kcfg.dlq_topic, max_message_bytes)
        self.state = kc.StateStore(self.kcfg, self.producer, self.kcfg.group_id)
        copts = kc.consumer_options(self.kcfg, **(consumer_overrides or {}))
        self.session_s = copts["session_timeout_ms"] / 1000
        self.consumer = kc.build_consumer(self.kcfg, **(consumer_overrides or {}))
        self.pipeline = self._new_pipeline()
        self.owned: dict[Any, _Part] = {}
        self.site_owner: dict[int, Any] = {}
        self.quiet_since = np.full(len(cfg.sites), np.nan)
        self.last_state: dict[Any, kc.StateRecord] = {}
        self.kept: dict[Any, kc.StateRecord] = {}
        self.stats = ServiceStats()
        self.paused = False
        self.retry_at = 0.0
        self.backoff_s = 0.5
        self._fatal: BaseException | None = None
        self._broken = False
        self._unflushed_since: float | None = None
        self._emits: list[tuple[float, int]] = []
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
            kc.ensure_topics(k, {k.dlq_topic: (1, {}),
                                 k.state_topic: (1, kc.STATE_TOPIC_CONFIG)})
        except Exception as exc:  # noqa: BLE001 - broker may forbid admin calls; topics may exist
            log.warning("could not create the dead-letter/state topics (%s); they must exist", exc)

    def _new_pipeline(self) -> Pipeline:
        dispatcher = None
        if self.dispatch:
            from pueflow.optimizers.dispatcher import Dispatcher

            dispatcher = Dispatcher(self.cfg, policy=self.dispatch)
        return Pipeline(self.cfg, run=self.run_tag, dispatcher=dispatcher)

    def _warm_up(self) -> None:
        """Run a few readings through a throwaway core so numba kernels and lazy imports
        load now, not in the first poll after a partition assignment (it would delay the
        first rows by ~2 s and, inside a rebalance, the whole group)."""
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
        self._decode([b"{}"], p.registry)

    def _decoder(self):
        from pueflow.connectors import wire

        if self.kcfg.format == "line":
            return lambda payloads, reg: wire.decode_line(payloads, reg)
        unit = self.kcfg.timestamp_unit
        return lambda payloads, reg: wire.decode_json(payloads, reg, unit)

    def _health_info(self) -> dict[str, Any]:
        return {"partitions": sorted(f"{tp.topic}/{tp.partition}" for tp in self.owned),
                "paused": self.paused, "records": self.stats.records,
                "checkpoints": self.stats.checkpoints}

    # ------------------------------------------------------------------ run
    def run(self, *, max_seconds: float | None = None, stop_event: threading.Event | None = None,
            max_records: int | None = None) -> ServiceStats:
        """Consume until ``stop_event`` is set, ``max_seconds`` pass or ``max_records`` are
        read; then drain (final checkpoint, bounded by ``drain_timeout_s``) and close."""
        from kafka import ConsumerRebalanceListener

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
        """kafka-python swallows listener exceptions; keep the first so the loop raises it."""
        try:
            fn(arg)
        except BaseException as exc:
            log.exception("rebalance callback failed")
            if self._fatal is None:
                self._fatal = exc

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
        if self._fatal is not None:
            exc, self._fatal = self._fatal, None
            raise exc

    # ------------------------------------------------------------------ records
    def _handle(self, records: dict, now: float) -> None:
        recs: list[Any] = []
        tp_list = list(records)
        counts: list[int] = []
        for tp in tp_list:
            rs = records[tp]
            part = self.owned.get(tp)
            if part is None:  # revoked while in flight
                counts.append(0)
                continue
            values = [r.value for r in rs]
            if None in values or max(map(len, values)) > self.max_message_bytes:
                rs = self._screen_records(rs)
            recs.extend(rs)
            counts.append(len(rs))
            n = len(records[tp])
            part.next_offset = records[tp][-1].offset + 1
            part.dirty = True
            self.metrics.records_in.labels(tp.topic).inc(n)
            self.stats.records += n
            self._since_ckpt += n
        if not recs:
            return
        payloads = [r.value for r in recs]
        tp_of = np.repeat(np.arange(len(tp_list), dtype=np.int32), counts)
        reg = self.pipeline.registry
        dec = self._decode(payloads, reg)
        out = self.pipeline.process(dec.batch)
        n = len(dec.batch)
        self.stats.samples += n
        self.metrics.samples_in.inc(n)
        self._track_sites(dec, tp_of, tp_list)
        self._dead_letters(dec, out, recs)
        self._emit(out, now)

    def _screen_records(self, rs: list) -> list:
        """Records worth decoding; empty and oversized ones go to the dead letters."""
        keep = []
        limit = self.max_message_bytes
        for r in rs:
            v = r.value
            if v is None:
                self._dead(r, "empty record (no value)", "empty")
            elif len(v) > limit:
                self._dead(r, f"record of {len(v)} bytes exceeds max_message_bytes={limit}",
                           "oversized")
            else:
                keep.append(r)
        return keep

    def _track_sites(self, dec, tp_of: np.ndarray, tp_list: list) -> None:
        """Which partition carries which site (a partition's state is its sites' state)."""
        if not len(dec.batch):
            return
        now = self.idle_clock()
        site = self.pipeline.registry.site[dec.batch.series]
        n_sites = len(self.site_ids)
        key = tp_of[dec.origin] * n_sites + site  # int32: partitions x sites is small
        seen = np.bincount(key[site >= 0], minlength=len(tp_list) * n_sites)
        for k in np.flatnonzero(seen).tolist():
            j, s = divmod(k, n_sites)
            tp = tp_list[j]
            self.quiet_since[s] = now
            owner = self.site_owner.get(s)
            if owner is None:
                self.site_owner[s] = tp
                self.owned[tp].sites.add(self.site_ids[s])
            elif owner != tp:
                log.warning("site %s arrives on %s/%d and %s/%d; key topics by site so each "
                            "site lives in one partition", self.site_ids[s], tp.topic,
                            tp.partition, owner.topic, owner.partition)

    def _dead_letters(self, dec, out: Output, recs: list) -> None:
        reasons: dict[int, list[str]] = defaultdict(list)
        for i, why in dec.errors:
            reasons[i].append(why)
        if len(out.rejected_index):
            keys = self.pipeline.registry.keys
            b = dec.batch
            pay = dec.origin[out.rejected_index]
            for p, ri, why in zip(pay.tolist(), out.rejected_index.tolist(),
                                  out.rejected_reason, strict=True):
                s = int(b.series[ri])
                k = keys[s] if 0 <= s < len(keys) else ("?", "?", "?")
                reasons[p].append(f"{why}: {k[0]}/{k[1]}/{k[2]} at {int(b.time_ns[ri])} ns")
        for p, whys in reasons.items():
            self._dead(recs[p], "; ".join(_fold(whys)), _kind(whys[0]))

    def _dead(self, r: Any, reason: str, kind: str) -> None:
        self.dlq.send(r.value, reason, r.topic, r.partition, r.offset, key=r.key)
        self.metrics.dlq.labels(kind).inc()
        self.stats.dlq += 1

    def _emit(self, out: Output, now: float) -> None:
        if out.fleet is not None and not self._owns_everything():
            out.fleet = None  # a fleet aggregate needs every site; a partial one would overwrite
        frames = out.frames()
        if not frames:
            return
        n = self.sinks.write(out)
        for m, df in frames.items():
            self.metrics.rows_out.labels(m).inc(df.height)
        self.stats.rows += n
        if out.kpi is not None and out.kpi.height:
            self._emits.append((now, out.kpi.height))
        if self._unflushed_since is None:
            self._unflushed_since = now

    def _owns_everything(self) -> bool:
        if self._n_topic_parts is None:
            total = 0
            for t in self.kcfg.topics:
                total += len(self.consumer.partitions_for_topic(t) or ())
            self._n_topic_parts = total
        return len(self.owned) >= self._n_topic_parts

    # ------------------------------------------------------------------ quiet feeds
    def _idle(self, now: float) -> None:
        """Advance the watermark of sites that are quiet while their partition is live;
        update the lag gauges on the way."""
        caught_up: dict[Any, bool] = {}
        for tp, part in self.owned.items():
            hw = self.consumer.highwater(tp)
            if hw is not None and part.next_offset is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(hw - part.next_offset, 0))
            caught_up[tp] = (hw is not None and part.next_offset is not None
                             and part.next_offset >= hw and not self.paused)
        advance: dict[int, int] = {}
        p = self.pipeline
        for s, tp in self.site_owner.items():
            if not caught_up.get(tp) or np.isnan(self.quiet_since[s]):
                self.quiet_since[s] = now  # behind, paused or unknown: not quiet, just slow
                continue
            quiet = now - self.quiet_since[s]
            if quiet >= self.idle_s and p.site_max_t[s] != NO_TIME:
                wm = int(p.site_max_t[s]) - self.grace_ns + int(quiet * 1e9)
                if wm > p.site_wm[s]:
                    advance[s] = wm
                    self.owned[tp].dirty = True
        if advance:
            self._emit(p.advance_watermark(advance), time.monotonic())

    # ------------------------------------------------------------------ durability
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
        from kafka.structs import OffsetAndMetadata

        if self._broken:
            msg = "not checkpointing: the service failed mid-poll; the last checkpoint stands"
            raise StateError(msg)
        t0 = time.monotonic()
        self._flush_sinks()
        self.dlq.flush()
        commits = {}
        for tp, part in self.owned.items():
            if not part.dirty or part.next_offset is None:
                continue
            sites = sorted(part.sites)
            rec = kc.StateRecord(tp.topic, tp.partition, part.next_offset, sites,
                                 self.pipeline.snapshot(sites))
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
            part = self.owned[tp] = _Part()
            if rec is None:
                log.info("no state record for %s/%d: starting at its committed offset (or "
                         "the reset policy) with empty state", tp.topic, tp.partition)
                continue
            restored = self.pipeline.restore(rec.state)
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
                return True
            except SinkBackpressure as exc:
                wait = min(exc.retry_after or 0.5, deadline - time.monotonic())
            except (SinkError, StateError) as exc:
                log.warning("checkpoint failed: %s", exc)
                wait = min(0.5, deadline - time.monotonic())
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
            for close in (lambda: self.consumer.close(autocommit=False), self.state.close,
                          lambda: self.producer.close(timeout=5), self.sinks.close):
                try:
                    close()
                except Exception:  # noqa: BLE001 - best effort at exit
                    log.exception("error while closing")
            if self._http is not None:
                self._http.shutdown()
            self.health.beat("stopped")
            log.info("stopped", extra={"records": self.stats.records, "rows": self.stats.rows,
                                       "dlq": self.stats.dlq})

    def close_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http = None


def _names(tps) -> list[str]:
    return sorted(f"{tp.topic}/{tp.partition}" for tp in tps)


def _kind(reason: str) -> str:
    head = reason.split(":", 1)[0].strip()
    return head if head in ("late", "future", "unknown_series", "invalid_value", "spike") else "decode"


def _fold(whys: list[str], limit: int = 20) -> list[str]:
    if len(whys) <= limit:
        return whys
    return [*whys[:limit], f"... and {len(whys) - limit} more"]


# --------------------------------------------------------------------------- entry points


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
    import signal

    from pueflow.connectors.ops import configure_json_logging

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


def main(argv: list[str] | None = None) -> int:
    """``python -m pueflow.modes.consume.service --config C`` (the CLI's ``consume`` verb)."""
    import argparse
    import os

    from pueflow.config.models import load_config

    ap = argparse.ArgumentParser(prog="pueflow-consume", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=os.environ.get("PUEFLOW_CONFIG"),
                    help="TOML config [env PUEFLOW_CONFIG]")
    ap.add_argument("--metrics-port", type=int,
                    default=int(os.environ["PUEFLOW_METRICS_PORT"]) if os.environ.get("PUEFLOW_METRICS_PORT") else None,
                    help="serve /metrics and /health here [env PUEFLOW_METRICS_PORT]")
    ap.add_argument("--run", default=os.environ.get("PUEFLOW_RUN", ""), help="run tag [env PUEFLOW_RUN]")
    ap.add_argument("--group", default=None, help="consumer group (overrides kafka.group_id)")
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--session-timeout-ms", type=int, default=None,
                    help="consumer session timeout (how fast a dead process's partitions move)")
    ap.add_argument("--max-message-bytes", type=int, default=1_000_000,
                    help="larger records go to the dead-letter topic undecoded")
    ap.add_argument("--dispatch", choices=["mpc", "rule"], default=None,
                    help="also publish dispatch setpoints with this policy")
    ap.add_argument("--drain-timeout", type=float, default=20.0,
                    help="bound on the final checkpoint at SIGTERM/SIGINT [s]")
    args = ap.parse_args(argv)
    if not args.config:
        ap.error("--config is required (or set PUEFLOW_CONFIG)")
    try:
        cfg = load_config(args.config)
        overrides = {}
        if args.session_timeout_ms:
            overrides["session_timeout_ms"] = args.session_timeout_ms
            overrides["heartbeat_interval_ms"] = max(args.session_timeout_ms // 5, 100)
        run_consume(cfg, metrics_port=args.metrics_port, run=args.run,
                    max_seconds=args.max_seconds, group_id=args.group,
                    consumer_overrides=overrides, max_message_bytes=args.max_message_bytes,
                    drain_timeout_s=args.drain_timeout, dispatch=args.dispatch)
    except PueflowError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
