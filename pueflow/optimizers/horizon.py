"""One dispatch problem: the horizon's steps, forecasts, signals, state and repaired bounds.

:func:`make_problem` is shared by the LP and the rule: it lays the job windows, deadlines,
billing periods and demand-response limits on the horizon, carries the measured state
(SoC, billed peak, work done, last job power and supply temperature) into it, and repairs
a state the limits cannot hold (a measured SoC outside its band, a supply temperature the
chip limit forbids) so that the problem stays feasible. Each repair is noted in
``Problem.notes`` for the quality stream.

A horizon may end early (``end_ns``): the steps after the end are *dead* (``dt_h = 0``) so the
LP's structure does not change with the horizon's length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pueflow.optimizers import plant
from pueflow.optimizers.assets import SiteModel
from pueflow.optimizers.forecast import Forecast
from pueflow.optimizers.tariff import Calendar, Signals, calendar, in_window, signals


@dataclass
class DispatchState:
    """What carries from one dispatch to the next.

    soc_kwh : battery energy [kWh]
    peak_kw : highest demand-charged import so far in billing period ``bill_id`` [kW]
    job_done_h : work done in each job's current window [full-power h]
    job_occ : id of that window (local day its window opened; -1 none)
    job_kw : last power of each job [kW]
    supply_c : last supply setpoint of each loop [°C]
    """

    soc_kwh: float
    peak_kw: float = 0.0
    bill_id: int = -1
    job_done_h: np.ndarray = field(default_factory=lambda: np.zeros(0))
    job_occ: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    job_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    supply_c: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def initial(cls, model: SiteModel) -> DispatchState:
        """Return the state before the first step.

        The battery is at its initial charge (0 without one), no job window is open, no
        work is done and every loop supplies its nominal temperature.
        """
        b = model.battery
        nj = len(model.jobs)
        return cls(soc_kwh=b.e_init_kwh if b else 0.0, job_done_h=np.zeros(nj),
                   job_occ=np.full(nj, -1, np.int64), job_kw=np.zeros(nj),
                   supply_c=np.array([lp.nominal_c for lp in model.loops]))

    def copy(self) -> DispatchState:
        """Return a deep copy (the arrays too), so stepping the copy leaves this one alone."""
        return DispatchState(self.soc_kwh, self.peak_kw, self.bill_id, self.job_done_h.copy(),
                             self.job_occ.copy(), self.job_kw.copy(), self.supply_c.copy())


@dataclass
class Problem:
    """A horizon ready for the LP or the rule (powers in kW, per step unless noted)."""

    t0_ns: int
    time_ns: np.ndarray
    dt_h: np.ndarray
    n_live: int
    pv_kw: np.ndarray
    wind_kw: np.ndarray
    firm_kw: np.ndarray
    ambient_c: np.ndarray
    sig: Signals
    job_on: np.ndarray  # (J, N) window open
    job_new: np.ndarray  # (J, N) step opens a new window: work restarts from 0
    job_req_h: np.ndarray  # (J, N) cumulative work required by the end of the step
    job_deadline: np.ndarray  # (J, N) real deadline (not a pro-rated horizon-end share)
    job_ramp_on: np.ndarray  # (J, N) ramp row active
    job_occ: np.ndarray  # (J, N+1) window id at each step start and at the horizon end
    job_slot: np.ndarray  # (J, N) 0, 1, ... for the windows met in order; -1 outside
    job_prev_kw: np.ndarray  # (J,)
    job_done0_h: np.ndarray  # (J,) work carried into step 0's window
    heat_firm_kw: np.ndarray  # (C, N) firm heat per loop
    t_lo: np.ndarray  # (C, N) supply bounds after ramp-aware repair
    t_hi: np.ndarray
    t_prev: np.ndarray  # (C,)
    plane_a: np.ndarray  # (C, N, K)
    plane_g: np.ndarray
    plane_h: np.ndarray
    e0_kwh: float
    e_lo: np.ndarray
    e_hi: np.ndarray
    bill_new: np.ndarray  # (N,) step opens a billing period
    bill_slot: np.ndarray  # (N,) 0, 1, ... for the billing periods met in order; -1 dead
    peak0_kw: float
    notes: list[tuple[str, float, str]] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of steps in the horizon."""
        return len(self.time_ns)


def job_occurrence(hour: np.ndarray, day: np.ndarray, start_h: float, end_h: float) -> np.ndarray:
    """Window id per time point: the local day the window opened, -1 outside the window."""
    on = in_window(hour, start_h, end_h)
    occ = np.where(on, day, -1)
    if start_h > end_h:  # wraps midnight: the early-morning part belongs to yesterday's window
        occ = np.where(on & (hour < end_h), day - 1, occ)
    return occ.astype(np.int64)


def _suffix_bound(bound: np.ndarray, step: np.ndarray, upper: bool) -> np.ndarray:
    """Tighten per-step bounds so a ramp of ``step`` per step can always follow them."""
    out = bound.copy()
    for t in range(len(out) - 2, -1, -1):
        if upper:
            out[t] = min(out[t], out[t + 1] + step[t + 1])
        else:
            out[t] = max(out[t], out[t + 1] - step[t + 1])
    return out


def make_problem(model: SiteModel, t0_ns: int, n_steps: int, fc: Forecast, state: DispatchState,
                 sig: Signals | None = None, cal: Calendar | None = None,
                 end_ns: int | None = None) -> Problem:
    """Lay a horizon of ``n_steps`` from ``t0_ns`` (forecast arrays have ``n_steps`` values).

    ``sig`` and ``cal`` may be passed pre-computed (backtests slice them from a whole
    period); ``cal`` must then cover ``n_steps + 1`` time points.
    """
    step_ns, step_h = model.step_ns, model.step_h
    times = t0_ns + step_ns * np.arange(n_steps + 1, dtype=np.int64)
    n_live = n_steps if end_ns is None else int(np.clip((end_ns - t0_ns) // step_ns, 0, n_steps))
    live = np.arange(n_steps) < n_live
    dt = np.where(live, step_h, 0.0)
    cal = cal or calendar(times, model.timezone)
    sig = sig or signals(model, times[:-1], Calendar(*(getattr(cal, f)[:-1] for f in
                                                      ("hour", "month", "weekday", "day"))))
    z = np.zeros(n_steps)
    pv = np.where(live, np.clip(np.nan_to_num(fc.pv_kw), 0, None), 0.0)
    wind = np.where(live, np.clip(np.nan_to_num(fc.wind_kw), 0, None), 0.0)
    firm = np.where(live, np.clip(np.nan_to_num(fc.it_kw), 0, None), 0.0)
    amb = np.where(live, np.nan_to_num(fc.ambient_c, nan=model.spec.forecast.ambient_mean_c),
                   model.spec.forecast.ambient_mean_c)
    notes: list[tuple[str, float, str]] = []
    if fc.price_per_kwh is not None:
        sig = Signals(np.asarray(fc.price_per_kwh, np.float64), sig.export_per_kwh, sig.carbon_kg_per_kwh,
                      sig.demand_mask, sig.bill_id, sig.import_limit_kw)
    if fc.carbon_kg_per_kwh is not None:
        sig = Signals(sig.price_per_kwh, sig.export_per_kwh, np.asarray(fc.carbon_kg_per_kwh, np.float64),
                      sig.demand_mask, sig.bill_id, sig.import_limit_kw)

    # ---- jobs: windows, restarts, deadlines, pro-rated shares at the horizon end
    nj = len(model.jobs)
    job_on = np.zeros((nj, n_steps), bool)
    job_new = np.zeros((nj, n_steps), bool)
    job_req = np.zeros((nj, n_steps))
    job_dead = np.zeros((nj, n_steps), bool)
    job_ramp = np.zeros((nj, n_steps), bool)
    job_occ = np.full((nj, n_steps + 1), -1, np.int64)
    job_slot = np.full((nj, n_steps), -1, np.int64)
    prev_kw = np.zeros(nj)
    done0 = np.zeros(nj)
    for j, job in enumerate(model.jobs):
        occ = job_occurrence(cal.hour, cal.day, job.start_h, job.end_h)
        occ[n_live + 1:] = -1
        job_occ[j] = occ
        on = (occ[:-1] >= 0) & live
        job_on[j] = on
        if on.any():
            ids = occ[:-1][on]
            job_slot[j, on] = np.searchsorted(np.unique(ids), ids)
        cont0 = bool(on[0]) and int(occ[0]) == int(state.job_occ[j])
        new = on & (occ[:-1] != np.r_[-2, occ[:-2]])
        new[0] = on[0] and not cont0
        job_new[j] = new
        done0[j] = state.job_done_h[j] if cont0 else 0.0
        last = on & (occ[:-1] != occ[1:])  # window closes at the end of this step
        window_h = (job.end_h - job.start_h) % 24.0 or 24.0
        for t in np.flatnonzero(last):
            job_req[j, t] = job.work_h
            job_dead[j, t] = True
        if n_live and on[n_live - 1] and not last[n_live - 1]:
            # the horizon ends inside a window: require a pro-rated share of its work
            elapsed = (cal.hour[n_live] - job.start_h) % 24.0
            job_req[j, n_live - 1] = job.work_h * min(elapsed / window_h, 1.0) * model.spec.job_prorate
        ramp = on & np.r_[cont0, on[:-1] & (occ[:-2] == occ[1:-1])] if n_steps else on
        job_ramp[j] = ramp & np.isfinite(job.ramp_kw_per_h)
        lo0 = job.idle_kw if on[0] else 0.0
        hi0 = job.max_kw if on[0] else 0.0
        r0 = job.ramp_kw_per_h * dt[0] if np.isfinite(job.ramp_kw_per_h) else np.inf
        prev_kw[j] = float(np.clip(state.job_kw[j], lo0 - r0, hi0 + r0)) if cont0 else 0.0

    # ---- cooling: firm heat, ramp-aware supply bounds, planes
    nc = len(model.loops)
    heat_firm = np.zeros((nc, n_steps))
    t_lo = np.zeros((nc, n_steps))
    t_hi = np.zeros((nc, n_steps))
    t_prev = np.zeros(nc)
    k = len(plant.PLANE_Q) * len(plant.PLANE_T)
    pa, pg, ph = (np.zeros((nc, n_steps, k)) for _ in range(3))
    for c, lp in enumerate(model.loops):
        share = np.array([job.heat_share[c] for job in model.jobs])
        heat_min = firm * lp.heat_share + np.array(
            [share[j] * np.where(job_on[j], model.jobs[j].idle_kw, 0.0) for j in range(nj)]).sum(axis=0) \
            if nj else firm * lp.heat_share
        heat_firm[c] = firm * lp.heat_share
        ramp = lp.ramp_c_per_h * dt
        hi = np.minimum(lp.supply_max_c, plant.max_supply_c(heat_min, lp.chip_plan_c, lp.rho_c_per_kw))
        lo = np.full(n_steps, lp.supply_min_c)
        if not lp.chiller:
            lo = np.maximum(lo, plant.min_supply_c(heat_min, amb, lp.params))
        t_hi[c] = _suffix_bound(hi, ramp, upper=True)
        t_lo[c] = _suffix_bound(lo, ramp, upper=False)
        prev = float(state.supply_c[c]) if len(state.supply_c) > c else lp.nominal_c
        r0 = ramp[0] if n_steps else 0.0
        t_prev[c] = float(np.clip(prev, t_lo[c, 0] - r0, t_hi[c, 0] + r0)) if n_steps else prev
        if abs(t_prev[c] - prev) > 1e-9:
            notes.append((f"cooling.{lp.name}", prev,
                          f"supply {prev:.2f} °C cannot follow the limits; planned from {t_prev[c]:.2f} °C"))
        a, g, h = plant.planes_for(amb, lp.params, (0.0, lp.heat_max_kw), (lp.supply_min_c, lp.supply_max_c))
        pa[c], pg[c], ph[c] = a, g, h

    # ---- battery: keep a measured SoC outside its band feasible (it may not drift further out)
    b = model.battery
    e0, e_lo, e_hi = 0.0, z.copy(), z.copy()
    if b is not None:
        e0 = float(np.clip(np.nan_to_num(state.soc_kwh, nan=b.e_init_kwh), 0.0, b.energy_kwh))
        if abs(e0 - state.soc_kwh) > 1e-9 or not np.isfinite(state.soc_kwh):
            notes.append(("battery", float(state.soc_kwh), f"SoC outside 0..{b.energy_kwh:.0f} kWh; clamped"))
        decay = np.cumprod(1.0 - b.self_discharge_per_h * dt)
        e_lo = np.minimum(b.e_min_kwh, e0 * decay)
        e_hi = np.maximum(b.e_max_kwh, e0 * decay)
        if e0 < b.e_min_kwh - 1e-6 or e0 > b.e_max_kwh + 1e-6:
            notes.append(("battery", 100.0 * e0 / b.energy_kwh,
                          f"SoC {100 * e0 / b.energy_kwh:.1f} % outside "
                          f"[{100 * b.e_min_kwh / b.energy_kwh:.0f}, {100 * b.e_max_kwh / b.energy_kwh:.0f}] %; "
                          "planned back towards the band"))

    # ---- billing periods
    bill = sig.bill_id
    bill_new = np.r_[bill[0] != state.bill_id, bill[1:] != bill[:-1]] if n_steps else np.zeros(0, bool)
    bill_slot = np.full(n_steps, -1, np.int64)
    if n_live:
        bill_slot[:n_live] = np.searchsorted(np.unique(bill[:n_live]), bill[:n_live])
    peak0 = state.peak_kw if n_steps and bill[0] == state.bill_id else 0.0
    return Problem(
        t0_ns=int(t0_ns), time_ns=times[:-1], dt_h=dt, n_live=n_live, pv_kw=pv, wind_kw=wind,
        firm_kw=firm, ambient_c=amb, sig=sig, job_on=job_on, job_new=job_new, job_req_h=job_req,
        job_deadline=job_dead, job_ramp_on=job_ramp, job_occ=job_occ, job_slot=job_slot,
        job_prev_kw=prev_kw,
        job_done0_h=done0, heat_firm_kw=heat_firm, t_lo=t_lo, t_hi=t_hi, t_prev=t_prev,
        plane_a=pa, plane_g=pg, plane_h=ph, e0_kwh=e0, e_lo=e_lo, e_hi=e_hi, bill_new=bill_new,
        bill_slot=bill_slot, peak0_kw=float(peak0), notes=notes)
