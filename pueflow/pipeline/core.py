"""The ``process(batch)`` core shared by replay, consume and tune.

Flow per call: screen each reading in arrival order (unknown / future / invalid / spike /
late) -> buffer the good ones -> release those older than their site's watermark ->
sort + dedup -> integrate into per-series base buckets -> close the buckets no future
reading can change -> roll up per role -> emit every window that is complete -> KPIs.

Readings are never dropped silently: each excluded reading becomes a ``quality`` row and,
for readings of the current batch, an entry in ``Output.rejected`` (for a dead-letter
queue). The KPI rows do not depend on how the input was cut into batches, nor on its order
within the grace period.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from pueflow.config.models import Config
from pueflow.pipeline import energy as en
from pueflow.pipeline.fleet import FleetAggregator
from pueflow.pipeline.frames import QualityLog, kpi_frame, quality_rows, screen_quality
from pueflow.pipeline.held import Buffers, fix_series, release_in_place
from pueflow.pipeline.history import Windows
from pueflow.pipeline.screen import OK, ORDERED, SCREEN_NAMES, close_time, note_first, screen
from pueflow.pipeline.state import CoreState
from pueflow.pipeline.windows import (
    DAY,
    complete_windows,
    rollup,
    shift_used,
    window_end,
    window_start,
)
from pueflow.roles import ALL_ROLES, ROLE_INDEX
from pueflow.schema.batch import Batch
from pueflow.schema.registry import Registry
from pueflow.schema.rows import Output
from pueflow.units import parse_duration_ns

NO_TIME = en.NO_TIME
N_ROLES = len(ALL_ROLES)
#: With ``defer_rows``, rows are built once this many windows wait (memory stays bounded).
DEFER_WINDOWS = 50_000


class Pipeline(CoreState):
    """Stateful stream core: feed :class:`Batch` es to :meth:`process`, collect rows.

    Parameters
    ----------
    cfg : Config
    registry : Registry, optional
        Shared with the source that maps keys to series ids.
    run : str
        Value of the ``run`` tag on every row ("" for production).
    dispatcher : object with ``on_kpi(kpi_df) -> (setpoint_df, quality_df)``, optional
    clock_ns : callable
        Wall clock used only to reject readings from the future.
    """

    def __init__(self, cfg: Config, registry: Registry | None = None, *, run: str = "",
                 dispatcher: Any = None, clock_ns: Callable[[], int] = time.time_ns):
        self.cfg = cfg
        self.registry = registry if registry is not None else Registry(cfg)
        self.run = run
        self.dispatcher = dispatcher
        self.clock_ns = clock_ns
        pc = cfg.pipeline
        self.base_ns = cfg.base_ns()  # windows and site zones, see config/zones.py
        self.grace_ns = parse_duration_ns(pc.grace)
        self.max_future_ns = parse_duration_ns(pc.max_future)
        self.windows = sorted(pc.windows, key=parse_duration_ns)
        n_sites = len(cfg.sites)
        self.tz = [ZoneInfo(s.timezone) for s in cfg.sites]
        CoreState.__init__(self, cfg, self.registry, self.base_ns, self.windows)
        self.metered = np.zeros((n_sites, N_ROLES), np.bool_)
        for i, s in enumerate(cfg.sites):
            for m in s.meters:
                self.metered[i, ROLE_INDEX[m.role]] = True
        self.fleet = FleetAggregator(cfg, run)
        self._site_index = {s.id: i for i, s in enumerate(cfg.sites)}
        self._scratch = np.empty(0, np.int64)
        self._scratch_i = np.empty(0, np.int64)
        self._disordered = np.zeros(0, np.bool_)
        self._lo = np.empty(n_sites, np.int64)
        self._hi = np.empty(n_sites, np.int64)
        self._held_min = np.full(n_sites, np.iinfo(np.int64).max, np.int64)
        self._buf = Buffers()
        #: True: complete windows wait in ``_deferred`` and their KPI and fleet rows are
        #: built once, by :meth:`finalize` (replay without dispatch: the rows are the same,
        #: the per-call frame building is not)
        self.defer_rows = False
        self._deferred: list[Windows] = []
        self._deferred_n = 0  # windows in _deferred
        #: with ``defer_rows``, quality rows of single readings, made a frame once
        self._qlog = QualityLog()
        self._calls = 0
        self.stats = {"readings_in": 0, "readings_ok": 0, "readings_rejected": 0}

    # ------------------------------------------------------------------ public API
    def process(self, batch: Batch) -> Output:
        """Screen, buffer, integrate and close what can be closed; return the new rows."""
        reg = self.registry
        self._alloc_series(len(reg))
        a = reg.arrays()
        codes = np.empty(len(batch), np.int8)
        future = self.clock_ns() + self.max_future_ns
        # the readings still held, then this batch's good ones, in the reused buffer
        p, buf = self.pending, self._buf
        if self._held_stale:
            self._held_min = self._held_min_of(a["site"])
        m = len(p)
        buf.readings(m + len(batch))
        buf.t[:m], buf.s[:m], buf.v[:m] = p.time_ns, p.series, p.value
        w = screen(batch.time_ns, batch.series, batch.value, a["site"], a["role"], a["kind"],
                   a["signed"], a["max_kw"], self.site_max_t, self.site_wm, self.grace_ns,
                   future, codes, buf.t, buf.s, buf.v, m, self._held_min)
        self._pending = Batch(buf.t[:w], buf.s[:w], buf.v[:w])
        bad = np.flatnonzero(codes != OK)
        self.stats["readings_in"] += len(batch)
        self.stats["readings_ok"] += len(batch) - len(bad)
        self.stats["readings_rejected"] += len(bad)
        self._calls += 1
        quality = []
        if len(bad) and self.defer_rows:
            self._qlog.screened(batch, bad, codes, self._calls)
        elif len(bad):
            quality.append(screen_quality(self.registry, self.run, batch, bad, codes))
        out = self._advance(quality, final=False)
        out.rejected_index = bad.astype(np.int64)
        out.rejected_reason = [SCREEN_NAMES[int(c)] for c in codes[bad]]
        return out

    def advance_watermark(self, watermark_ns: dict[int, int]) -> Output:
        """Move site watermarks forward (consume mode: a quiet feed still closes windows).

        ``watermark_ns`` maps site index -> new watermark [ns]; it never moves backwards.
        """
        for site, wm in watermark_ns.items():
            if wm > self.site_wm[site]:
                self.site_wm[site] = wm
        return self._advance([], final=False)

    def finalize(self) -> Output:
        """Close every open window (end of a replay): emit partial trailing windows too."""
        for i in range(len(self.cfg.sites)):
            if self.site_max_t[i] != NO_TIME:
                self.site_wm[i] = max(self.site_wm[i], self.site_max_t[i] + 1)
        out = self._advance([], final=True)
        finish = getattr(self.dispatcher, "finish", None)
        if finish is not None:  # e.g. the perfect-foresight oracle plans the whole period now
            sp, q = finish()
            if sp is not None and sp.height:
                out.setpoint = sp if out.setpoint is None else pl.concat(
                    [out.setpoint, sp], how="diagonal_relaxed")
            if q is not None and q.height:
                out.quality = q if out.quality is None else pl.concat(
                    [out.quality, q], how="diagonal_relaxed")
        return out

    # ------------------------------------------------------------------ internals
    def _advance(self, quality: list[pl.DataFrame], final: bool) -> Output:
        reg = self.registry
        a = reg.arrays()
        p = self.pending
        if self._held_stale:
            self._held_min = self._held_min_of(a["site"])
        # nothing to release while every site's earliest held reading is at its watermark
        if len(p) and (self._held_min < self.site_wm).any():
            self._scratch_for(len(reg))
            w, ht, hs, hv, state = release_in_place(
                p.time_ns, p.series, p.value, a["site"], self.site_wm, self._scratch,
                self._disordered, self._lo, self._hi, self._held_min)
            if w:
                self._pending = Batch(ht, hs, hv)
                quality.extend(self._integrate(p.take(slice(0, w)), state, a))
        kpi_rows = self._close_sites(a, quality, final)
        out = Output()
        out.kpi = kpi_rows
        out.fleet = None if self.defer_rows and not final else self.fleet.flush(
            final, self._site_passed)
        if self.dispatcher is not None and kpi_rows is not None and kpi_rows.height:
            sp, q = self.dispatcher.on_kpi(kpi_rows)
            out.setpoint = sp
            if q is not None and q.height:
                quality.append(q)
        quality = [q for q in quality if q is not None and q.height]
        out.quality = pl.concat(quality, how="diagonal_relaxed") if quality else None
        return out

    def _site_passed(self, site_id: str, window: str, key_ns: int) -> bool:
        """Tell whether a site moved past the fleet window keyed ``key_ns`` (no more rows for it).

        A site that reports has emitted every window before its ``next_start``; a site that
        never reported is past a window once its watermark passes the window's end.
        """
        i = self._site_index[site_id]
        tz = self.tz[i]
        if window == DAY:  # fleet days are keyed by local date (UTC midnight of that date)
            d = datetime.fromtimestamp(key_ns // 10**9, UTC).date()
            start = int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()) * 10**9
        else:
            start = key_ns
        if self.started[i]:
            return self.next_start[i][window] > start
        wm = int(self.site_wm[i])
        return wm != NO_TIME and wm >= window_end(window, start, tz)

    def _scratch_for(self, n_series: int) -> None:
        if len(self._scratch) < n_series:
            self._scratch = np.full(n_series, NO_TIME, np.int64)
            self._scratch_i = np.zeros(n_series, np.int64)
            self._disordered = np.zeros(n_series, np.bool_)

    def _integrate(self, r: Batch, state: int, a: dict[str, np.ndarray]) -> list[pl.DataFrame]:
        """Integrate released readings (``r``, views of the reused buffer, changed in place)."""
        quality: list[pl.DataFrame] = []
        buf = self._buf
        buf.events(len(r))
        # the kernel needs each series in time order without repeats: a time-ordered input
        # has that already; a series with a late or repeated reading is put in order where
        # it stands, its repeats marked dropped (series -1, skipped by the kernel)
        if state != ORDERED:
            d = fix_series(r.time_ns, r.series, r.value, self._disordered, self._scratch_i,
                           buf.ds, buf.dt, buf.dv)
            if d:
                self._quality(quality, Batch(buf.dt[:d], buf.ds[:d], buf.dv[:d]), "duplicate")
        note_first(r.series, r.time_ns, self.first_t)
        lo_t, hi_t = self._lo, self._hi
        present = np.flatnonzero(hi_t != NO_TIME)
        # a site's first bucket is its earliest reading (later ones can only be newer)
        for i in present[~self.started[present]]:
            b = int(lo_t[i] // self.base_ns)
            self.site_b0[i] = b
            self.started[i] = True
            self.hist[i].b0 = b
            t0 = b * self.base_ns
            self.next_start[i] = {w: window_start(w, t0, self.tz[i]) for w in self.windows}
        hi_b = hi_t[present] // self.base_ns
        self._widen(int((hi_b - self.site_b0[present]).max()) + 1)
        self.last_data_b[present] = np.maximum(self.last_data_b[present], hi_b)
        ev_idx, ev_code, ev_val = buf.ev_idx, buf.ev_code, buf.ev_val
        n_ev = en.integrate_ordered(r.time_ns, r.series, r.value, a["kind"], a["register_max"],
                            a["jitter"], a["max_gap_ns"], a["max_kw"], a["site"],
                            self.site_b0, self.base_ns, self.last_t, self.last_v,
                            self.spike_run, self.acc_e, self.acc_cov, self.acc_sum,
                            self.acc_n, ev_idx, ev_code, ev_val)
        if n_ev:
            idx, code = ev_idx[:n_ev], ev_code[:n_ev]
            s = a["site"][r.series[idx]]
            en.book_events(self.ev_acc, s, r.time_ns[idx] // self.base_ns - self.site_b0[s], code)
            for c, name in en.EVENT_NAMES.items():
                sel = idx[code == c]
                if len(sel):
                    self._quality(quality, r.take(sel), name, ev_val[:n_ev][code == c])
        return quality

    def _quality(self, quality: list[pl.DataFrame], b: Batch, kind: str,
                 values: np.ndarray | None = None) -> None:
        """Quality rows of the readings ``b``: into ``quality``, or noted for later."""
        if self.defer_rows:
            self._qlog.readings(b, kind, values)
        else:
            b = Batch(b.time_ns.copy(), b.series.copy(), b.value.copy())  # b may be a view
            quality.append(quality_rows(self.registry, self.run, b, kind, values))

    def _take_deferred(self, quality: list[pl.DataFrame]) -> list[Windows]:
        q = self._qlog.frame(self.registry, self.run)
        if q is not None:
            quality.append(q)
        blocks, self._deferred, self._deferred_n = self._deferred, [], 0
        by: dict[tuple[int, str], list[Windows]] = {}  # one fleet frame a site and window
        for b in blocks:
            by.setdefault((b.site, b.window), []).append(b)
        for (i, w), bs in by.items():
            self.fleet.add_many(self.cfg.sites[i], w, np.concatenate([b.start for b in bs]),
                                np.concatenate([b.e for b in bs]), self.metered[i], self.tz[i])
        return blocks

    def flush_deferred(self) -> Output:
        """Rows of the complete windows ``defer_rows`` holds back (a replay stopping early)."""
        quality: list[pl.DataFrame] = []
        blocks = self._take_deferred(quality)
        out = Output()
        out.kpi = kpi_frame(self.cfg, self.metered, self.run, blocks, quality) if blocks else None
        out.fleet = self.fleet.flush(False, self._site_passed)
        out.quality = pl.concat(quality, how="diagonal_relaxed") if quality else None
        return out

    def _close_sites(self, a, quality, final: bool) -> pl.DataFrame | None:
        site_series = self._series_of_site()
        blocks: list[Windows] = []
        for i in range(len(self.cfg.sites)):
            if not self.started[i]:
                continue
            ss = site_series[i]
            if final:
                t_last = int(self.last_data_b[i]) * self.base_ns
                end_ns = max(window_end(w, window_start(w, t_last, self.tz[i]), self.tz[i])
                             for w in self.windows)
            else:
                end_ns = int(close_time(ss, self.last_t, a["max_gap_ns"], self.site_wm[i]))
            b_end = end_ns // self.base_ns
            nb = b_end - int(self.site_b0[i])
            if nb <= 0:
                continue
            self._roll_site(i, ss, a, nb)
            tail = int(self.site_max_t[i]) if final else None
            blocks.extend(self._emit_windows(i, b_end * self.base_ns, tail))
        if self.defer_rows:
            self._deferred.extend(blocks)
            self._deferred_n += sum(len(b.start) for b in blocks)
            if (not final and self._deferred_n < DEFER_WINDOWS
                    and self._qlog.rows < DEFER_WINDOWS):
                return None
            blocks = self._take_deferred(quality)
        if not blocks:
            return None
        return kpi_frame(self.cfg, self.metered, self.run, blocks, quality)

    def _roll_site(self, i: int, ss: np.ndarray, a, nb: int) -> None:
        b0 = int(self.site_b0[i])
        e = np.empty((nb, N_ROLES))
        cov = np.empty(nb)
        den = np.empty(nb, np.int64)
        ssum = np.empty((nb, N_ROLES))
        sn = np.empty((nb, N_ROLES), np.int64)
        w = min(nb, self._width)
        rollup(ss, a["role"], a["kind"], self.first_t, self.base_ns, b0, w,
               self.acc_e, self.acc_cov, self.acc_sum, self.acc_n, N_ROLES,
               e[:w], cov[:w], den[:w], ssum[:w], sn[:w])
        if nb > w:  # buckets past the accumulators saw no readings at all
            e[w:] = 0.0
            cov[w:] = 0.0
            ssum[w:] = 0.0
            sn[w:] = 0
            started = (self.first_t[ss] != NO_TIME) & (a["kind"][ss] != 2)
            den[w:] = int(started.sum())
        ev = np.zeros((nb, 3), np.int64)
        ev[:w] = self.ev_acc[i, :w]
        self.hist[i].append(e, cov, den, ssum, sn, ev)
        # slots past the newest reading's bucket hold nothing: only the used ones move
        last = int(self.last_data_b[i])
        used = self._width if last == NO_TIME else max(last - b0 + 1, 0)
        shift_used(ss, min(nb, self._width), used, self.acc_e, self.acc_cov, self.acc_sum,
                   self.acc_n)
        k = min(nb, self._width)
        self.ev_acc[i, : self._width - k] = self.ev_acc[i, k:].copy()
        self.ev_acc[i, self._width - k:] = 0
        self.site_b0[i] = b0 + nb

    def _emit_windows(self, i: int, closed_ns: int, tail_ns: int | None = None) -> list[Windows]:
        """Sum closed base buckets into every complete window of site ``i``.

        At the end of a replay (``tail_ns`` = last reading) windows starting at or after it
        with nothing in them are padding, not data, and are skipped.
        """
        h = self.hist[i]
        out = []
        for w in self.windows:
            starts, ends = complete_windows(w, self.next_start[i][w], closed_ns, self.tz[i])
            if not len(starts):
                continue
            self.next_start[i][w] = int(ends[-1])
            lo = np.maximum(starts // self.base_ns - h.b0, 0)
            hi = np.maximum(ends // self.base_ns - h.b0, 0)
            seg = slice(int(lo[0]), int(hi[-1]))
            idx = lo - lo[0]
            # windows are contiguous, so each reduceat segment is exactly [lo_k, hi_k)
            e = np.add.reduceat(h.e[seg], idx, axis=0)
            cov = np.add.reduceat(h.cov[seg], idx)
            den = np.maximum.reduceat(h.den[seg], idx)
            ssum = np.add.reduceat(h.ssum[seg], idx, axis=0)
            sn = np.add.reduceat(h.sn[seg], idx, axis=0)
            ev = np.add.reduceat(h.ev[seg], idx, axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                cover = np.where(den > 0, cov / (np.maximum(den, 1) * (ends - starts)), 0.0)
                means = np.where(sn > 0, ssum / np.maximum(sn, 1), np.nan)
            keep = np.ones(len(starts), bool)
            if tail_ns is not None:
                keep = ~((starts >= tail_ns) & ~sn.any(axis=1) & ~e.any(axis=1))
            blk = Windows(i, w, starts[keep], den[keep], e[keep], cover[keep], means[keep],
                           ev[keep])
            if len(blk.start):
                out.append(blk)
            if len(blk.start) and not self.defer_rows:
                self.fleet.add_many(self.cfg.sites[i], w, blk.start, blk.e, self.metered[i],
                                    self.tz[i])
        h.trim(min(self.next_start[i].values()) // self.base_ns)
        return out
