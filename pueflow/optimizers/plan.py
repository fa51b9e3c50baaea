"""A dispatch plan: the result of the LP or of the rule, in kW per step."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pueflow.optimizers.assets import SiteModel
from pueflow.optimizers.horizon import Problem
from pueflow.optimizers.lp import MW, SUPPLY_TIEBREAK, SiteLP
from pueflow.optimizers.safety import Setpoints
from pueflow.optimizers.solve import LPResult


@dataclass
class Plan:
    """What to do over the horizon.

    source : ``"lp"`` or ``"rule"``
    status : the LP's status (``"optimal"``, ``"time_limit"``, ``"infeasible"``, ...), or ``"rule"``
    reason : why the rule was published instead of the LP ("" when the LP's plan is used)
    battery_kw : + charge / − discharge [kW]
    job_kw, job_rate : (J, N) power [kW] and work rate [full-power h per h]
    supply_c, cooling_kw : (C, N) supply setpoint [°C] and planned cooling power [kW]
    soc_kwh : battery energy at the end of each step [kWh]
    objective : planned cost over the horizon incl. penalties [currency] (published as ``plan_cost``)
    curtail_kw : renewable output the plan leaves unused [kW]
    step_cost : each step's own cost [currency]: import (energy + carbon + DR penalty), − export,
        curtailment, battery wear; the demand charge and the penalties are horizon terms, in
        ``objective`` only
    unmet_h : (J,) work the plan leaves undone at deadlines and horizon-end shares [h]
    unmet_deadline_h : (J,) the part of it due at real deadlines inside the horizon [h]
    """

    source: str
    status: str
    reason: str
    time_ns: np.ndarray
    dt_h: np.ndarray
    grid_import_kw: np.ndarray
    grid_export_kw: np.ndarray
    pv_kw: np.ndarray
    wind_kw: np.ndarray
    battery_kw: np.ndarray
    soc_kwh: np.ndarray
    job_kw: np.ndarray
    job_rate: np.ndarray
    supply_c: np.ndarray
    cooling_kw: np.ndarray
    peak_kw: float
    objective: float
    unmet_h: np.ndarray
    unmet_deadline_h: np.ndarray
    solve_s: float = 0.0
    curtail_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    step_cost: np.ndarray = field(default_factory=lambda: np.zeros(0))
    notes: list[tuple[str, float, str]] = field(default_factory=list)

    @property
    def flex_it_cap_kw(self) -> np.ndarray:
        """Total power cap of the flexible jobs per step [kW]."""
        return self.job_kw.sum(axis=0) if len(self.job_kw) else np.zeros(len(self.time_ns))


def step_costs(model: SiteModel, p: Problem, imp_kw: np.ndarray, exp_kw: np.ndarray, curtail_kw: np.ndarray,
               battery_kw: np.ndarray) -> np.ndarray:
    """Return each step's own cost [currency] of a plan's flows, counted as the LP counts them.

    Parameters
    ----------
    imp_kw, exp_kw, curtail_kw : (N,) [kW]
        Grid import and export, unused renewable output.
    battery_kw : (N,) [kW]
        Battery power, + charge; wear is paid on both directions.
    """
    sig, dt = p.sig, p.dt_h
    spec = model.spec
    grid = sig.price_per_kwh + spec.carbon.price_per_t * sig.carbon_kg_per_kwh / 1e3
    dr = np.minimum(sig.import_limit_kw, model.import_limit_kw)
    cost = (grid * imp_kw + spec.grid.dr_penalty_per_kwh * np.maximum(imp_kw - dr, 0.0)
            - sig.export_per_kwh * exp_kw + model.curtail_per_kwh * curtail_kw)
    if model.battery is not None:
        cost = cost + model.battery.wear_per_kwh * np.abs(battery_kw)
    return dt * cost


def from_lp(lp: SiteLP, p: Problem, res: LPResult) -> Plan:
    """Read an optimal LP solution into a :class:`Plan` (``res.success`` must hold)."""
    x = res.solution()
    v = lp.value

    def kw(name: str) -> np.ndarray:
        return v(x, name) / MW

    n = lp.n
    if lp.has_battery:
        bkw = kw("ch") - kw("dis")
        soc = kw("e")
    else:
        bkw, soc = np.zeros(n), np.zeros(n)
    nj, nc = lp.nj, lp.nc
    seg = [kw(f"x{j}").reshape(-1, n) for j in range(nj)]
    job_kw = np.array([s.sum(axis=0) for s in seg]).reshape(nj, n)
    job_rate = np.array([lp.model.jobs[j].alpha_per_kw @ seg[j] for j in range(nj)]).reshape(nj, n)
    unmet = np.array([v(x, f"u{j}").sum() for j in range(nj)])
    due = np.zeros(nj)
    for j in range(nj):
        slots = np.unique(p.job_slot[j][p.job_deadline[j]])
        due[j] = v(x, f"u{j}")[slots].sum() if len(slots) else 0.0
    supply = np.array([v(x, f"T{c}") for c in range(nc)]).reshape(nc, n)
    cool = np.array([kw(f"q{c}") for c in range(nc)]).reshape(nc, n)
    imp, exp = kw("imp") + kw("impx"), kw("exp")
    curt = np.maximum(p.pv_kw + p.wind_kw - kw("pv") - kw("wind"), 0.0)
    cost = step_costs(lp.model, p, imp, exp, curt, bkw)
    peak = float(kw("P")[p.bill_slot[p.n_live - 1]]) if lp.has_demand and p.n_live else p.peak0_kw
    # the supply tie-break is not a cost: leave it out of what is published
    objective = res.objective - SUPPLY_TIEBREAK * float((supply * p.dt_h).sum())
    return Plan("lp", res.status, "", p.time_ns, p.dt_h, imp, exp, kw("pv"), kw("wind"), bkw, soc, job_kw,
                job_rate, supply, cool, peak, objective, unmet, due, res.solve_s, curt, cost, list(p.notes))


def setpoints_at(plan: Plan, k: int) -> Setpoints:
    """Return step ``k`` of ``plan`` as the setpoints to publish (before safety clipping).

    The job caps and supply temperatures are copies; a plan without curtailment gives 0 kW.
    """
    curt = float(plan.curtail_kw[k]) if len(plan.curtail_kw) else 0.0
    return Setpoints(float(plan.battery_kw[k]), float(plan.grid_import_kw[k]), plan.job_kw[:, k].copy(),
                     plan.supply_c[:, k].copy(), float(plan.grid_export_kw[k]), curt)
