"""Checkpoint state of the core: what a site's windows need to survive a crash or move.

A snapshot holds, per site: watermark and maximum event time, open base buckets of every
series, each series' last reading (register max-so-far), pending readings, and the closed
buckets not yet rolled into every window. Series are named by key, not id, so the state can
be restored into a process whose registry numbered them differently.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from pueflow.exceptions import StateError
from pueflow.pipeline.energy import NO_TIME
from pueflow.pipeline.history import SiteHistory
from pueflow.schema.batch import Batch

if TYPE_CHECKING:
    from pueflow.pipeline.core import Pipeline

#: Bumped whenever the snapshot layout changes.
STATE_VERSION = 2


def snapshot(p: Pipeline, site_ids: list[str]) -> bytes:
    """Serialise the state of ``site_ids`` (see :meth:`Pipeline.snapshot`)."""
    reg = p.registry
    n = len(reg)
    index = {s.id: i for i, s in enumerate(p.cfg.sites)}
    arrays: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {"version": STATE_VERSION, "base_ns": p.base_ns, "windows": p.windows,
                              "sites": []}
    site_of = reg.site[:n]
    for sid in site_ids:
        if sid not in index:
            continue
        i = index[sid]
        ser = np.flatnonzero(site_of == i).astype(np.int64)
        pend = p.pending
        pm = reg.site[pend.series] == i if len(pend) else np.zeros(0, bool)
        h = p.hist[i]
        ev_acc = getattr(p, "ev_acc", np.zeros((len(p.cfg.sites), p._width, 3), np.int64))
        header["sites"].append({
            "id": sid, "max_t": int(p.site_max_t[i]), "wm": int(p.site_wm[i]),
            "b0": int(p.site_b0[i]), "started": bool(p.started[i]),
            "last_data_b": int(p.last_data_b[i]), "next_start": p.next_start[i],
            "hist_b0": h.b0, "keys": [list(reg.keys[s]) for s in ser],
        })
        pre = f"{sid}/"
        for name in ("last_t", "first_t", "last_v", "spike_run"):
            arrays[pre + name] = getattr(p, name)[ser]
        # only buckets from b0 to the newest reading can hold anything: save just those
        used = 0
        if p.started[i] and p.last_data_b[i] != NO_TIME:
            used = int(min(max(p.last_data_b[i] - p.site_b0[i] + 1, 0), p._width))
        for name in ("acc_e", "acc_cov", "acc_sum", "acc_n"):
            arrays[pre + name] = getattr(p, name)[ser, :used]
        arrays[pre + "ev_acc"] = ev_acc[i, :used]
        for name in ("e", "cov", "den", "ssum", "sn", "ev"):
            arrays[pre + "h_" + name] = getattr(h, name)[: h.n]
        # pending readings name their series by position in this site's key list
        arrays[pre + "p_series"] = np.searchsorted(ser, pend.series[pm]).astype(np.int32)
        arrays[pre + "p_time"] = pend.time_ns[pm]
        arrays[pre + "p_value"] = pend.value[pm]
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    return buf.getvalue()


def restore(p: Pipeline, blob: bytes) -> list[str]:
    """Load state made by :func:`snapshot` into ``p``; returns the site ids restored."""
    try:
        z = np.load(io.BytesIO(blob), allow_pickle=False)
        header = json.loads(z["header"].tobytes())
    except Exception as exc:  # noqa: BLE001 - any decode failure means unusable state
        msg = f"checkpointed state is unreadable ({exc}); delete the state record to start fresh"
        raise StateError(msg) from None
    if header.get("version") != STATE_VERSION:
        msg = (f"checkpointed state has format version {header.get('version')}; this pueflow "
               f"reads version {STATE_VERSION}. Replay the history or reset the state topic")
        raise StateError(msg)
    if header.get("base_ns") != p.base_ns or header.get("windows") != p.windows:
        msg = (f"checkpointed state was made with windows {header.get('windows')}; the config "
               f"now has {p.windows}. Restore with the old config or reset the state topic")
        raise StateError(msg)
    index = {s.id: i for i, s in enumerate(p.cfg.sites)}
    restored = []
    for st in header["sites"]:
        sid = st["id"]
        if sid not in index:
            continue
        i = index[sid]
        pre = f"{sid}/"
        reg = p.registry
        ser = np.array([reg.id(*k) for k in st["keys"]], np.int64)
        p._alloc_series(len(reg))
        p._widen(max(z[pre + "acc_e"].shape[1], 1))
        # series of this site that the snapshot does not know start from nothing
        n = len(reg)
        stale = np.setdiff1d(np.flatnonzero(reg.site[:n] == i), ser)
        p.last_t[stale] = NO_TIME
        p.first_t[stale] = NO_TIME
        p.last_v[stale] = 0.0
        p.spike_run[stale] = 0
        for name in ("acc_e", "acc_cov", "acc_sum", "acc_n"):
            getattr(p, name)[stale] = 0
        for name in ("last_t", "first_t", "last_v", "spike_run"):
            getattr(p, name)[ser] = z[pre + name]
        for name in ("acc_e", "acc_cov", "acc_sum", "acc_n"):
            src = z[pre + name]
            dst = getattr(p, name)
            dst[ser] = 0
            dst[ser, : src.shape[1]] = src
        p.site_max_t[i], p.site_wm[i] = st["max_t"], st["wm"]
        p.site_b0[i], p.started[i] = st["b0"], st["started"]
        p.last_data_b[i] = st["last_data_b"]
        p.next_start[i] = {k: int(v) for k, v in st["next_start"].items()}
        h = SiteHistory(b0=st["hist_b0"])
        h.append(z[pre + "h_e"], z[pre + "h_cov"], z[pre + "h_den"], z[pre + "h_ssum"],
                 z[pre + "h_sn"], z[pre + "h_ev"])
        p.hist[i] = h
        p._book_events(Batch.empty(), np.empty(0, np.int64), np.empty(0, np.int8),
                       np.empty(0, np.int32))
        ev = z[pre + "ev_acc"]
        p.ev_acc[i] = 0
        p.ev_acc[i, : ev.shape[0]] = ev
        # replace this site's pending readings with the checkpointed ones
        if len(p.pending):
            keep = reg.site[p.pending.series] != i
            p.pending = p.pending.take(keep)
        ps = ser[z[pre + "p_series"]].astype(np.int32)
        if len(ps):
            p.pending = Batch.concat([p.pending, Batch(z[pre + "p_time"], ps, z[pre + "p_value"])])
        restored.append(sid)
    p._site_series_n = -1
    return restored
