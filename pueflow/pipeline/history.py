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
        """Append ``k = len(cov)`` newly closed base buckets after the stored ones.

        Storage grows by doubling (at least 64 buckets); ``k = 0`` changes nothing.

        Parameters
        ----------
        e : array [k, roles] [kWh]
            Energy per role.
        cov : array [k]
            Coverage of each bucket.
        den : array of int [k]
            Energy series counted in each bucket.
        ssum : array [k, roles]
            Sums of sensor readings per role.
        sn : array of int [k, roles]
            Numbers of sensor readings per role.
        ev : array of int [k, 3]
            Rollovers, resets and gaps.
        """
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
        """Drop the buckets before absolute base-bucket index ``keep_from_b``.

        An index at or before the first stored bucket drops nothing; one past the last
        drops everything (``b0`` then moves to the first bucket not yet stored).
        """
        drop = min(max(keep_from_b - self.b0, 0), self.n)
        if drop:
            for name in ("e", "cov", "den", "ssum", "sn", "ev"):
                arr = getattr(self, name)
                arr[: self.n - drop] = arr[drop: self.n]
            self.n -= drop
            self.b0 += drop
