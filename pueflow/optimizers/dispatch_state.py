"""The dispatcher's checkpoint: what a restarted consumer needs to publish the same setpoints.

Per dispatched site it saves the history of input windows (the forecasts' source), the
carried plant estimate (state of charge, billed peak, job progress, last setpoints), what
was published for the jobs, the measured peaks, the next re-dispatch boundary and the last
optimal LP basis of each horizon length (the warm start of the next solve: with it a
restored solve lands on the same vertex among equal-cost optima as an uninterrupted one).

The bytes are an ``npz`` archive with a JSON header; sites are named by id, so they restore
into a dispatcher of a process that owns a different set of sites.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pueflow.exceptions import StateError
from pueflow.schema.blob import pack, unpack

try:  # private scipy module, as in optimizers/solve.py: bases only exist with it
    from scipy.optimize._highspy import _core as _hc
except ImportError:  # pragma: no cover - depends on the scipy build
    _hc = None

#: Bumped whenever the layout changes.
DISPATCH_STATE_VERSION = 1
_HIST_WIDTH = 8


def snapshot_sites(sites: dict[str, Any], site_ids: list[str], run: str = "") -> bytes:
    """Save the dispatch state of ``site_ids`` (sites without dispatch are skipped).

    Parameters
    ----------
    sites : dict
        The dispatcher's per-site state (``Dispatcher.sites``).
    site_ids : list of str
        Sites to save.
    run : str
        ``run`` tag the dispatcher writes on its rows.

    Returns
    -------
    bytes
        An ``npz`` archive; empty bytes when none of ``site_ids`` is dispatched.
    """
    header: dict[str, Any] = {"version": DISPATCH_STATE_VERSION, "run": run, "sites": []}
    arrays: dict[str, np.ndarray] = {}
    for sid in site_ids:
        s = sites.get(sid)
        if s is None:
            continue
        st = s.state
        pre = f"{sid}/"
        keys = sorted(s.hist)
        arrays[pre + "hist_t"] = np.array(keys, np.int64)
        arrays[pre + "hist_v"] = np.array([s.hist[k] for k in keys], np.float64).reshape(len(keys), _HIST_WIDTH)
        pub = sorted(s.published)
        nj = len(st.job_kw)
        arrays[pre + "pub_t"] = np.array(pub, np.int64)
        arrays[pre + "pub_v"] = np.array([s.published[k] for k in pub], np.float64).reshape(len(pub), nj)
        for name in ("job_done_h", "job_occ", "job_kw", "supply_c"):
            arrays[pre + "st_" + name] = np.asarray(getattr(st, name))
        bases = []
        for n, lp in s.engine._lps.items():  # noqa: SLF001 - the engine's warm starts are its state
            if lp.last_basis is None:
                continue
            t0, cols, rows = lp.last_basis
            arrays[f"{pre}basis{n}_c"] = np.array([int(c) for c in cols], np.int8)
            arrays[f"{pre}basis{n}_r"] = np.array([int(r) for r in rows], np.int8)
            bases.append([int(n), int(t0)])
        header["sites"].append({
            "id": sid, "latest_end": int(s.latest_end), "next_ns": s.next_ns,
            "peak_upto": int(s.peak_upto), "soc_kwh": float(st.soc_kwh), "peak_kw": float(st.peak_kw),
            "bill_id": int(st.bill_id),
            "measured_peak": [[int(k), float(v)] for k, v in s.measured_peak.items()],
            "reported": [[j, int(w), float(v)] for (j, w), v in s.reported.items()],
            "bases": bases,
        })
    if not header["sites"]:
        return b""
    return pack(header, arrays)


def restore_sites(sites: dict[str, Any], blob: bytes) -> tuple[list[str], str]:
    """Load :func:`snapshot_sites` bytes into ``sites``; returns (site ids restored, run tag).

    Sites of the blob that the dispatcher does not dispatch are ignored; empty bytes
    restore nothing.

    Raises
    ------
    StateError
        The bytes are unreadable or of another layout version.
    """
    if not blob:
        return [], ""
    header, z = unpack(blob, "dispatch state", DISPATCH_STATE_VERSION)
    done = []
    for h in header["sites"]:
        sid = h["id"]
        s = sites.get(sid)
        if s is None:
            continue
        pre = f"{sid}/"
        st = s.state
        if len(z[pre + "st_job_kw"]) != len(st.job_kw) or len(z[pre + "st_supply_c"]) != len(st.supply_c):
            msg = (f"checkpointed dispatch state of site {sid!r} has other jobs or cooling loops than the "
                   "config; restore with the old config or reset the state topic")
            raise StateError(msg)
        s.hist = {int(t): tuple(float(x) for x in v)
                  for t, v in zip(z[pre + "hist_t"].tolist(), z[pre + "hist_v"], strict=True)}
        s.published = {int(t): np.array(v, np.float64)
                       for t, v in zip(z[pre + "pub_t"].tolist(), z[pre + "pub_v"], strict=True)}
        s.latest_end, s.next_ns, s.peak_upto = h["latest_end"], h["next_ns"], h["peak_upto"]
        s.measured_peak = {int(k): float(v) for k, v in h["measured_peak"]}
        s.reported = {(j, int(w)): float(v) for j, w, v in h["reported"]}
        st.soc_kwh, st.peak_kw, st.bill_id = h["soc_kwh"], h["peak_kw"], h["bill_id"]
        st.job_done_h = z[pre + "st_job_done_h"].astype(np.float64)
        st.job_occ = z[pre + "st_job_occ"].astype(np.int64)
        st.job_kw = z[pre + "st_job_kw"].astype(np.float64)
        st.supply_c = z[pre + "st_supply_c"].astype(np.float64)
        s.engine.reset()
        if _hc is not None:
            for n, t0 in h["bases"]:
                cols = [_hc.HighsBasisStatus(int(c)) for c in z[f"{pre}basis{n}_c"].tolist()]
                rows = [_hc.HighsBasisStatus(int(r)) for r in z[f"{pre}basis{n}_r"].tolist()]
                s.engine.lp(int(n)).last_basis = (int(t0), cols, rows)
        done.append(sid)
    return done, str(header.get("run", ""))
