"""Checkpoint state of the core: what a site's windows need to survive a crash or move.

A snapshot holds, per site: watermark and maximum event time, open base buckets of every
series, each series' last reading (register max-so-far), pending readings, and the closed
buckets not yet rolled into every window. Series are named by key, not id, so the state can
be restored into a process whose registry numbered them differently.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pueflow.config.models import Config
from pueflow.exceptions import StateError
from pueflow.pipeline.energy import NO_TIME
from pueflow.pipeline.history import SiteHistory
from pueflow.roles import ALL_ROLES, ROLE_INDEX
from pueflow.schema.batch import Batch
from pueflow.schema.blob import pack, unpack
from pueflow.schema.registry import Registry

#: Bumped whenever the snapshot layout changes.
STATE_VERSION = 2
#: Role columns of a snapshot that names none (written before the ``ppa`` role existed);
#: closed buckets are restored by role name, so adding a role never shifts another's energy.
PRE_PPA_ROLES = tuple(r for r in ALL_ROLES if r != "ppa")


class CoreState:
    """Per-series and per-site state of the core: everything a checkpoint saves.

    Per series: last reading (time, value or register max-so-far), first reading time, spike
    run length, and the open base buckets (energy, coverage, sensor sums and counts). Per
    site: maximum event time, watermark, first open bucket, newest bucket with data, next
    window starts, closed-bucket history, and rollover/reset/gap counts per open bucket.
    Readings not yet released by the watermark wait in ``pending``.
    """

    def __init__(self, cfg: Config, registry: Registry, base_ns: int, windows: list[str]):
        self.cfg = cfg
        self.registry = registry
        self.base_ns = base_ns
        self.windows = windows
        n_sites = len(cfg.sites)
        self.site_max_t = np.full(n_sites, NO_TIME, np.int64)
        self.site_wm = np.full(n_sites, NO_TIME, np.int64)
        self.site_b0 = np.zeros(n_sites, np.int64)
        self.started = np.zeros(n_sites, np.bool_)
        self.last_data_b = np.full(n_sites, NO_TIME, np.int64)
        self.next_start: list[dict[str, int]] = [{} for _ in range(n_sites)]
        self.hist = [SiteHistory() for _ in range(n_sites)]
        self._cap = 0
        self._width = 8
        self.ev_acc = np.zeros((n_sites, self._width, 3), np.int64)
        self._alloc_series(64)
        self.pending = Batch.empty()
        self._site_series: list[np.ndarray] = []
        self._site_series_n = -1

    @property
    def pending(self) -> Batch:
        """Readings not yet released by their site's watermark, in arrival order."""
        return self._pending

    @pending.setter
    def pending(self, batch: Batch) -> None:
        self._pending = batch
        self._held_stale = True  # the core recomputes its earliest held time per site

    def _series_of_site(self) -> list[np.ndarray]:
        """Series ids of each site that have a role, in canonical order (cached)."""
        n = len(self.registry)
        if n != self._site_series_n:
            order = self.registry.order()
            site_of = self.registry.site[:n]
            role_of = self.registry.role[:n]
            self._site_series = [
                order[(site_of[order] == i) & (role_of[order] >= 0)]
                for i in range(len(self.cfg.sites))
            ]
            self._site_series_n = n
        return self._site_series

    def _held_min_of(self, site_of: np.ndarray) -> np.ndarray:
        """Earliest pending time per site [ns] (max int64 where none)."""
        out = np.full(len(self.cfg.sites), np.iinfo(np.int64).max, np.int64)
        if len(self._pending):
            np.minimum.at(out, site_of[self._pending.series], self._pending.time_ns)
        self._held_stale = False
        return out

    def _alloc_series(self, need: int) -> None:
        if need <= self._cap:
            return
        cap = max(need, 2 * self._cap)
        n_old = self._cap

        def grow1(old, fill, dtype):
            new = np.full(cap, fill, dtype)
            if n_old:
                new[:n_old] = old
            return new

        def grow2(old, dtype):
            new = np.zeros((cap, self._width), dtype)
            if n_old:
                new[:n_old] = old
            return new

        self.last_t = grow1(getattr(self, "last_t", None), NO_TIME, np.int64)
        self.first_t = grow1(getattr(self, "first_t", None), NO_TIME, np.int64)
        self.last_v = grow1(getattr(self, "last_v", None), 0.0, np.float64)
        self.spike_run = grow1(getattr(self, "spike_run", None), 0, np.int64)
        self.acc_e = grow2(getattr(self, "acc_e", None), np.float64)
        self.acc_cov = grow2(getattr(self, "acc_cov", None), np.float64)
        self.acc_sum = grow2(getattr(self, "acc_sum", None), np.float64)
        self.acc_n = grow2(getattr(self, "acc_n", None), np.int64)
        self._cap = cap

    def _widen(self, width: int) -> None:
        if width <= self._width:
            return
        w = max(width, 2 * self._width)
        for name in ("acc_e", "acc_cov", "acc_sum", "acc_n"):
            old = getattr(self, name)
            new = np.zeros((old.shape[0], w), old.dtype)
            new[:, : old.shape[1]] = old
            setattr(self, name, new)
        ev = np.zeros((self.ev_acc.shape[0], w, 3), np.int64)
        ev[:, : self.ev_acc.shape[1]] = self.ev_acc
        self.ev_acc = ev
        self._width = w


    def snapshot(self, site_ids: list[str]) -> bytes:
        """Complete state of ``site_ids`` as bytes; series are named by key, not id."""
        reg = self.registry
        n = len(reg)
        index = {s.id: i for i, s in enumerate(self.cfg.sites)}
        arrays: dict[str, np.ndarray] = {}
        header: dict[str, Any] = {"version": STATE_VERSION, "base_ns": self.base_ns, "windows": self.windows,
                                  "roles": list(ALL_ROLES), "sites": []}
        site_of = reg.site[:n]
        for sid in site_ids:
            if sid not in index:
                continue
            i = index[sid]
            ser = np.flatnonzero(site_of == i).astype(np.int64)
            pend = self.pending
            pm = reg.site[pend.series] == i if len(pend) else np.zeros(0, bool)
            h = self.hist[i]
            ev_acc = self.ev_acc
            header["sites"].append({
                "id": sid, "max_t": int(self.site_max_t[i]), "wm": int(self.site_wm[i]),
                "b0": int(self.site_b0[i]), "started": bool(self.started[i]),
                "last_data_b": int(self.last_data_b[i]), "next_start": self.next_start[i],
                "hist_b0": h.b0, "keys": [list(reg.keys[s]) for s in ser],
            })
            pre = f"{sid}/"
            for name in ("last_t", "first_t", "last_v", "spike_run"):
                arrays[pre + name] = getattr(self, name)[ser]
            # only buckets from b0 to the newest reading can hold anything: save just those
            used = 0
            if self.started[i] and self.last_data_b[i] != NO_TIME:
                used = int(min(max(self.last_data_b[i] - self.site_b0[i] + 1, 0), self._width))
            for name in ("acc_e", "acc_cov", "acc_sum", "acc_n"):
                arrays[pre + name] = getattr(self, name)[ser, :used]
            arrays[pre + "ev_acc"] = ev_acc[i, :used]
            for name in ("e", "cov", "den", "ssum", "sn", "ev"):
                arrays[pre + "h_" + name] = getattr(h, name)[: h.n]
            # pending readings name their series by position in this site's key list
            arrays[pre + "p_series"] = np.searchsorted(ser, pend.series[pm]).astype(np.int32)
            arrays[pre + "p_time"] = pend.time_ns[pm]
            arrays[pre + "p_value"] = pend.value[pm]
        return pack(header, arrays)


    def restore(self, blob: bytes) -> list[str]:
        """Load state made by :meth:`snapshot`; returns the site ids restored.

        Series of a restored site that the snapshot does not know start from nothing.
        """
        header, z = unpack(blob, "state", STATE_VERSION)
        if header.get("base_ns") != self.base_ns or header.get("windows") != self.windows:
            msg = (f"checkpointed state was made with windows {header.get('windows')}; the config "
                   f"now has {self.windows}. Restore with the old config or reset the state topic")
            raise StateError(msg)
        roles = tuple(header.get("roles") or PRE_PPA_ROLES)
        unknown = [r for r in roles if r not in ROLE_INDEX]
        if unknown:
            msg = (f"checkpointed state has roles {unknown} this pueflow does not know; restore with the "
                   f"pueflow that wrote it or reset the state topic")
            raise StateError(msg)

        def by_role(a: np.ndarray) -> np.ndarray:
            if roles == ALL_ROLES:
                return a
            out = np.zeros((a.shape[0], len(ALL_ROLES)), a.dtype)
            out[:, [ROLE_INDEX[r] for r in roles]] = a
            return out

        index = {s.id: i for i, s in enumerate(self.cfg.sites)}
        restored = []
        for st in header["sites"]:
            sid = st["id"]
            if sid not in index:
                continue
            i = index[sid]
            pre = f"{sid}/"
            reg = self.registry
            ser = np.array([reg.id(*k) for k in st["keys"]], np.int64)
            self._alloc_series(len(reg))
            self._widen(max(z[pre + "acc_e"].shape[1], 1))
            # series of this site that the snapshot does not know start from nothing
            n = len(reg)
            stale = np.setdiff1d(np.flatnonzero(reg.site[:n] == i), ser)
            self.last_t[stale] = NO_TIME
            self.first_t[stale] = NO_TIME
            self.last_v[stale] = 0.0
            self.spike_run[stale] = 0
            for name in ("acc_e", "acc_cov", "acc_sum", "acc_n"):
                getattr(self, name)[stale] = 0
            for name in ("last_t", "first_t", "last_v", "spike_run"):
                getattr(self, name)[ser] = z[pre + name]
            for name in ("acc_e", "acc_cov", "acc_sum", "acc_n"):
                src = z[pre + name]
                dst = getattr(self, name)
                dst[ser] = 0
                dst[ser, : src.shape[1]] = src
            self.site_max_t[i], self.site_wm[i] = st["max_t"], st["wm"]
            self.site_b0[i], self.started[i] = st["b0"], st["started"]
            self.last_data_b[i] = st["last_data_b"]
            self.next_start[i] = {k: int(v) for k, v in st["next_start"].items()}
            h = SiteHistory(b0=st["hist_b0"])
            h.append(by_role(z[pre + "h_e"]), z[pre + "h_cov"], z[pre + "h_den"], by_role(z[pre + "h_ssum"]),
                     by_role(z[pre + "h_sn"]), z[pre + "h_ev"])
            self.hist[i] = h
            ev = z[pre + "ev_acc"]
            self.ev_acc[i] = 0
            self.ev_acc[i, : ev.shape[0]] = ev
            # replace this site's pending readings with the checkpointed ones
            if len(self.pending):
                keep = reg.site[self.pending.series] != i
                self.pending = self.pending.take(keep)
            ps = ser[z[pre + "p_series"]].astype(np.int32)
            if len(ps):
                self.pending = Batch.concat([self.pending, Batch(z[pre + "p_time"], ps, z[pre + "p_value"])])
            restored.append(sid)
        self._site_series_n = -1
        return restored
