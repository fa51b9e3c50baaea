"""Closed base buckets per site and the complete windows made from them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pueflow.roles import ALL_ROLES

N_ROLES = len(ALL_ROLES)


@dataclass
class Windows:
    """Complete windows of one site and one length, ready to become KPI rows."""

    site: int
    window: str
    start: np.ndarray  # [ns]
    den: np.ndarray  # energy series counted
    e: np.ndarray  # [k, roles] kWh
    cover: np.ndarray
    means: np.ndarray  # [k, roles] sensor means
    ev: np.ndarray  # [k, 3] rollovers, resets, gaps


@dataclass
class SiteHistory:
    """Closed base buckets of one site, kept until every window that needs them is out."""

    b0: int = 0
    n: int = 0
    e: np.ndarray = field(default_factory=lambda: np.zeros((0, N_ROLES)))
    cov: np.ndarray = field(default_factory=lambda: np.zeros(0))
    den: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ssum: np.ndarray = field(default_factory=lambda: np.zeros((0, N_ROLES)))
    sn: np.ndarray = field(default_factory=lambda: np.zeros((0, N_ROLES), np.int64))
    ev: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))

    def append(self, e, cov, den, ssum, sn, ev) -> None:
        k = len(cov)
        need = self.n + k
        if need > len(self.cov):
            cap = max(need, 2 * len(self.cov), 64)
            for name in ("e", "cov", "den", "ssum", "sn", "ev"):
                old = getattr(self, name)
                new = np.zeros((cap, *old.shape[1:]), old.dtype)
                new[: self.n] = old[: self.n]
                setattr(self, name, new)
        for name, val in (("e", e), ("cov", cov), ("den", den), ("ssum", ssum), ("sn", sn),
                          ("ev", ev)):
            getattr(self, name)[self.n: need] = val
        self.n = need

    def trim(self, keep_from_b: int) -> None:
        drop = min(max(keep_from_b - self.b0, 0), self.n)
        if drop:
            for name in ("e", "cov", "den", "ssum", "sn", "ev"):
                arr = getattr(self, name)
                arr[: self.n - drop] = arr[drop: self.n]
            self.n -= drop
            self.b0 += drop
