"""Closed-loop backtest: a policy dispatches a site over recorded (or synthetic) history.

``history`` is a polars DataFrame, one row per dispatch step: ``time`` (Datetime UTC, step
start), ``pv_kw``, ``wind_kw``, ``it_kw`` (firm IT load), ``ambient_c``, and optionally
``price_per_kwh`` and ``carbon_kg_per_kwh`` (else the tariff and the carbon profile).

Policies: ``"mpc"`` re-solves the LP every ``redispatch`` from forecasts (rule fallback),
``"rule"`` re-plans with the rule, ``"oracle"`` solves one LP over the whole period with the
truth. Every policy's setpoints pass the same safety clipping into the same
:class:`~pueflow.optimizers.closedloop.ClosedLoop` plant, so their costs compare.

Made to be called many times by a tuner: ``run_backtest(site, history, "mpc", overrides)``
re-uses the site's LP structure (cached per settings) and can stop early through
``on_day(day, partial_result) -> bool``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from pueflow.exceptions import OptimizerError
from pueflow.optimizers.assets import SiteModel, site_model
from pueflow.optimizers.closedloop import ClosedLoop, Truth
from pueflow.optimizers.controller import plan_step
from pueflow.optimizers.forecast import (
    DefaultForecaster,
    Forecast,
    Forecaster,
    FrameForecaster,
    Recent,
    forecaster_for,
)
from pueflow.optimizers.horizon import DispatchState, job_occurrence
from pueflow.optimizers.plan import Plan, setpoints_at
from pueflow.optimizers.policy import POLICIES, SiteDispatch
from pueflow.optimizers.tariff import Calendar, Signals, calendar, signals
from pueflow.pipeline.kpi import pue_of, share_of_facility

REQUIRED = ("time", "pv_kw", "wind_kw", "it_kw", "ambient_c")
_ENGINES: dict[tuple[str, str], SiteDispatch] = {}  # a tuner calls run_backtest many times


@dataclass
class BacktestResult:
    """Realised outcome of a policy over (part of) a period.

    cost : energy + carbon + demand charge + battery wear + DR penalty − export [currency]
    objective : cost + unmet-work and terminal-SoC penalties (what the LP minimises)
    ref : renewable energy used on site / facility energy; pue : facility / IT energy
    gap_to_oracle : (objective − oracle's) / |oracle's|, when compared
    """

    policy: str
    site_id: str
    hours: float
    complete: bool
    cost: float
    objective: float
    energy_cost: float
    carbon_cost: float
    demand_cost: float
    wear_cost: float
    export_revenue: float
    co2_kg: float
    facility_kwh: float
    it_kwh: float
    ref: float
    pue: float
    peak_kw: float
    unmet_h: float
    curtailed_kwh: float
    solves: int
    fallbacks: int
    fallback_reasons: dict[str, int]
    clips: dict[str, int]
    chip_violations: int
    grid_violations: int
    solve_s: np.ndarray
    wall_s: float
    steps: pl.DataFrame | None = None
    gap_to_oracle: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Scalars only, for a table or a tuner's log."""
        out = {k: v for k, v in self.__dict__.items()
               if isinstance(v, int | float | str | bool) or v is None}
        out["solve_p50_s"] = float(np.median(self.solve_s)) if len(self.solve_s) else 0.0
        out["solve_p95_s"] = float(np.quantile(self.solve_s, 0.95)) if len(self.solve_s) else 0.0
        return out


def _history_arrays(model: SiteModel, history: pl.DataFrame) -> tuple[np.ndarray, pl.DataFrame]:
    missing = [c for c in REQUIRED if c not in history.columns]
    if missing:
        msg = f"history lacks columns {missing}; give {list(REQUIRED)} (+ optional price_per_kwh, carbon_kg_per_kwh)"
        raise OptimizerError(msg)
    dtype = history.schema["time"]
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        msg = f"history 'time' is {dtype}; give time-zone-aware UTC timestamps"
        raise OptimizerError(msg)
    h = history.sort("time").with_columns(pl.col("time").dt.convert_time_zone("UTC").dt.cast_time_unit("ns"))
    t = h["time"].cast(pl.Int64).to_numpy()
    if len(t) < 2:
        msg = "history needs at least two steps"
        raise OptimizerError(msg)
    d = np.diff(t)
    if (d != model.step_ns).any():
        msg = (f"history steps are {sorted(set((d // 10**9).tolist()))[:5]} s apart; the dispatch step is "
               f"{model.step_s:g} s: resample the history (e.g. group_by_dynamic) or set the step")
        raise OptimizerError(msg)
    return t, h


def engine_for(model: SiteModel) -> SiteDispatch:
    """Return a :class:`SiteDispatch` for ``model``, its LP structures cached per site and settings.

    The cache holds at most 65 engines (cleared when full); a hit gets ``model`` set on it.
    """
    k = (model.site_id, "|".join(str(v) for v in (
        model.spec.model_dump_json(), model.battery, model.pv_kwp, model.wind_kw, model.firm_it_kw,
        model.it_capacity_kw, model.import_limit_kw, model.timezone)))
    eng = _ENGINES.get(k)
    if eng is None:
        if len(_ENGINES) > 64:
            _ENGINES.clear()
        eng = _ENGINES[k] = SiteDispatch(model)
    eng.model = model
    eng.reset()
    return eng


def run_backtest(site: Any, history: pl.DataFrame, policy: str = "mpc",
                 overrides: dict[str, Any] | None = None, *, forecaster: str | Forecaster = "configured",
                 cooling: str = "physics", warmup_days: float = 0.0,
                 on_day: Callable[[int, BacktestResult], bool] | None = None,
                 keep_steps: bool = True, state: DispatchState | None = None) -> BacktestResult:
    """Run ``policy`` over ``history`` in closed loop.

    Parameters
    ----------
    site : config ``Site`` (with ``[sites.dispatch]``) or a :class:`SiteModel`
    overrides : dotted dispatch settings, e.g. ``{"redispatch": "1h", "battery.wear_cost_per_kwh": 0.1}``
    forecaster : ``"configured"`` (the site's ``[sites.dispatch.forecast] path`` when set, falling
        back to the default forecaster for steps the file does not cover; counted in
        ``extra["forecast_fallback_steps"]``), ``"default"``, ``"perfect"`` (the history itself)
        or any :class:`Forecaster`
    cooling : plant cooling model, ``"physics"`` or ``"planes"`` (the LP's own)
    warmup_days : leading history that only feeds the forecasters (not dispatched, not counted)
    on_day : called after each simulated day with the partial result; return True to stop
    state : starting state (default: initial SoC, nominal supply, no work done)
    """
    if policy not in POLICIES:
        msg = f"policy {policy!r} is unknown; use one of {POLICIES}"
        raise OptimizerError(msg)
    wall0 = time.perf_counter()
    if isinstance(site, SiteModel) and overrides:
        msg = "pass overrides with a config Site, not with a resolved SiteModel"
        raise OptimizerError(msg)
    model = site if isinstance(site, SiteModel) else site_model(site, overrides)
    t, h = _history_arrays(model, history)
    n, hn, step = len(t), model.horizon_steps, model.step_ns
    steps_per_day = max(1, int(round(86400 / model.step_s)))
    i0 = min(int(round(warmup_days * steps_per_day)), n - 1)
    times = t[0] + step * np.arange(n + hn + 1, dtype=np.int64)
    cal = calendar(times, model.timezone)

    def cal_slice(i: int, j: int) -> Calendar:
        return Calendar(cal.hour[i:j], cal.month[i:j], cal.weekday[i:j], cal.day[i:j])

    sig = _frame_signals(h, signals(model, times[:-1], cal_slice(0, n + hn)), n)
    truth = Truth(*(h[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in REQUIRED[1:]))
    occ = np.array([job_occurrence(cal.hour[: n + 1], cal.day[: n + 1], j.start_h, j.end_h)
                    for j in model.jobs]).reshape(len(model.jobs), n + 1)
    st = state.copy() if state is not None else DispatchState.initial(model)
    loop = ClosedLoop(model, truth, sig.slice(0, n), occ, st, cooling)
    eng = engine_for(model)
    fc = _forecaster(model, h, forecaster)
    end_ns = int(t[-1] + step)
    solve_s: list[float] = []
    reasons: dict[str, int] = {}
    plan: Plan | None = None
    firm_fc = np.zeros(n)
    fallback_steps = 0
    if policy == "oracle":
        truth_fc = Forecast(*(getattr(truth, f)[i0:] for f in ("pv_kw", "wind_kw", "it_kw", "ambient_c")))
        _, plan = eng.oracle(int(t[i0]), truth_fc, st, sig=sig.slice(i0, n), cal=cal_slice(i0, n + 1),
                             end_ns=end_ns)
        solve_s.append(plan.solve_s)
        if plan.source != "lp":
            reasons[plan.reason] = reasons.get(plan.reason, 0) + 1
        firm_fc[:] = truth.it_kw
    complete = True
    i = i0
    while i < n:
        block = min(model.redispatch_steps, n - i)
        k0 = i - i0
        if policy != "oracle":
            window = slice(i, i + hn)
            hist0 = max(0, i - int(model.spec.forecast.history_days * steps_per_day))
            recent = Recent(t[hist0:i], truth.pv_kw[hist0:i], truth.wind_kw[hist0:i], truth.it_kw[hist0:i],
                            truth.ambient_c[hist0:i], step, cal.hour[hist0:i])
            stp = plan_step(model, eng, fc, policy, int(times[i]), recent, st, hour=cal.hour[window],
                            sig=sig.slice(i, i + hn), cal=cal_slice(i, i + hn + 1), end_ns=end_ns)
            plan, p = stp.plan, stp.problem
            fallback_steps += stp.fallback_steps
            solve_s.append(plan.solve_s)
            if policy == "mpc" and plan.source != "lp":
                reasons[plan.reason] = reasons.get(plan.reason, 0) + 1
            firm_fc[i:i + block] = p.firm_kw[:block]
            k0 = 0
            block = min(block, hn)
        if plan is None:  # cannot happen: the oracle plans before the loop, the others above
            msg = f"backtest: no plan at step {i} under policy {policy!r}; expected one of {POLICIES}"
            raise OptimizerError(msg)
        for k in range(block):
            loop.step(i + k, setpoints_at(plan, k0 + k), float(firm_fc[i + k]))
        i += block
        if on_day is not None and (i - i0) % steps_per_day == 0 and i < n:
            partial = _result(model, policy, loop, i0, i, False, solve_s, reasons, wall0, t, False)
            if on_day((i - i0) // steps_per_day, partial):
                complete = False
                break
    res = _result(model, policy, loop, i0, i, complete, solve_s, reasons, wall0, t, keep_steps)
    res.extra["forecast_fallback_steps"] = fallback_steps
    if on_day is not None and complete:
        on_day(int(np.ceil((i - i0) / steps_per_day)), res)
    return res


def _frame_signals(h: pl.DataFrame, sig: Signals, n: int) -> Signals:
    """Signals with the history's own prices / carbon where it has them."""
    price, carbon = sig.price_per_kwh.copy(), sig.carbon_kg_per_kwh.copy()
    if "price_per_kwh" in h.columns:
        v = h["price_per_kwh"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        price[:n] = np.where(np.isfinite(v), v, price[:n])
    if "carbon_kg_per_kwh" in h.columns:
        v = h["carbon_kg_per_kwh"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        carbon[:n] = np.where(np.isfinite(v), v, carbon[:n])
    return Signals(price, sig.export_per_kwh, carbon, sig.demand_mask, sig.bill_id, sig.import_limit_kw)


def _forecaster(model: SiteModel, h: pl.DataFrame, forecaster: str | Forecaster) -> Forecaster:
    if forecaster == "configured":
        return forecaster_for(model)
    default = DefaultForecaster(model)
    if forecaster == "default":
        return default
    if forecaster == "perfect":
        return FrameForecaster(h, fallback=default)
    if isinstance(forecaster, str):
        msg = f"forecaster {forecaster!r} is unknown; use 'configured', 'default', 'perfect' or a Forecaster"
        raise OptimizerError(msg)
    return forecaster


def _result(model: SiteModel, policy: str, loop: ClosedLoop, i0: int, upto: int, complete: bool,
            solve_s: list[float], reasons: dict[str, int], wall0: float, t: np.ndarray,
            keep_steps: bool) -> BacktestResult:
    lg = {k: v[i0:upto] for k, v in loop.log.items()}
    dt = model.step_h
    sig = loop.sig.slice(i0, upto)
    spec = model.spec
    imp = lg["grid_import_kw"]
    energy = float(np.sum(imp * sig.price_per_kwh) * dt)
    co2 = float(lg["co2_kg"].sum())
    carbon_cost = co2 * spec.carbon.price_per_t / 1e3
    export = float(np.sum(lg["grid_export_kw"] * sig.export_per_kwh) * dt)
    wear = loop.wear_kwh * (model.battery.wear_per_kwh if model.battery else 0.0)
    demand = spec.tariff.demand_charge_per_kw * sum(loop.peaks.values())
    cost = float(lg["cost"].sum()) + demand
    penalty = float(sum(u * j.penalty_per_h for u, j in zip(loop.unmet_h, model.jobs, strict=True)))
    b = model.battery
    if b is not None and complete:
        penalty += max(b.e_terminal_kwh - loop.state.soc_kwh, 0.0) * b.terminal_penalty_per_kwh
    fac = float(lg["facility_kw"].sum() * dt)
    it = float(lg["it_kw"].sum() * dt)
    ren = float((lg["pv_kw"] + lg["wind_kw"]).sum() * dt)
    steps = None
    if keep_steps:
        cols = {"time": t[i0:upto], **lg}
        cols.update({f"job_{job.name}_kw": loop.job_kw[j, i0:upto] for j, job in enumerate(model.jobs)})
        cols.update({f"supply_{lp.name}_c": loop.supply_c[c, i0:upto] for c, lp in enumerate(model.loops)})
        steps = pl.DataFrame(cols).with_columns(pl.col("time").cast(pl.Datetime("ns", "UTC")))
    return BacktestResult(
        policy=policy, site_id=model.site_id, hours=(upto - i0) * dt, complete=complete, cost=cost,
        objective=cost + penalty, energy_cost=energy, carbon_cost=carbon_cost, demand_cost=demand,
        wear_cost=wear, export_revenue=export, co2_kg=co2, facility_kwh=fac, it_kwh=it,
        # the kernel's rules; a run with no facility energy has no renewable share to speak of
        ref=float(np.nan_to_num(share_of_facility(ren, fac, True))), pue=float(pue_of(fac, it)),
        peak_kw=max(loop.peaks.values(), default=0.0), unmet_h=float(loop.unmet_h.sum()),
        curtailed_kwh=float(lg["curtailed_kw"].sum() * dt), solves=len(solve_s),
        fallbacks=sum(reasons.values()), fallback_reasons=dict(reasons), clips=dict(loop.clips),
        chip_violations=loop.chip_violations, grid_violations=loop.grid_violations,
        solve_s=np.array(solve_s),
        wall_s=time.perf_counter() - wall0, steps=steps)


def compare(site: Any, history: pl.DataFrame, policies: tuple[str, ...] = POLICIES,
            overrides: dict[str, Any] | None = None, **kw) -> dict[str, BacktestResult]:
    """Run several policies over the same history; fill each one's gap to the oracle."""
    out = {p: run_backtest(site, history, p, overrides, **kw) for p in policies}
    oracle = out.get("oracle")
    if oracle is not None:
        for r in out.values():
            r.gap_to_oracle = (r.objective - oracle.objective) / abs(oracle.objective) if oracle.objective else 0.0
    return out
