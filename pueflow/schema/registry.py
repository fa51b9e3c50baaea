"""The series registry: (site, device, point) -> int32 series id plus its meter parameters.

Kernels never see strings: a source maps each distinct key once through
:meth:`Registry.ids` and hands the kernels int32 ids. Parameters live in parallel numpy
arrays indexed by series id so numba can read them.
"""

from __future__ import annotations

import fnmatch
import re

import numpy as np
import polars as pl

from pueflow.config.models import Config
from pueflow.roles import ROLE_INDEX, SIGNED_ROLES

KIND_UNKNOWN, KIND_REGISTER, KIND_POWER, KIND_SENSOR = -1, 0, 1, 2
_KIND = {"register": KIND_REGISTER, "power": KIND_POWER, "sensor": KIND_SENSOR}
#: A meter with no ``max_kw`` flags readings above this multiple of the site's IT capacity.
DEFAULT_MAX_KW_FACTOR = 3.0


class Registry:
    """Assigns series ids on first sight and resolves each key's meter rule once.

    A key whose site is not in the config, or that matches no meter rule, still gets an id
    (so its readings can be counted and reported) with ``role == -1``.
    """

    _FIELDS = (("site", np.int32, -1), ("role", np.int16, -1), ("kind", np.int8, -1),
               ("register_max", np.float64, 0.0), ("jitter", np.float64, 0.0),
               ("max_gap_ns", np.int64, 0), ("max_kw", np.float64, np.inf),
               ("scale", np.float64, 1.0), ("signed", np.bool_, False))
    # One array per _FIELDS entry, indexed by series id; set (and grown) by _grow.
    site: np.ndarray
    role: np.ndarray
    kind: np.ndarray
    register_max: np.ndarray
    jitter: np.ndarray
    max_gap_ns: np.ndarray
    max_kw: np.ndarray
    scale: np.ndarray
    signed: np.ndarray

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.site_ids = [s.id for s in cfg.sites]
        # globs compiled once: a new series is matched in microseconds, not by fnmatch
        self._rules = [[(re.compile(fnmatch.translate(r.device)).match,
                         re.compile(fnmatch.translate(r.point)).match, r) for r in s.meters]
                       for s in cfg.sites]
        self._site_index = {sid: i for i, sid in enumerate(self.site_ids)}
        self.keys: list[tuple[str, str, str]] = []
        self._ids: dict[tuple[str, str, str], int] = {}
        self._cap = 0
        self._rank: np.ndarray | None = None
        self._key_cols: tuple[pl.Series, ...] = ()
        for name, dtype, _ in self._FIELDS:
            setattr(self, name, np.empty(0, dtype))
        self._grow(64)

    def __len__(self) -> int:
        return len(self.keys)

    def _grow(self, need: int) -> None:
        if need <= self._cap:
            return
        cap = max(need, 2 * self._cap, 64)
        for name, dtype, fill in self._FIELDS:
            old = getattr(self, name)
            new = np.full(cap, fill, dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        self._cap = cap

    def id(self, site: str, device: str, point: str) -> int:
        """Return the series id of one key, registering it on first sight.

        A new key gets the next id and its meter parameters from the first matching rule of
        its site; an unknown site or an unmatched key keeps ``role == -1``.
        """
        key = (site, device, point)
        sid = self._ids.get(key)
        if sid is not None:
            return sid
        sid = len(self.keys)
        self._grow(sid + 1)
        self.keys.append(key)
        self._ids[key] = sid
        self._rank = None
        si = self._site_index.get(site)
        if si is not None:
            site_cfg = self.cfg.sites[si]
            self.site[sid] = si
            rule = next((r for dev, pt, r in self._rules[si] if dev(device) and pt(point)), None)
            if rule is not None:
                self.role[sid] = ROLE_INDEX[rule.role]
                self.kind[sid] = _KIND[rule.kind]
                self.register_max[sid] = rule.register_max
                self.jitter[sid] = rule.jitter_kwh
                self.max_gap_ns[sid] = rule.max_gap_ns()
                self.max_kw[sid] = (rule.max_kw if rule.max_kw is not None
                                    else DEFAULT_MAX_KW_FACTOR * site_cfg.it_capacity_kw)
                self.scale[sid] = rule.scale
                self.signed[sid] = rule.role in SIGNED_ROLES
        return sid

    def ids(self, keys: list[tuple[str, str, str]]) -> np.ndarray:
        """Return the int32 series ids of many keys (call with the *distinct* keys of a chunk)."""
        return np.fromiter((self.id(*k) for k in keys), np.int32, count=len(keys))

    def find(self, site: str, device: str, point: str) -> int | None:
        """Return the series id of a key already registered, else ``None`` (never registers)."""
        return self._ids.get((site, device, point))

    def rank(self) -> np.ndarray:
        """Return the canonical position of each series (sorted by key).

        Sums across series are done in this order, so they do not depend on the order in
        which series were first seen. Cached until a series is added.
        """
        if self._rank is None or len(self._rank) != len(self.keys):
            order = sorted(range(len(self.keys)), key=self.keys.__getitem__)
            rank = np.empty(len(self.keys), np.int64)
            rank[np.asarray(order, np.int64)] = np.arange(len(self.keys))
            self._rank = rank
        return self._rank

    def order(self) -> np.ndarray:
        """Return the series ids in canonical (key-sorted) order, as int32."""
        return np.argsort(self.rank(), kind="stable").astype(np.int32)

    def key_columns(self) -> tuple[pl.Series, pl.Series, pl.Series]:
        """Return site, device and point of every series id as String columns.

        One entry more than there are series: ``"?"``, for ids that name none (gather with
        ``len(registry)`` there). Built once, again only after a series is added.
        """
        n = len(self.keys)
        if not self._key_cols or len(self._key_cols[0]) != n + 1:
            self._key_cols = tuple(
                pl.Series([k[j] for k in self.keys] + ["?"], dtype=pl.String) for j in range(3))
        site, device, point = self._key_cols
        return site, device, point

    def arrays(self) -> dict[str, np.ndarray]:
        """Return the parameter arrays trimmed to the registered series (views, for kernels).

        Keys are the field names (``site``, ``role``, ``kind``, ``register_max``, ...);
        a view changes when its series' parameters do, and is stale after a series is added.
        """
        n = len(self.keys)
        return {name: getattr(self, name)[:n] for name, _, _ in self._FIELDS}
