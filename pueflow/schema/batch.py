"""The columnar ``Batch``: what every source produces and every kernel consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Batch:
    """Readings in columnar form.

    Attributes
    ----------
    time_ns : array [int64, ns since epoch, UTC]
        Event time of each reading.
    series : array [int32]
        Index into the :class:`~pueflow.schema.registry.Registry`.
    value : array [float64]
        Reading in the unit the meter rule declares (after its ``scale``).
    """

    time_ns: np.ndarray
    series: np.ndarray
    value: np.ndarray

    def __post_init__(self) -> None:
        self.time_ns = np.ascontiguousarray(self.time_ns, dtype=np.int64)
        self.series = np.ascontiguousarray(self.series, dtype=np.int32)
        self.value = np.ascontiguousarray(self.value, dtype=np.float64)
        n = len(self.time_ns)
        if len(self.series) != n or len(self.value) != n:
            msg = (f"Batch columns differ in length: time_ns={n}, series={len(self.series)}, "
                   f"value={len(self.value)}; build all three from the same rows")
            raise ValueError(msg)

    def __len__(self) -> int:
        return len(self.time_ns)

    @classmethod
    def empty(cls) -> Batch:
        """Return a batch of zero readings, with the column dtypes of any other."""
        return cls(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.float64))

    @classmethod
    def concat(cls, batches: list[Batch]) -> Batch:
        """Join batches end to end in list order (no sorting); ``[]`` gives an empty batch."""
        if not batches:
            return cls.empty()
        return cls(np.concatenate([b.time_ns for b in batches]),
                   np.concatenate([b.series for b in batches]),
                   np.concatenate([b.value for b in batches]))

    def take(self, index: np.ndarray | slice) -> Batch:
        """Return the rows selected by a boolean mask, an index array or a slice."""
        return Batch(self.time_ns[index], self.series[index], self.value[index])

    def split(self, n: int) -> list[Batch]:
        """Split into consecutive pieces of at most ``n`` rows (for tests and chunked replay).

        ``n`` < 1 counts as 1; an empty batch gives an empty list.
        """
        return [self.take(slice(i, i + n)) for i in range(0, len(self), max(n, 1))]
