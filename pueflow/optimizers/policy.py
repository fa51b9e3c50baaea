"""Policies: the LP with its rule fallback (MPC), the rule alone, and the perfect-foresight oracle.

:class:`SiteDispatch` holds one site's LP structures (one per horizon length, built once)
and turns a :class:`~pueflow.optimizers.horizon.Problem` into a
:class:`~pueflow.optimizers.plan.Plan`. A plan is always returned: when the LP is
infeasible, runs out of time or fails in any way, the rule's plan is returned with the
reason in ``Plan.reason``.
"""

from __future__ import annotations

import numpy as np

from pueflow.optimizers import exact, sinks
from pueflow.optimizers.assets import SiteModel
from pueflow.optimizers.forecast import Forecast
from pueflow.optimizers.horizon import DispatchState, Problem, make_problem
from pueflow.optimizers.lp import SiteLP
from pueflow.optimizers.plan import Plan, from_lp
from pueflow.optimizers.rule import rule_plan
from pueflow.optimizers.solve import LPResult, solve

POLICIES = ("mpc", "rule", "oracle")
#: The oracle solves one large LP; it gets at least this long.
ORACLE_TIME_LIMIT_S = 120.0
#: Re-solves that pin cooling to its plane model and close opposite flows (see ``sinks``).
MAX_SINK_ROUNDS = 4


class SiteDispatch:
    """One site's dispatch engine (LP structures cached per horizon length)."""

    def __init__(self, model: SiteModel, backend: str | None = None) -> None:
        self.model = model
        self.backend = backend or model.spec.solver
        self._lps: dict[int, SiteLP] = {}

    def reset(self) -> None:
        """Forget warm-start bases, so the next solves do not depend on earlier runs."""
        for lp in self._lps.values():
            lp.last_basis = None

    def lp(self, n: int) -> SiteLP:
        """Return the LP structure for ``n`` steps, built on first use and kept."""
        lp = self._lps.get(n)
        if lp is None:
            lp = self._lps[n] = SiteLP(self.model, n)
        return lp

    def solve_lp(self, p: Problem, time_limit_s: float | None = None, exact_sinks: bool = False) -> Plan:
        """Return the LP's plan for ``p``, or the rule's with the reason the LP could not be used.

        Never raises for a failed solve: an error, a time-out (``time_limit_s`` [s], else
        the spec's), infeasibility or a non-finite solution give the rule's plan with
        ``Plan.status`` and ``Plan.reason`` saying why. With ``exact_sinks`` the steps that
        dump energy are solved exactly (binaries, :mod:`pueflow.optimizers.exact`) instead of
        by the plane-at-a-time re-solves of :mod:`pueflow.optimizers.sinks`.
        """
        limit = self.model.spec.time_limit_s if time_limit_s is None else time_limit_s
        try:
            lp = self.lp(p.n)
            arrays = lp.assemble(p)
            res = solve(lp, arrays, limit, self.backend)
        except (ValueError, IndexError, FloatingPointError, MemoryError) as exc:
            return _fallback(self.model, p, "error", f"LP failed: {type(exc).__name__}: {exc}")
        if not res.success:
            reason = {"time_limit": f"LP exceeded its {limit:g} s budget",
                      "infeasible": "LP infeasible: the limits cannot all be met (check grid limit, "
                                    "chip limit and supply band against the load)",
                      }.get(res.status, f"LP {res.status}: {res.message}")
            return _fallback(self.model, p, res.status, reason)
        note = ""
        if exact_sinks:  # failing that (time, solver), the plane-at-a-time re-solves below
            res, note = exact.solve_exact(lp, p, arrays, res, limit)
        if not exact_sinks or note:
            res, more = _without_sinks(lp, p, res, limit, self.backend)
            note = "; ".join(x for x in (note, more) if x)
        plan = from_lp(lp, p, res)
        if note:
            plan.notes.append(("lp", float(p.n_live), note))
        if not np.all(np.isfinite(plan.battery_kw)):
            return _fallback(self.model, p, "error", "LP returned a non-finite solution")
        return plan

    def plan(self, p: Problem, policy: str = "mpc") -> Plan:
        """Return the plan of ``policy`` for ``p``: the rule's for ``"rule"``, else the LP's.

        Any policy other than ``"rule"`` is planned by :meth:`solve_lp` (MPC and oracle).
        """
        if policy == "rule":
            return rule_plan(self.model, p)
        return self.solve_lp(p)

    def oracle(self, t0_ns: int, truth: Forecast, state: DispatchState | None = None,
               **kw) -> tuple[Problem, Plan]:
        """Plan with perfect foresight over all of ``truth``: one LP over the whole period.

        Exact where consuming pays (binaries on the steps that dump energy, see ``exact``), so
        the oracle is a lower bound of every policy.

        ``kw`` go to :func:`make_problem` (``sig``, ``cal``, ``end_ns``).
        """
        n = len(truth.pv_kw)
        state = state or DispatchState.initial(self.model)
        p = make_problem(self.model, t0_ns, n, truth, state, **kw)
        limit = max(self.model.spec.time_limit_s, ORACLE_TIME_LIMIT_S)
        return p, self.solve_lp(p, time_limit_s=limit, exact_sinks=True)


def _without_sinks(lp: SiteLP, p: Problem, res: LPResult, limit_s: float, backend: str) -> tuple[LPResult, str]:
    """Re-solve while the solution dumps energy into flows no plant can carry out (see ``sinks``).

    Cooling is pinned to its plane at the coldest supply first (where consuming is real)
    and, if that cannot be met or costs more, where the solution sat. Returns the last
    sink-free result (or the last one found, with a note saying what is left).
    """
    spent = res.solve_s
    best: LPResult | None = None
    note = ""
    for cold in (True, False):
        r = sinks.Restriction.none(lp.nc, lp.n)
        cur, failed = res, False
        for _ in range(MAX_SINK_ROUNDS):
            found = sinks.find_sinks(lp, p, cur.solution(), r, cold=cold)
            if _same(found, r):
                break
            r = found
            a = lp.assemble(p)
            sinks.apply(lp, p, a, r)
            nxt = solve(lp, a, max(limit_s - spent, 1e-3), backend)
            spent += nxt.solve_s
            if not nxt.success:
                note = f"the plan dumps energy the plant cannot absorb; re-solving without it: {nxt.status}"
                failed = True
                break
            cur = nxt
        if failed:
            continue
        if cur is res:
            return res, ""
        if _same(sinks.find_sinks(lp, p, cur.solution(), r, cold=cold), r) and (best is None or cur.objective < best.objective):
            best = cur
    if best is None:
        return res, note or f"the plan still dumps energy after {MAX_SINK_ROUNDS} re-solves"
    return LPResult(best.status, best.message, best.x, best.objective, spent, best.iterations, best.backend), ""


def _same(a: sinks.Restriction, b: sinks.Restriction) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)


def _fallback(model: SiteModel, p: Problem, status: str, reason: str) -> Plan:
    """Return the rule's plan standing in for the LP's; ``status`` keeps the LP's outcome."""
    plan = rule_plan(model, p, reason=reason)
    plan.status = status
    return plan
