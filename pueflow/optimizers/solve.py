"""Solve an assembled LP with HiGHS; the outcome is returned as data, never raised.

Two routes to the HiGHS that ships inside scipy:

* ``"highs"``: scipy's bundled HiGHS bindings directly (``scipy.optimize._highspy``), with
  the column-wise matrix passed as-is. This skips scipy's input checks and its per-column
  Python loop over the duals, which costs more than the solve on small horizons.
* ``"milp"``: the public ``scipy.optimize.milp`` (no integer columns, so an LP).

``"auto"`` takes ``"highs"`` when the bindings import and ``"milp"`` otherwise; both are
tested to give the same optimum. The ``"highs"`` route also warm-starts each solve from the
previous optimal basis of the same LP structure, shifted by the steps the horizon moved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pueflow.exceptions import OptimizerError
from pueflow.optimizers.lp import LPArrays, SiteLP

try:  # private scipy module: guarded, with the public milp as the fallback
    from scipy.optimize._highspy import _core as _hc
except ImportError:  # pragma: no cover - depends on the scipy build
    _hc = None


@dataclass(frozen=True)
class LPResult:
    """Outcome of one solve.

    status : ``"optimal"``, ``"time_limit"``, ``"infeasible"``, ``"unbounded"`` or ``"error"``
    objective : cost including constant terms [currency]; NaN without a solution
    """

    status: str
    message: str
    x: np.ndarray | None
    objective: float
    solve_s: float
    iterations: int
    backend: str

    @property
    def success(self) -> bool:
        """Whether the solve reached an optimum and carries its solution vector."""
        return self.status == "optimal" and self.x is not None

    def solution(self) -> np.ndarray:
        """Return the solution vector ``x``.

        Returns
        -------
        array
            One value per LP column (the LP's own units: MW, MWh, degC; see ``SiteLP``).

        Raises
        ------
        OptimizerError
            If the solve produced no solution (status ``error``, ``infeasible``, ...); read
            it only from a result whose :attr:`success` holds.
        """
        if self.x is None:
            msg = (f"LP result has no solution (status {self.status!r}: {self.message}); "
                   "read x only from a result whose .success holds")
            raise OptimizerError(msg)
        return self.x


def available_backends() -> tuple[str, ...]:
    """Return the solve routes this scipy build offers: ``("highs", "milp")`` or ``("milp",)``."""
    return ("highs", "milp") if _hc is not None else ("milp",)


def _status_name(ms) -> str:
    if _hc is None:  # pragma: no cover
        return "error"
    s = _hc.HighsModelStatus
    return {s.kOptimal: "optimal", s.kTimeLimit: "time_limit", s.kIterationLimit: "time_limit",
            s.kInfeasible: "infeasible", s.kUnbounded: "unbounded",
            s.kUnboundedOrInfeasible: "infeasible"}.get(ms, "error")


def _warm_basis(lp: SiteLP, a: LPArrays, step_ns: int):
    """Return the last optimal basis of ``lp`` moved to ``a``'s start time, or ``None``.

    ``None`` when there is no basis yet or ``a`` does not start a whole number of steps
    (``step_ns`` [ns]) within the horizon after it.
    """
    if lp.last_basis is None or step_ns <= 0:
        return None
    t_prev, cols, rows = lp.last_basis
    shift, rem = divmod(a.t0_ns - t_prev, step_ns)
    if rem or not 0 <= shift < lp.n:
        return None
    b = _hc.HighsBasis()
    b.col_status = lp.shifted(cols, int(shift), rows=False)
    b.row_status = lp.shifted(rows, int(shift), rows=True)
    b.alien = True  # HiGHS repairs a shifted basis that is not square
    return b


def _solve_highs(lp: SiteLP, a: LPArrays, time_limit_s: float, warm: bool = True) -> LPResult:
    t0 = time.perf_counter()
    h = _hc._Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    # the array overload copies the numpy buffers directly (the HighsLp route converts element-wise)
    passed = h.passModel(lp.n_cols, lp.n_rows, lp.nnz, 1, 1, a.offset, a.c, a.col_lo, a.col_hi,
                         a.row_lo, a.row_hi, lp.indptr, lp.indices, a.data, lp.integrality)
    if passed == _hc.HighsStatus.kError:
        return LPResult("error", "HiGHS rejected the model", None, np.nan,
                        time.perf_counter() - t0, 0, "highs")
    basis = _warm_basis(lp, a, lp.model.step_ns) if warm else None
    if basis is not None and h.setBasis(basis) == _hc.HighsStatus.kError:
        basis = None
    h.run()
    ms = h.getModelStatus()
    status = _status_name(ms)
    if status != "optimal" and basis is not None:
        # a stale basis must never cost a plan: retry cold within what is left of the budget
        left = time_limit_s - (time.perf_counter() - t0)
        if left > 0:
            res = _solve_highs(lp, a, left, warm=False)
            return LPResult(res.status, res.message, res.x, res.objective, time.perf_counter() - t0,
                            res.iterations, res.backend)
    info = h.getInfo()
    x = None
    obj = np.nan
    if status == "optimal":
        x = np.array(h.getSolution().col_value)
        obj = float(info.objective_function_value)
        b = h.getBasis()
        lp.last_basis = (a.t0_ns, list(b.col_status), list(b.row_status))
    return LPResult(status, h.modelStatusToString(ms), x, obj, time.perf_counter() - t0,
                    int(info.simplex_iteration_count + info.ipm_iteration_count),
                    "highs-warm" if basis is not None else "highs")


def _solve_milp(lp: SiteLP, a: LPArrays, time_limit_s: float) -> LPResult:
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csc_array

    t0 = time.perf_counter()
    mat = csc_array((a.data, lp.indices, lp.indptr), shape=(lp.n_rows, lp.n_cols))
    try:
        res = milp(a.c, constraints=LinearConstraint(mat, a.row_lo, a.row_hi),
                   bounds=Bounds(a.col_lo, a.col_hi), options={"time_limit": float(time_limit_s)})
    except (ValueError, MemoryError) as exc:
        return LPResult("error", str(exc), None, np.nan, time.perf_counter() - t0, 0, "milp")
    status = {0: "optimal", 1: "time_limit", 2: "infeasible", 3: "unbounded"}.get(res.status, "error")
    ok = status == "optimal" and res.x is not None
    return LPResult(status, str(res.message), np.asarray(res.x) if ok else None,
                    float(res.fun) + a.offset if ok else np.nan, time.perf_counter() - t0, 0, "milp")


def solve(lp: SiteLP, a: LPArrays, time_limit_s: float = 2.0, backend: str = "auto",
          warm: bool = True) -> LPResult:
    """Solve ``a`` (assembled by ``lp``) within ``time_limit_s``; never raises on solver trouble.

    With ``warm`` the ``"highs"`` route starts from ``lp``'s last optimal basis shifted to
    ``a``'s start time (receding-horizon solves differ little from one to the next).
    """
    if backend == "auto":
        backend = "highs" if _hc is not None else "milp"
    if backend == "highs" and _hc is not None:
        try:
            return _solve_highs(lp, a, time_limit_s, warm)
        except (RuntimeError, TypeError, ValueError) as exc:  # binding drift: use the public route
            res = _solve_milp(lp, a, time_limit_s)
            return LPResult(res.status, f"{res.message} (highs bindings failed: {exc})", res.x,
                            res.objective, res.solve_s, res.iterations, res.backend)
    return _solve_milp(lp, a, time_limit_s)
