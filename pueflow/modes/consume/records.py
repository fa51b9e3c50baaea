"""Consume: one poll's records -> decode -> core -> dead letters and sinks; quiet feeds."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import numpy as np
import orjson
import polars as pl

from pueflow.config.routing import kpi_topic_windows
from pueflow.connectors.kafka_poll import PollColumns
from pueflow.pipeline.core import NO_TIME
from pueflow.schema.rows import MEASUREMENTS, Output
from pueflow.sovereignty.audit import AuditLog, audit_path

log = logging.getLogger("pueflow.service")


class RecordsMixin:
    """The per-poll half of :class:`~pueflow.modes.consume.service.ConsumeService`."""

    _unflushed_since: float | None
    _n_topic_parts: int | None
    _unwritten: list[Output]
    kpi_audit: AuditLog | None

    def _handle(self, records: dict, now: float) -> None:
        tp_list = [tp for tp in records if tp in self.owned]  # not those revoked in flight
        if not tp_list:
            return
        poll = PollColumns(records, tp_list)
        last = poll.last_offsets()
        for j, tp in enumerate(tp_list):
            n = int(poll.counts[j])
            if n:
                part = self.owned[tp]
                part.next_offset = int(last[j]) + 1
                part.dirty = True
                self.metrics.records_in.labels(tp.topic).inc(n)
        self.stats.records += len(poll)
        self._since_ckpt += len(poll)
        vlen = poll.value_len
        bad = (vlen < 0) | (vlen > self.max_message_bytes)
        keep = idx = None
        if bad.any():  # rare: screened one by one
            for i in np.flatnonzero(bad).tolist():
                self._screen(poll.message(i))
            keep = ~bad
            idx = np.flatnonzero(keep)
            if not len(idx):
                return
        buf, ends = poll.payloads(keep)
        tp_of = poll.tp if keep is None else poll.tp[keep]
        reg = self.pipeline.registry
        dec = self._decode(buf, ends, reg)
        out = self.pipeline.process(dec.batch)
        n = len(dec.batch)
        self.stats.samples += n
        self.metrics.samples_in.inc(n)
        self._track_sites(dec, tp_of, tp_list)
        self._dead_letters(dec, out, poll, idx)
        self._emit(out, now)

    def _screen(self, r: Any) -> None:
        """Send an empty or oversized record to the dead letters."""
        v = r.value
        if v is None:
            self._dead(r, "empty record (no value)", "empty")
        else:
            limit = self.max_message_bytes
            self._dead(r, f"record of {len(v)} bytes exceeds max_message_bytes={limit}",
                       "oversized")

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

    def _dead_letters(self, dec, out: Output, poll: PollColumns, idx: np.ndarray | None) -> None:
        """Send the payloads the decoder or the core refused (``idx``: payload -> message)."""
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
            msg = poll.message(p if idx is None else int(idx[p]))
            self._dead(msg, "; ".join(_fold(whys)), _kind(whys[0]))

    def _dead(self, r: Any, reason: str, kind: str) -> None:
        self.dlq.send(r.value, reason, r.topic, r.partition, r.offset, key=r.key)
        self.metrics.dlq.labels(kind).inc()
        self.stats.dlq += 1

    def _emit(self, out: Output, now: float) -> None:
        if self.kpi_out is not None:
            self._publish_kpi()
            out.fleet = None  # the aggregate stage writes fleet rows from the KPI topic
        elif out.fleet is not None and not self._owns_everything():
            out.fleet = None  # a fleet aggregate needs every site; a partial one would overwrite
        frames = out.frames()
        if not frames:
            return
        # rows wait here until the next flush hands them to the sinks in one write: the
        # routing and encoding cost per write, not per row, and a flush is when they leave
        self._unwritten.append(out)
        for m, df in frames.items():
            self.metrics.rows_out.labels(m).inc(df.height)
        if out.kpi is not None and out.kpi.height:
            self._emits.append((now, out.kpi.height))
        if self._unflushed_since is None:
            self._unflushed_since = now

    def _write_rows(self) -> None:
        """Hand the rows emitted since the last call to the sinks, one write per measurement."""
        if not self._unwritten:
            return
        merged = Output()
        for m in MEASUREMENTS:
            parts = [df for o in self._unwritten if (df := getattr(o, m)) is not None and df.height]
            if parts:
                setattr(merged, m, parts[0] if len(parts) == 1 else
                        pl.concat(parts, how="diagonal_relaxed"))
        self.stats.rows += self.sinks.write(merged)
        self._unwritten.clear()

    def _publish_kpi(self) -> None:
        """Send the site windows closed since the last call to the KPI topic, keyed by site.

        Only those that may reach the topic's jurisdiction
        (:func:`~pueflow.config.routing.kpi_topic_windows`): every window of a home site,
        windows >= the cross-border minimum of a foreign one.
        """
        fleet = self.pipeline.fleet
        fleet.pending.clear()
        if not fleet.tap:
            return
        df = pl.concat(fleet.tap)
        fleet.tap.clear()
        sent = kpi_topic_windows(self.cfg)
        df = df.filter(pl.Series([w in sent.get(s, ()) for s, w in
                                  zip(df["site"].to_list(), df["window"].to_list(), strict=True)],
                                 dtype=pl.Boolean))
        if not df.height:
            return
        self._audit_kpi(df)
        for r in df.iter_rows(named=True):
            self.kpi_out.send_value(orjson.dumps({**r, "run": self.run_tag}), r["site"].encode())
        self.metrics.rows_out.labels("kpi_topic").inc(df.height)

    def _audit_kpi(self, df: pl.DataFrame) -> None:
        """Record the site windows that cross a border into the KPI topic, as sink writes are.

        ``check-config`` (:func:`~pueflow.config.routing.kpi_topic_problems`) has refused any
        config in which they may not; this is the audit trail of those that may.
        """
        home = self.kcfg.kpi_topic_jurisdiction
        if home is None:
            return
        juris = {s.id: s.jurisdiction for s in self.cfg.sites}
        df = df.with_columns(pl.col("site").replace_strict(juris, return_dtype=pl.Utf8).alias("j"),
                             pl.col("time").cast(pl.Datetime("ns", "UTC")))
        away = df.filter(pl.col("j") != home)
        if not away.height:
            return
        if self.kpi_audit is None:
            self.kpi_audit = AuditLog(audit_path(self.cfg))
        groups = [([j], g.drop("j")) for (j,), g in away.group_by("j", maintain_order=True)]
        self.kpi_audit.record(f"kafka:{self.kcfg.kpi_topic}", home, "kpi", groups)

    def _owns_everything(self) -> bool:
        if self._n_topic_parts is None:
            total = 0
            for t in self.kcfg.topics:
                total += len(self.consumer.partitions_for_topic(t) or ())
            self._n_topic_parts = total
        return len(self.owned) >= self._n_topic_parts

    # ------------------------------------------------------------------ quiet feeds
    def _idle(self, now: float) -> None:
        """Advance the watermark of sites that are quiet while their partition is live.

        The lag gauges are updated on the way.
        """
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


def _kind(reason: str) -> str:
    head = reason.split(":", 1)[0].strip()
    return head if head in ("late", "future", "unknown_series", "invalid_value", "spike") else "decode"


def _fold(whys: list[str], limit: int = 20) -> list[str]:
    if len(whys) <= limit:
        return whys
    return [*whys[:limit], f"... and {len(whys) - limit} more"]


