"""Hard limits on every published setpoint; a clipped setpoint is reported, never hidden.

Whatever produced a setpoint (the LP, the rule, a replayed oracle plan, a user), this is
the last step before it leaves: battery power within its ratings and what the SoC allows
in the step, grid import within the connection, job caps within each job's range (zero
outside its window), and supply temperatures inside the loop's band and below what the
chip limit allows at the heat the step will carry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pueflow.optimizers import plant
from pueflow.optimizers.assets import SiteModel
from pueflow.optimizers.battery import power_window

#: Clipping by less than this is numerical noise from the solver, not an event.
TOLERANCE = 1e-6


@dataclass
class Setpoints:
    """One step's setpoints.

    Battery [kW, + charge], grid import [kW], job caps [kW] (J,), supply temperatures
    [degC] (C,), grid export [kW] and renewable curtailment [kW].
    """

    battery_kw: float
    grid_import_kw: float
    job_kw: np.ndarray
    supply_c: np.ndarray
    grid_export_kw: float = 0.0
    curtail_kw: float = 0.0

    @property
    def flex_it_cap_kw(self) -> float:
        """Sum of the job caps: the flexible IT power allowed this step [kW]."""
        return float(self.job_kw.sum())


@dataclass(frozen=True)
class Clip:
    """A setpoint that was moved to its limit: asset, point, requested and published values."""

    asset: str
    point: str
    requested: float
    published: float
    detail: str


def _clip(value: float, lo: float, hi: float) -> float:
    if not np.isfinite(value):
        return float(min(max(0.0, lo), hi))
    return float(min(max(value, lo), hi))


def clip_setpoints(model: SiteModel, sp: Setpoints, *, soc_kwh: float, dt_h: float,
                   job_on: np.ndarray, firm_kw: float) -> tuple[Setpoints, list[Clip]]:
    """Clip ``sp`` to the hard limits for a step of ``dt_h`` hours.

    Parameters
    ----------
    soc_kwh : battery energy at the start of the step [kWh]
    job_on : (J,) which jobs' windows are open
    firm_kw : firm IT load expected in the step [kW] (for the chip limit)
    """
    clips: list[Clip] = []

    def note(asset: str, point: str, req: float, pub: float, why: str) -> None:
        if not (abs(req - pub) <= TOLERANCE * max(1.0, abs(req))):
            clips.append(Clip(asset, point, float(req), float(pub), why))

    b = model.battery
    bat = 0.0
    if b is not None and dt_h > 0:
        # a SoC outside the band may stay where it is, never drift further out
        e = soc_kwh * (1.0 - b.self_discharge_per_h * dt_h)
        lo, hi = power_window(soc_kwh, dt_h, min(b.e_min_kwh, e), max(b.e_max_kwh, e), b.eta_charge,
                              b.eta_discharge, b.self_discharge_per_h, b.charge_kw, b.discharge_kw)
        bat = _clip(sp.battery_kw, lo, hi)
        note("battery", "battery_kw", sp.battery_kw, bat,
             f"battery limits [{lo:.1f}, {hi:.1f}] kW at SoC {soc_kwh:.0f} kWh")
    elif sp.battery_kw != 0:
        note("battery", "battery_kw", sp.battery_kw, 0.0, "no battery")
    grid = _clip(sp.grid_import_kw, 0.0, model.import_limit_kw)
    note("grid", "grid_import_kw", sp.grid_import_kw, grid, f"import limit {model.import_limit_kw:.0f} kW")
    export = _clip(sp.grid_export_kw, 0.0, model.export_limit_kw)
    note("grid", "grid_export_kw", sp.grid_export_kw, export, f"export limit {model.export_limit_kw:.0f} kW")
    curtail = _clip(sp.curtail_kw, 0.0, np.inf)
    note("renewables", "curtail_kw", sp.curtail_kw, curtail, "curtailment is not negative")
    jobs = np.zeros(len(model.jobs))
    for j, job in enumerate(model.jobs):
        lo, hi = (job.idle_kw, job.max_kw) if job_on[j] else (0.0, 0.0)
        jobs[j] = _clip(float(sp.job_kw[j]) if j < len(sp.job_kw) else 0.0, lo, hi)
        req = float(sp.job_kw[j]) if j < len(sp.job_kw) else 0.0
        note(f"job.{job.name}", "flex_it_cap_kw", req, jobs[j],
             f"job range [{lo:.0f}, {hi:.0f}] kW" + ("" if job_on[j] else " (window closed)"))
    supply = np.zeros(len(model.loops))
    for c, lp in enumerate(model.loops):
        heat = firm_kw * lp.heat_share + sum(jobs[j] * job.heat_share[c] for j, job in enumerate(model.jobs))
        chip = float(plant.max_supply_c(heat, lp.chip_limit_c, lp.rho_c_per_kw))
        hi = max(min(lp.supply_max_c, chip), lp.supply_min_c)
        req = float(sp.supply_c[c]) if c < len(sp.supply_c) else lp.nominal_c
        supply[c] = _clip(req, lp.supply_min_c, hi)
        why = f"band [{lp.supply_min_c:.1f}, {lp.supply_max_c:.1f}] °C, chip limit allows ≤ {chip:.1f} °C"
        note(f"cooling.{lp.name}", "cooling_supply_c", req, supply[c], why)
    return Setpoints(bat, grid, jobs, supply, export, curtail), clips
