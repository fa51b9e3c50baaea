"""The exact dispatch optimum where consuming pays: binaries on the steps that dump energy.

The LP (:mod:`pueflow.optimizers.lp`) is exact while energy costs money. Where consuming
pays it lets cooling sit above its plant model, charge and discharge at once, or import and
export at once (see :mod:`pueflow.optimizers.sinks`). :func:`solve_exact` removes that with
a mixed-integer program (``scipy.optimize.milp``, HiGHS) whose binaries sit only on the
steps a solution flagged:

* cooling equals its convex piecewise model ``max(0, max_k plane_k)``: one binary per plane
  (and one for zero) per loop, ``Σ z = 1`` and ``q ≤ plane_k + M (1 − z_k)``;
* one binary per step each for the battery (``ch ≤ C b``, ``dis ≤ D (1 − b)``) and the
  grid (``imp + impx ≤ I g``, ``exp ≤ E (1 − g)``).

Every other step keeps the LP relaxation. Each solve is a relaxation of the exact problem;
once its solution flags no new step it is feasible for the exact problem, hence optimal
(within the solver's MIP gap). Flagged steps only grow, so the loop ends.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array, csc_array, csr_array, hstack, vstack

from pueflow.optimizers import sinks
from pueflow.optimizers.horizon import Problem
from pueflow.optimizers.lp import LPArrays, SiteLP
from pueflow.optimizers.solve import LPResult

#: Relative MIP gap the exact solve stops at (HiGHS' default is 1e-4).
MIP_GAP = 1e-7


def flagged(lp: SiteLP, p: Problem, x: np.ndarray) -> np.ndarray:
    """Return the steps where solution ``x`` dumps energy (any loop, battery, grid), shape (N,) bool."""
    r = sinks.find_sinks(lp, p, x)
    return (r.plane != -1).any(axis=0) | r.no_charge | r.no_discharge | r.no_import | r.no_export


def _row_range(mat: csr_array, lo: np.ndarray, hi: np.ndarray, skip: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of each row of ``mat`` over the box [lo, hi], column ``skip`` left out."""
    m = mat.tocoo()
    keep = m.col != skip
    r, cidx, v = m.row[keep], m.col[keep], m.data[keep]
    a, b = v * lo[cidx], v * hi[cidx]
    mn = np.zeros(mat.shape[0])
    mx = np.zeros(mat.shape[0])
    np.add.at(mn, r, np.minimum(a, b))
    np.add.at(mx, r, np.maximum(a, b))
    return mn, mx


def _build(lp: SiteLP, a: LPArrays, steps: np.ndarray):
    """Append binaries and big-M rows for ``steps`` to ``a``; return (c, A, rlo, rhi, clo, chi, integrality)."""
    n, col, row = lp.n, lp.col, lp.row
    mat = csc_array((a.data, lp.indices, lp.indptr), shape=(lp.n_rows, lp.n_cols)).tocsr()
    clo, chi = a.col_lo.copy(), a.col_hi.copy()
    nb = 0
    ents: list[tuple[int, int, float]] = []  # (new row, column, value); binaries get column ids ≥ n_cols
    extra_rows: list[csr_array] = []  # rows over the original columns
    rlo: list[float] = []
    rhi: list[float] = []

    def new_row(orig: dict[int, float], lo_: float, hi_: float) -> int:
        vec = np.zeros(lp.n_cols)
        for k, v in orig.items():
            vec[k] += v
        extra_rows.append(csr_array(vec[None, :]))
        rlo.append(lo_)
        rhi.append(hi_)
        return len(rlo) - 1

    for t in np.flatnonzero(steps).tolist():  # Python ints: they index dicts and lists below
        for c in range(lp.nc):
            qc = col[f"q{c}"] + t
            prow = row[f"pl{c}"] + np.arange(lp.k) * n + t
            sub = mat[prow]  # row_k · x ≥ lo_k  ⇔  q ≥ plane_k
            plo = a.row_lo[prow]
            mn, mx = _row_range(sub, clo, chi, qc)  # row_k·x = q + R_k with R_k in [mn, mx]
            # plane_k = lo_k − R_k; the exact q never exceeds the highest plane over the box
            q_hi = max(0.0, float(np.max(plo - mn)))
            chi[qc] = min(chi[qc], q_hi)
            ids = list(range(nb, nb + lp.k + 1))
            nb += lp.k + 1
            for k in range(lp.k):
                big = q_hi + float(mx[k]) - float(plo[k]) + 1e-9  # max of q − plane_k over the box
                r = new_row({}, -np.inf, float(plo[k]) + big)
                extra_rows[r] = sub[[k]]
                ents.append((r, ids[k], big))
            r = new_row({qc: 1.0}, -np.inf, q_hi + sinks.TOL_KW * 1e-3)  # zero: q ≤ q_hi (1 − z0)
            ents.append((r, ids[-1], q_hi))
            r = new_row({}, 1.0, 1.0)
            ents.extend((r, i, 1.0) for i in ids)
        pairs: list[tuple[tuple[int, ...], tuple[int, ...]]] = [
            ((col["imp"] + t, col["impx"] + t), (col["exp"] + t,))]
        if lp.has_battery:
            pairs.append(((col["ch"] + t,), (col["dis"] + t,)))
        for one, other in pairs:
            cap1 = float(sum(chi[i] for i in one))
            cap2 = float(sum(chi[i] for i in other))
            r = new_row(dict.fromkeys(one, 1.0), -np.inf, 0.0)  # Σ one ≤ cap1 y
            ents.append((r, nb, -cap1))
            r = new_row(dict.fromkeys(other, 1.0), -np.inf, cap2)  # Σ other ≤ cap2 (1 − y)
            ents.append((r, nb, cap2))
            nb += 1
    nr = len(rlo)
    left = vstack([mat, *extra_rows]) if extra_rows else mat
    er, ec, ev = (np.array([e[i] for e in ents]) for i in range(3))
    right = coo_array((ev.astype(float), (er.astype(np.int64) + lp.n_rows, ec.astype(np.int64))),
                      shape=(lp.n_rows + nr, nb))
    big_a = hstack([left, right]).tocsc()
    cost = np.r_[a.c, np.zeros(nb)]
    integ = np.r_[np.zeros(lp.n_cols), np.ones(nb)]
    return (cost, big_a, np.r_[a.row_lo, rlo], np.r_[a.row_hi, rhi], np.r_[clo, np.zeros(nb)],
            np.r_[chi, np.ones(nb)], integ)


def solve_exact(lp: SiteLP, p: Problem, a: LPArrays, res: LPResult, time_limit_s: float) -> tuple[LPResult, str]:
    """Return the exact optimum of problem ``p`` given the LP's result ``res`` on arrays ``a``.

    Parameters
    ----------
    lp, p, a : SiteLP, Problem, LPArrays
        The LP, its problem and its assembled arrays (not modified).
    res : LPResult
        The LP's optimal result; returned unchanged when it dumps no energy.
    time_limit_s : float
        Budget for all mixed-integer solves [s].

    Returns
    -------
    (LPResult, str)
        The exact result (objective [currency] with the LP's constant) and ``""``; or, when a
        solve fails or the budget runs out, ``res`` and a note saying why.
    """
    steps = flagged(lp, p, res.solution())
    if not steps.any():
        return res, ""
    t0 = time.perf_counter()
    for _ in range(lp.n + 1):
        left = time_limit_s - (time.perf_counter() - t0)
        if left <= 0:
            return res, "the exact solve where consuming pays ran out of time"
        cost, mat, rlo, rhi, clo, chi, integ = _build(lp, a, steps)
        out = milp(cost, constraints=LinearConstraint(mat, rlo, rhi), bounds=Bounds(clo, chi),
                   integrality=integ, options={"time_limit": float(left), "mip_rel_gap": MIP_GAP})
        if out.status != 0 or out.x is None:
            return res, f"the exact solve where consuming pays failed: {out.message}"
        x = np.asarray(out.x)[:lp.n_cols]
        more = flagged(lp, p, x) & ~steps
        if not more.any():
            return LPResult("optimal", str(out.message), x, float(out.fun) + a.offset,
                            res.solve_s + time.perf_counter() - t0, res.iterations, "milp-exact"), ""
        steps = steps | more
    return res, "the exact solve where consuming pays did not settle"
