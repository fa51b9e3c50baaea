"""A dispatch plan: the result of the LP or of the rule, in kW per step."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pueflow.optimizers.horizon import Problem
from pueflow.optimizers.lp import MW, SiteLP
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
    objective : planned cost over the horizon incl. penalties [currency]
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
    notes: list[tuple[str, float, str]] = field(default_factory=list)

    @property
    def flex_it_cap_kw(self) -> np.ndarray:
        """Total power cap of the flexible jobs per step [kW]."""
        return self.job_kw.sum(axis=0) if len(self.job_kw) else np.zeros(len(self.time_ns))


def from_lp(lp: SiteLP, p: Problem, res: LPResult) -> Plan:
    """Read an optimal LP solution into a :class:`Plan` (``res.success`` must hold)."""
    x = res.x
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
    peak = float(kw("P")[p.bill_slot[p.n_live - 1]]) if lp.has_demand and p.n_live else p.peak0_kw
    return Plan("lp", res.status, "", p.time_ns, p.dt_h, kw("imp") + kw("impx"), kw("exp"), kw("pv"),
                kw("wind"), bkw, soc, job_kw, job_rate, supply, cool, peak, res.objective, unmet,
                due, res.solve_s, list(p.notes))
