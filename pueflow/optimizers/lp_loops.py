"""The cooling-loop rows of the dispatch LP's constraint pattern (:class:`~.lp.SiteLP`).

Per loop ``c`` and step ``t``: its cooling power in the balance; the cooling planes
``q ≥ a_k heat + g_k T + h_k`` (coefficients set per problem); the supply-temperature ramp
``|T_t − T_{t−1}| ≤ r dt``; the free upper plane row that :mod:`pueflow.optimizers.sinks`
pins cooling to; the chip limit ``T + ρ heat ≤ T_chip``; and, without a chiller, the
free-cooling row ``T − (ITD/Q_d) heat ≥ T_amb − ΔT``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pueflow.optimizers import plant

MW = 1e-3  # kW -> MW


def loop_pattern(lp_: Any, put: Callable[..., None], b: int, t: np.ndarray, t1: np.ndarray) -> None:
    """Add every cooling loop's entries to the pattern through ``put``.

    Parameters
    ----------
    lp_ : SiteLP
        The LP being laid out (its ``model``, ``col``, ``row``, ``k`` and ``segments``).
    put : callable
        ``put(rows, cols, value, key=None)``: adds entries; ``key`` names the ones whose
        coefficient is set per problem.
    b : int
        First balance row.
    t, t1 : array [int]
        Step indices ``0..n-1`` and ``1..n-1``.
    """
    m, col, row, n = lp_.model, lp_.col, lp_.row, lp_.n
    for c, lp in enumerate(m.loops):
        T, q = col[f"T{c}"], col[f"q{c}"]
        put(b + t, q + t, -1.0)
        kk = np.repeat(np.arange(lp_.k), n)
        tt = np.tile(t, lp_.k)
        pr = row[f"pl{c}"] + kk * n + tt
        put(pr, q + tt, 1.0)
        put(pr, T + tt, 0.0, f"pl_T{c}")
        for j, job in enumerate(m.jobs):
            if job.heat_share[c] > 0:
                for k, x in enumerate(lp_.segments(j)):
                    put(pr, x + tt, 0.0, f"pl_x{c}_{j}_{k}")
        put(row[f"tr{c}"] + t, T + t, 1.0)
        put(row[f"tr{c}"] + t1, T + t1 - 1, -1.0)
        ub = row[f"ub{c}"]
        put(ub + t, q + t, 1.0)
        put(ub + t, T + t, 0.0, f"ub_T{c}")
        for j, job in enumerate(m.jobs):
            if job.heat_share[c] > 0:
                for k, x in enumerate(lp_.segments(j)):
                    put(ub + t, x + t, 0.0, f"ub_x{c}_{j}_{k}")
        ch = row[f"chip{c}"]
        put(ch + t, T + t, 1.0)
        for j, job in enumerate(m.jobs):
            if job.heat_share[c] > 0:
                for x in lp_.segments(j):
                    put(ch + t, x + t, lp.rho_c_per_kw / MW * job.heat_share[c])
        if not lp.chiller:
            fr = row[f"fc{c}"]
            itd = (lp.params[plant.P_DT] + lp.params[plant.P_APPROACH]) / lp.params[plant.P_HEAT]
            put(fr + t, T + t, 1.0)
            for j, job in enumerate(m.jobs):
                if job.heat_share[c] > 0:
                    for x in lp_.segments(j):
                        put(fr + t, x + t, -itd / MW * job.heat_share[c])
