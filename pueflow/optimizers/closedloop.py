"""The plant a backtest drives: battery SoC, job progress, cooling, grid; and what it cost.

:class:`ClosedLoop` takes one step's published setpoints (after safety clipping) and the
true renewables, firm IT load and ambient of that step, and moves its state: the battery
follows its setpoint within what the SoC allows, renewables are curtailed as published (and
beyond the export limit), jobs draw their cap while their window is
open and progress along their throughput curve, cooling draws what the plant model says at
the true heat and ambient (``cooling="physics"``) or what the LP's planes say
(``cooling="planes"``, which makes the plant the LP's own model: used to check that a
receding-horizon plan with perfect forecasts matches the oracle), and the grid closes the
balance. Costs are counted as the LP counts them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pueflow.optimizers import plant
from pueflow.optimizers.assets import SiteModel
from pueflow.optimizers.battery import soc_step
from pueflow.optimizers.horizon import DispatchState
from pueflow.optimizers.safety import Setpoints, clip_setpoints
from pueflow.optimizers.tariff import Signals

#: Per-step log columns (kW unless noted).
LOG = ("grid_import_kw", "grid_export_kw", "pv_kw", "wind_kw", "curtailed_kw", "battery_kw",
       "soc_kwh", "it_kw", "flex_kw", "cooling_kw", "facility_kw", "cost", "co2_kg")


@dataclass
class Truth:
    """What really happened, per step: renewables and firm IT [kW], ambient [°C]."""

    pv_kw: np.ndarray
    wind_kw: np.ndarray
    it_kw: np.ndarray
    ambient_c: np.ndarray


class ClosedLoop:
    """A site's plant over a period of ``len(truth)`` steps with its economic signals."""

    def __init__(self, model: SiteModel, truth: Truth, sig: Signals, job_occ: np.ndarray,
                 state: DispatchState, cooling: str = "physics") -> None:
        if cooling not in ("physics", "planes"):
            msg = f"cooling={cooling!r}; use 'physics' or 'planes'"
            raise ValueError(msg)
        self.m, self.truth, self.sig, self.state = model, truth, sig, state
        self.cooling = cooling
        n = len(truth.pv_kw)
        self.n = n
        self.occ = job_occ  # (J, n+1)
        self.log = {k: np.zeros(n) for k in LOG}
        self.job_kw = np.zeros((len(model.jobs), n))
        self.supply_c = np.zeros((len(model.loops), n))
        self.unmet_h = np.zeros(len(model.jobs))
        self.peaks: dict[int, float] = {}
        self.clips: dict[str, int] = {}
        self.chip_violations = 0
        self.grid_violations = 0
        self.dr_kwh = 0.0
        self.wear_kwh = 0.0
        if cooling == "planes":
            self.planes = [plant.planes_for(truth.ambient_c, lp.params, (0.0, lp.heat_max_kw),
                                            (lp.supply_min_c, lp.supply_max_c)) for lp in model.loops]

    def step(self, t: int, sp: Setpoints, firm_forecast_kw: float) -> None:
        """Apply ``sp`` during step ``t`` and advance the state."""
        m, st, tr, dt = self.m, self.state, self.truth, self.m.step_h
        on = (self.occ[:, t] >= 0) if len(m.jobs) else np.zeros(0, bool)
        sp, clips = clip_setpoints(m, sp, soc_kwh=st.soc_kwh, dt_h=dt, job_on=on, firm_kw=firm_forecast_kw)
        for clip in clips:
            self.clips[clip.asset] = self.clips.get(clip.asset, 0) + 1
        # jobs: draw the cap, progress along the curve, settle at the deadline
        flex = 0.0
        for j, job in enumerate(m.jobs):
            if on[j] and self.occ[j, t] != st.job_occ[j]:
                st.job_occ[j] = self.occ[j, t]
                st.job_done_h[j] = 0.0
            p = float(sp.job_kw[j])
            if on[j]:
                st.job_done_h[j] += float(job.rate(p)) * dt
                if self.occ[j, t + 1] != self.occ[j, t]:
                    self.unmet_h[j] += max(job.work_h - st.job_done_h[j], 0.0)
            st.job_kw[j] = p
            self.job_kw[j, t] = p
            flex += p
        it = tr.it_kw[t] + flex
        # cooling at the true heat and ambient
        cool = 0.0
        for c, lp in enumerate(m.loops):
            heat = tr.it_kw[t] * lp.heat_share + sum(sp.job_kw[j] * job.heat_share[c]
                                                    for j, job in enumerate(m.jobs))
            supply = float(sp.supply_c[c])
            if not lp.chiller:
                supply = max(supply, float(plant.min_supply_c(heat, tr.ambient_c[t], lp.params)))
            if supply + lp.rho_c_per_kw * heat > lp.chip_limit_c + 1e-6:
                self.chip_violations += 1
            if self.cooling == "planes":
                a, g, h = self.planes[c]
                cool += float(plant.planes_kw(heat, supply, a[t], g[t], h[t]))
            else:
                cool += float(plant._cooling_kw(heat, supply, tr.ambient_c[t], lp.params))
            st.supply_c[c] = float(sp.supply_c[c])
            self.supply_c[c, t] = supply
        facility = it * (1.0 + m.aux_fraction) + m.aux_kw + cool
        ren = tr.pv_kw[t] + tr.wind_kw[t]
        # the published curtailment is carried out (it pays to import instead where prices are
        # negative); surplus beyond the export limit is curtailed too
        cut = min(max(sp.curtail_kw, 0.0), ren)
        # battery within what the SoC allows (safety already clipped it); the site controller
        # also stops charging from pushing the import over the connection limit
        b = 0.0
        if m.battery is not None:
            bat = m.battery
            b = float(sp.battery_kw)
            if b > 0:
                b = min(b, max(m.import_limit_kw - (facility - ren + cut), 0.0))
            st.soc_kwh = float(soc_step(st.soc_kwh, b, dt, bat.eta_charge, bat.eta_discharge,
                                        bat.self_discharge_per_h))
            self.wear_kwh += abs(b) * dt
        g = facility + b - (ren - cut)
        imp = max(g, 0.0)
        if imp > m.import_limit_kw + 1e-6:
            self.grid_violations += 1
        exp = min(max(-g, 0.0), m.export_limit_kw)
        curt = cut + max(-g, 0.0) - exp
        sig = self.sig
        dr_limit = min(sig.import_limit_kw[t], m.import_limit_kw)
        self.dr_kwh += max(imp - dr_limit, 0.0) * dt
        if sig.demand_mask[t]:
            bill = int(sig.bill_id[t])
            self.peaks[bill] = max(self.peaks.get(bill, 0.0), imp)
        st.bill_id = int(sig.bill_id[t])
        st.peak_kw = self.peaks.get(st.bill_id, 0.0)
        spec = m.spec
        co2 = imp * sig.carbon_kg_per_kwh[t] * dt
        cost = dt * (imp * sig.price_per_kwh[t] - exp * sig.export_per_kwh[t]
                     + curt * m.curtail_per_kwh) + co2 * spec.carbon.price_per_t / 1e3
        if m.battery is not None:
            cost += abs(b) * dt * m.battery.wear_per_kwh
        cost += max(imp - dr_limit, 0.0) * dt * spec.grid.dr_penalty_per_kwh
        used = ren - exp - curt
        share = used / ren if ren > 0 else 0.0
        lg = self.log
        for key, val in (("grid_import_kw", imp), ("grid_export_kw", exp), ("pv_kw", tr.pv_kw[t] * share),
                         ("wind_kw", tr.wind_kw[t] * share), ("curtailed_kw", curt), ("battery_kw", b),
                         ("soc_kwh", st.soc_kwh), ("it_kw", it), ("flex_kw", flex), ("cooling_kw", cool),
                         ("facility_kw", facility), ("cost", cost), ("co2_kg", co2)):
            lg[key][t] = val
