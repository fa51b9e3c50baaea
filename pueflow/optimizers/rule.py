"""Rule-based dispatch: the baseline every policy is compared with, and the LP's fallback.

Per step, in order:

1. Each flexible job runs at full power unless the grid is heavy (a peak-price step, or
   the site's import at full job power above ``rule_grid_heavy_fraction`` of the import
   limit) and it can still finish by its deadline at full power; then it idles. A job
   whose work is done idles.
2. The battery charges from renewable surplus, charges at full power in cheap steps,
   discharges against the import in peak steps, and otherwise rests; always within its
   power and SoC limits. Cheap and peak are prices near the bottom and the top of the
   horizon's price range (``rule_cheap_band``, ``rule_peak_band``).
3. Cooling holds its nominal supply temperature, lowered where the chip limit needs it.

Same inputs and outputs as the LP (:class:`~pueflow.optimizers.horizon.Problem` ->
:class:`~pueflow.optimizers.plan.Plan`), so it can stand in for it at any time.
"""

from __future__ import annotations

import time

import numpy as np

from pueflow.jit import njit
from pueflow.optimizers import plant
from pueflow.optimizers.assets import SiteModel
from pueflow.optimizers.battery import power_window, soc_step
from pueflow.optimizers.horizon import Problem
from pueflow.optimizers.plan import Plan, step_costs

#: A job must run when the work left exceeds this share of what full power can still do.
MUST_RUN_MARGIN = 0.9


@njit
def _rule(dt, ren, firm, price, imp_lim, exp_lim, cool_per_kw, aux_frac, aux_kw, cheap, peak,
          heavy_kw, bat, job_on, job_new, job_dead, job_done0, job_work, job_max, job_idle,
          job_alpha, job_beta, batt_kw, soc, job_kw, job_rate, imp, exp, ren_used):
    """Rule kernel; writes the plan into the output arrays (last nine arguments).

    ``bat`` = [has, e0, e_min, e_max, ch_max, dis_max, eta_c, eta_d, self_discharge_per_h,
    band_min, band_max]: ``e_min``/``e_max`` start relaxed to a measured SoC outside the band
    and tighten back to the band as the SoC returns into it.
    """
    n = len(dt)
    nj = job_on.shape[0]
    # hours from the start of each step to the end of its window's deadline step (or horizon)
    h_left = np.zeros((nj, n))
    for j in range(nj):
        acc = 0.0
        for t in range(n - 1, -1, -1):
            if job_dead[j, t] or not job_on[j, t]:
                acc = 0.0
            acc += dt[t] if job_on[j, t] else 0.0
            h_left[j, t] = acc
    done = job_done0.copy()
    e = bat[1]
    e_lo = bat[2]
    e_hi = bat[3]
    for t in range(n):
        if dt[t] <= 0.0:
            batt_kw[t] = 0.0
            soc[t] = e
            imp[t] = 0.0
            exp[t] = 0.0
            ren_used[t] = 0.0
            for j in range(nj):
                job_kw[j, t] = 0.0
                job_rate[j, t] = 0.0
            continue
        flex_max = 0.0
        for j in range(nj):
            if job_on[j, t]:
                flex_max += job_max[j]
        fac = 1.0 + aux_frac + cool_per_kw[t]
        full = (firm[t] + flex_max) * fac + aux_kw - ren[t]
        heavy = peak[t] or full > heavy_kw[t]
        flex = 0.0
        for j in range(nj):
            if job_new[j, t]:
                done[j] = 0.0
            p = 0.0
            if job_on[j, t]:
                left = job_work[j] - done[j]
                if left <= 1e-9:
                    p = job_idle[j]
                elif heavy and left < MUST_RUN_MARGIN * (h_left[j, t] - dt[t]):
                    p = job_idle[j]
                else:
                    p = job_max[j]
                r = 1e300
                for k in range(job_alpha.shape[1]):
                    r = min(r, job_alpha[j, k] * p + job_beta[j, k])
                r = max(r, 0.0)
                job_rate[j, t] = r
                done[j] += r * dt[t]
            else:
                job_rate[j, t] = 0.0
            job_kw[j, t] = p
            flex += p
        net = (firm[t] + flex) * fac + aux_kw - ren[t]
        b = 0.0
        if bat[0] > 0.0:
            lo, hi = power_window(e, dt[t], e_lo, e_hi, bat[6], bat[7], bat[8], bat[4], bat[5])
            if net < 0.0:
                b = min(-net, hi)
            elif cheap[t]:
                b = max(min(hi, imp_lim[t] - net), 0.0)
            elif peak[t]:
                b = max(lo, -net)
            e = soc_step(e, b, dt[t], bat[6], bat[7], bat[8])
            e_lo = min(bat[9], max(e_lo, e))
            e_hi = max(bat[10], min(e_hi, e))
        batt_kw[t] = b
        soc[t] = e
        g = net + b
        if g >= 0.0:
            imp[t] = g
            exp[t] = 0.0
            ren_used[t] = ren[t]
        else:
            imp[t] = 0.0
            exp[t] = min(-g, exp_lim)
            ren_used[t] = ren[t] + g + exp[t]
    return done


def cooling_per_kw(model: SiteModel, p: Problem) -> np.ndarray:
    """Cooling power per kW of IT [kW/kW] at nominal supply, firm load plus jobs at full power."""
    it = p.firm_kw + sum(np.where(p.job_on[j], job.max_kw, 0.0) for j, job in enumerate(model.jobs))
    total = np.zeros(p.n)
    for lp in model.loops:
        total += plant.cooling_power_kw(it * lp.heat_share, lp.nominal_c, p.ambient_c, lp.params)
    return np.where(it > 0, total / np.maximum(it, 1e-9), 0.0)


def thresholds(model: SiteModel, price: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cheap and peak step masks: prices near the bottom and the top of the live horizon's range."""
    spec = model.spec
    seen = price[live] if live.any() else price
    if not len(seen) or np.ptp(seen) <= 1e-12:
        z = np.zeros(len(price), bool)
        return z, z
    lo, hi = seen.min(), seen.max()
    span = hi - lo
    return price <= lo + spec.rule_cheap_band * span, price >= hi - spec.rule_peak_band * span


def rule_plan(model: SiteModel, p: Problem, reason: str = "rule policy") -> Plan:
    """Plan the horizon of ``p`` with the rules of the module docstring."""
    t0 = time.perf_counter()
    n, nj, nc = p.n, len(model.jobs), len(model.loops)
    live = p.dt_h > 0
    cheap, peak = thresholds(model, p.sig.price_per_kwh, live)
    b = model.battery
    bat = np.zeros(11)
    if b is not None:
        bat[:] = (1.0, p.e0_kwh, b.e_min_kwh, b.e_max_kwh, b.charge_kw, b.discharge_kw, b.eta_charge,
                  b.eta_discharge, b.self_discharge_per_h, b.e_min_kwh, b.e_max_kwh)
        # a measured SoC outside the band may stay there, never drift further out
        bat[2] = min(bat[2], p.e0_kwh)
        bat[3] = max(bat[3], p.e0_kwh)
    kmax = max([len(j.alpha_per_kw) for j in model.jobs], default=1)
    alpha = np.zeros((nj, kmax))
    beta = np.full((nj, kmax), 1e300)
    for j, job in enumerate(model.jobs):
        alpha[j, : len(job.alpha_per_kw)] = job.alpha_per_kw
        beta[j, : len(job.beta)] = job.beta
    out = dict(batt_kw=np.zeros(n), soc=np.zeros(n), job_kw=np.zeros((nj, n)), job_rate=np.zeros((nj, n)),
               imp=np.zeros(n), exp=np.zeros(n), ren_used=np.zeros(n))
    heavy = model.spec.rule_grid_heavy_fraction * p.sig.import_limit_kw
    _rule(p.dt_h, p.pv_kw + p.wind_kw, p.firm_kw, p.sig.price_per_kwh, p.sig.import_limit_kw,
                 model.export_limit_kw, cooling_per_kw(model, p), model.aux_fraction, model.aux_kw, cheap,
                 peak, heavy, bat, p.job_on, p.job_new, p.job_deadline, p.job_done0_h,
                 np.array([j.work_h for j in model.jobs], np.float64),
                 np.array([j.max_kw for j in model.jobs], np.float64),
                 np.array([j.idle_kw for j in model.jobs], np.float64), alpha, beta, *out.values())
    supply = np.zeros((nc, n))
    cool = np.zeros((nc, n))
    flex = out["job_kw"]
    for c, lp in enumerate(model.loops):
        heat = p.heat_firm_kw[c] + sum(flex[j] * job.heat_share[c] for j, job in enumerate(model.jobs))
        t_max = np.minimum(p.t_hi[c], plant.max_supply_c(heat, lp.chip_plan_c, lp.rho_c_per_kw))
        supply[c] = np.clip(lp.nominal_c, p.t_lo[c], np.maximum(t_max, p.t_lo[c]))
        cool[c] = np.where(live, plant.cooling_power_kw(heat, supply[c], p.ambient_c, lp.params), 0.0)
    # the cooling estimate inside the kernel was per kW; settle the grid with the plant model
    f = 1.0 + model.aux_fraction
    load = np.where(live, f * (p.firm_kw + flex.sum(axis=0)) + model.aux_kw, 0.0) + cool.sum(axis=0)
    g = load + out["batt_kw"] - (p.pv_kw + p.wind_kw)
    imp = np.maximum(g, 0.0)
    exp = np.minimum(np.maximum(-g, 0.0), model.export_limit_kw)
    ren = np.where(g < 0, p.pv_kw + p.wind_kw + g + exp, p.pv_kw + p.wind_kw)
    share = np.where(p.pv_kw + p.wind_kw > 0, ren / np.maximum(p.pv_kw + p.wind_kw, 1e-12), 0.0)
    unmet = np.zeros(nj)
    due = np.zeros(nj)
    rate = out["job_rate"]
    for j in range(nj):
        cum = 0.0
        for t in range(n):
            if p.job_new[j, t]:
                cum = 0.0
            elif t == 0:
                cum = p.job_done0_h[j]
            cum += rate[j, t] * p.dt_h[t]
            if p.job_req_h[j, t] > 0:
                short = max(p.job_req_h[j, t] - cum, 0.0)
                unmet[j] += short
                due[j] += short if p.job_deadline[j, t] else 0.0
    curt = np.maximum(p.pv_kw + p.wind_kw - ren, 0.0)
    steps = step_costs(model, p, imp, exp, curt, out["batt_kw"])
    cost, peak_kw = plan_cost(model, p, steps, imp, unmet)
    return Plan("rule", "rule", reason, p.time_ns, p.dt_h, imp, exp, p.pv_kw * share, p.wind_kw * share,
                out["batt_kw"], out["soc"], flex, rate, supply, cool, peak_kw, cost, unmet, due,
                time.perf_counter() - t0, curt, steps, list(p.notes))


def plan_cost(model: SiteModel, p: Problem, step_cost: np.ndarray, imp_kw: np.ndarray,
              unmet_h: np.ndarray) -> tuple[float, float]:
    """Cost of a plan as the LP would count it (without the terminal penalty) and its billed peak.

    Parameters
    ----------
    step_cost : (N,) [currency], from :func:`~pueflow.optimizers.plan.step_costs`
    imp_kw : (N,) grid import [kW]
    unmet_h : (J,) work left undone [full-power h]
    """
    sig, dt = p.sig, p.dt_h
    spec = model.spec
    cost = float(np.sum(step_cost))
    cost += float(sum(u * j.penalty_per_h for u, j in zip(unmet_h, model.jobs, strict=True)))
    peak = p.peak0_kw
    if spec.tariff.demand_charge_per_kw > 0 and p.n:
        charged = np.where(sig.demand_mask & (dt > 0), imp_kw, 0.0)
        peak = max(p.peak0_kw, float(charged.max()))
        cost += spec.tariff.demand_charge_per_kw * (peak - p.peak0_kw)
    return cost, peak
