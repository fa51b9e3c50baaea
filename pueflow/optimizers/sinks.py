"""Keep the LP from dumping energy into flows no plant can carry out.

The LP bounds cooling power only from below (``q ≥`` each plane), and lets charge and
discharge, import and export run at once. While energy costs money none of that pays, so
the optimum sits on the plant model. When consuming pays (a negative price, a curtailment
cost on surplus beyond the export cap, an export price above a negative import price) the
optimum would instead burn energy in cooling that does not exist, cycle the battery
against itself or import and export through one connection at once: a plan, and a
``plan_cost``, that no plant can realise.

:func:`find_sinks` reads a solution and names every step where that happened;
:func:`apply` turns those findings into bounds and rows of the next solve: cooling pinned
to the plane that carries it (``q ≤`` that plane, so ``q`` equals the plant model within
:data:`TOL_KW`; the convex cell of that plane), and the minor direction of the battery or
of the grid closed. The re-solved plan is one the plant can follow, and its objective is
its real cost (no penalty is added to make it so). Findings accumulate over rounds, so the
loop in :meth:`~pueflow.optimizers.policy.SiteDispatch.solve_lp` ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pueflow.optimizers.horizon import Problem
from pueflow.optimizers.lp import MW, LPArrays, SiteLP

#: Cooling above its plane model, or two opposite flows at once, by more than this is a sink [kW].
TOL_KW = 1e-3
#: Plane marker: cooling must stay at zero (every plane is negative where the plan sits).
ZERO = -2


@dataclass
class Restriction:
    """What the next solve may not do, per step.

    plane : (C, N) int
        -1 free; k ≥ 0: cooling at most plane k; :data:`ZERO`: cooling at most :data:`TOL_KW`
    no_charge, no_discharge, no_import, no_export : (N,) bool
        Flows closed in a step.
    """

    plane: np.ndarray
    no_charge: np.ndarray
    no_discharge: np.ndarray
    no_import: np.ndarray
    no_export: np.ndarray

    @classmethod
    def none(cls, n_loops: int, n: int) -> Restriction:
        """No restriction for ``n_loops`` loops over ``n`` steps."""
        z = np.zeros(n, bool)
        return cls(np.full((n_loops, n), -1, np.int64), z, z.copy(), z.copy(), z.copy())

    def any(self) -> bool:
        """Whether anything is restricted."""
        return bool((self.plane != -1).any() or self.no_charge.any() or self.no_discharge.any()
                    or self.no_import.any() or self.no_export.any())


def loop_heat_kw(lp: SiteLP, p: Problem, x: np.ndarray) -> np.ndarray:
    """Heat on each loop per step in solution ``x`` [kW_th], shape (C, N)."""
    m, n = lp.model, lp.n
    heat = p.heat_firm_kw.copy()
    for j, job in enumerate(m.jobs):
        power = lp.value(x, f"x{j}").reshape(-1, n).sum(axis=0) / MW
        heat += job.heat_share[:, None] * power[None, :]
    return heat


def plane_values(p: Problem, c: int, heat_kw: np.ndarray, supply_c: np.ndarray) -> np.ndarray:
    """Evaluate each plane of loop ``c`` at (heat [kW], supply [degC]) per step [kW_e], shape (N, K)."""
    return p.plane_a[c] * heat_kw[:, None] + p.plane_g[c] * supply_c[:, None] + p.plane_h[c]


def find_sinks(lp: SiteLP, p: Problem, x: np.ndarray, prev: Restriction | None = None,
               cold: bool = False) -> Restriction:
    """Find the steps of solution ``x`` that dump energy, added to ``prev``.

    Cooling that overshoots its model is pinned to the plane carrying it where the solution
    sits, or with ``cold`` to the plane carrying it at the coldest supply the ramp can reach
    (where the plant really consumes the most, which is what a plan that wants to consume is
    after).

    Returns
    -------
    Restriction
        A new object (``prev`` is left unchanged); with nothing found it equals ``prev``.
    """
    n, nc = lp.n, lp.nc
    out = Restriction.none(nc, n) if prev is None else Restriction(
        prev.plane.copy(), prev.no_charge.copy(), prev.no_discharge.copy(), prev.no_import.copy(),
        prev.no_export.copy())
    live = p.dt_h > 0
    heat = loop_heat_kw(lp, p, x)
    excess = np.zeros(n)  # cooling beyond the model: energy that would not be drawn
    for c in range(nc):
        supply = lp.value(x, f"T{c}")
        q = lp.value(x, f"q{c}") / MW
        vals = plane_values(p, c, heat[c], supply)
        model_kw = np.maximum(vals.max(axis=1), 0.0)
        excess += np.maximum(q - model_kw, 0.0)
        over = live & (q > model_kw + TOL_KW) & (out.plane[c] == -1)
        if cold:  # the coldest supply the ramp can reach from where the horizon starts
            reach = p.t_prev[c] - lp.model.loops[c].ramp_c_per_h * np.cumsum(p.dt_h)
            vals = plane_values(p, c, heat[c], np.maximum(p.t_lo[c], reach))
        k = np.where(vals.max(axis=1) > 0.0, vals.argmax(axis=1), ZERO)
        out.plane[c] = np.where(over, k, out.plane[c])
    if lp.has_battery:
        ch, dis = lp.value(x, "ch") / MW, lp.value(x, "dis") / MW
        both = live & (np.minimum(ch, dis) > TOL_KW)
        out.no_charge |= both & (ch < dis)
        out.no_discharge |= both & (ch >= dis)
    imp = (lp.value(x, "imp") + lp.value(x, "impx")) / MW
    exp = lp.value(x, "exp") / MW
    both = live & (np.minimum(imp, exp) > TOL_KW)
    # keep the direction the grid takes once the phantom cooling is gone
    real = imp - exp - excess
    out.no_import |= both & (real < 0.0)
    out.no_export |= both & (real >= 0.0)
    return out


def apply(lp: SiteLP, p: Problem, a: LPArrays, r: Restriction) -> None:
    """Write restriction ``r`` into the assembled arrays ``a`` (in place)."""
    n = lp.n
    col, row = lp.col, lp.row

    def blk(name: str) -> slice:
        return slice(col[name], col[name] + n)

    for c in range(lp.nc):
        k = r.plane[c]
        pinned = k >= 0
        q = blk(f"q{c}")
        a.col_hi[q] = np.where(k == ZERO, TOL_KW * MW, a.col_hi[q])
        if not pinned.any():
            continue
        kk = np.maximum(k, 0)
        t = np.arange(n)
        pa, pg, ph = p.plane_a[c][t, kk], p.plane_g[c][t, kk], p.plane_h[c][t, kk]
        a.data[lp.dyn_pos[f"ub_T{c}"]] = np.where(pinned, -pg * MW, 0.0)
        for j, job in enumerate(lp.model.jobs):
            if job.heat_share[c] > 0:
                for s in range(len(job.widths_kw)):
                    a.data[lp.dyn_pos[f"ub_x{c}_{j}_{s}"]] = np.where(pinned, -pa * job.heat_share[c], 0.0)
        ub = slice(row[f"ub{c}"], row[f"ub{c}"] + n)
        a.row_hi[ub] = np.where(pinned, (ph + pa * p.heat_firm_kw[c] + TOL_KW) * MW, np.inf)
    if lp.has_battery:
        a.col_hi[blk("ch")] = np.where(r.no_charge, 0.0, a.col_hi[blk("ch")])
        a.col_hi[blk("dis")] = np.where(r.no_discharge, 0.0, a.col_hi[blk("dis")])
    for name in ("imp", "impx"):
        a.col_hi[blk(name)] = np.where(r.no_import, 0.0, a.col_hi[blk(name)])
    a.col_hi[blk("exp")] = np.where(r.no_export, 0.0, a.col_hi[blk("exp")])
