"""Per-poll shortcuts of the core give exactly the rows of the full work they skip."""

from __future__ import annotations

import numpy as np
import pytest

from pueflow.pipeline import windows as wn


@pytest.mark.parametrize("seed", range(20))
def test_shift_used_equals_a_full_shift_when_the_tail_is_empty(seed):
    # independent formulation: numpy slicing of the whole row, the tail filled with zeros
    rng = np.random.default_rng(seed)
    n_series, width = 7, int(rng.integers(1, 12))
    used = int(rng.integers(0, width + 1))
    k = int(rng.integers(0, width + 2))
    arrays = []
    for dtype in (np.float64, np.float64, np.float64, np.int64):
        a = np.zeros((n_series, width), dtype)
        a[:, :used] = rng.integers(1, 100, (n_series, used))
        arrays.append(a)
    site_series = np.sort(rng.choice(n_series, 4, replace=False)).astype(np.int32)
    want = [a.copy() for a in arrays]
    for a in want:
        for s in site_series:
            row = a[s].copy()
            a[s] = 0
            a[s, : max(width - k, 0)] = row[k:]
    wn.shift_used(site_series, k, used, *arrays)
    for got, exp in zip(arrays, want, strict=True):
        np.testing.assert_array_equal(got, exp)
