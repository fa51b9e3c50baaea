"""A trial: sampled settings -> closed-loop backtest on the train period -> score and constraints.

Scores are counted at the *configured* prices whatever the trial sets: a trial that lowers
``carbon.price_per_t`` or ``battery.wear_cost_per_kwh`` changes how the LP weighs CO2 or
battery wear, not what the CO2 and the wear cost the site. A battery left below the
configured terminal target at the end of the period is charged at the configured
terminal penalty, so no trial wins by draining the battery on the last day.

Pruning: after each simulated day the running score is reported; Optuna's pruner stops
trials worse than the median of earlier ones at the same day, and a trial that already
breaks a constraint (a billed peak over the cap, work missed at a deadline) is stopped at
once, since neither can be undone later in the period.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pueflow.config.tune import ParamSpec, TuneSpec
from pueflow.config.tune_check import site_space
from pueflow.exceptions import ConfigError
from pueflow.optimizers.assets import SiteModel, site_model
from pueflow.optimizers.backtest import BacktestResult, run_backtest

#: Unmet work below this is solver round-off, not missed work [full-power h].
UNMET_TOL_H = 1e-3
#: Settings that weigh the LP's objective without changing what the site can do.
WEIGHT_KEYS = ("carbon.price_per_t", "battery.wear_cost_per_kwh", "battery.terminal_penalty_per_kwh")


def resolve_space(site: Any, spec: TuneSpec, source: str = "tune") -> dict[str, str]:
    """Map each ``[[tune.space]]`` key to the override key of ``site`` (list items by index).

    The checks are :func:`~pueflow.config.tune.site_space`, the ones config's
    cross-check runs: raises :class:`ConfigError` naming each bad entry and the fix.
    """
    keys, problems = site_space(site, spec)
    if problems:
        raise ConfigError(source, problems)
    return keys


def default_value(site: Any, key: str) -> Any:
    """Return the site's configured value at an override ``key``.

    Parameters
    ----------
    site : Site
        A config site; its ``[sites.dispatch]`` section is read.
    key : str
        Dotted override key, list items by index (``cooling.0.supply_max_c``).

    Returns
    -------
    Any
        The value in the section's own unit; ``None`` when the key is unset.
    """
    node: Any = site.dispatch.model_dump()
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node.get(part)
    return node


@dataclass
class Evaluator:
    """Runs one site's backtests with overrides and scores them at the configured prices."""

    site: Any
    spec: TuneSpec
    keys: dict[str, str]  # space key -> override key
    base: SiteModel = field(init=False)

    def __post_init__(self) -> None:
        self.base = site_model(self.site)

    def overrides(self, params: dict[str, Any]) -> dict[str, Any]:
        """Turn Optuna params (by space key) into dispatch overrides (by override key).

        Durations get their unit (``12`` -> ``"12h"``); params not in the space are dropped.
        """
        by_key = {p.key: p for p in self.spec.space}
        return {self.keys[k]: by_key[k].value(v) for k, v in params.items() if k in by_key}

    def run(self, history: pl.DataFrame, overrides: dict[str, Any] | None, policy: str | None = None,
            on_day: Any = None) -> tuple[BacktestResult, dict[str, float]]:
        """Backtest ``history`` (its first ``warmup_days`` only feed forecasters) and score it."""
        ov = dict(overrides or {})
        res = run_backtest(self.site, history, policy or self.spec.policy, ov or None,
                           forecaster=self.spec.forecaster, cooling=self.spec.cooling,
                           warmup_days=self.spec.warmup_days, on_day=on_day, keep_steps=True)
        return res, self.metrics(res, ov)

    def metrics(self, r: BacktestResult, overrides: dict[str, Any]) -> dict[str, float]:
        """Return the scalar metrics of ``r`` at the configured prices (see the module doc).

        ``cost`` [currency] is the sum of its parts ``energy_cost``, ``demand_cost``,
        ``carbon_cost``, ``wear_cost``, ``other_cost`` (DR penalties - export revenue) and
        ``terminal_shortfall_cost``.
        """
        base = self.base.spec
        tuned_wear = float(overrides.get("battery.wear_cost_per_kwh", base.battery.wear_cost_per_kwh))
        dt = self.base.step_h
        if r.steps is not None:
            wear_kwh = float(r.steps["battery_kw"].abs().sum()) * dt
            top = r.steps["grid_import_kw"].max()  # None for an empty or all-null column
            import_peak = float(top) if isinstance(top, int | float) else 0.0
        else:  # a partial result: what it does not tell is left at its lower bound
            wear_kwh = r.wear_cost / tuned_wear if tuned_wear > 0 else 0.0
            import_peak = r.peak_kw
        peak = r.peak_kw if base.tariff.demand_charge_per_kw > 0 else import_peak
        b = self.base.battery
        carbon = r.co2_kg * base.carbon.price_per_t / 1e3
        wear = wear_kwh * (b.wear_per_kwh if b else 0.0)
        other = r.cost - r.energy_cost - r.carbon_cost - r.demand_cost - r.wear_cost  # DR - export
        cost = r.energy_cost + r.demand_cost + carbon + wear + other
        short = 0.0
        if b is not None and r.complete and r.steps is not None and r.steps.height:
            short = max(b.e_terminal_kwh - float(r.steps["soc_kwh"][-1]), 0.0) * b.terminal_penalty_per_kwh
        out = {"cost": cost + short, "co2_kg": r.co2_kg, "co2_t": r.co2_kg / 1e3,
               "energy_cost": r.energy_cost, "demand_cost": r.demand_cost, "peak_kw": peak,
               "import_peak_kw": import_peak, "pue": r.pue if math.isfinite(r.pue) else 0.0, "ref": r.ref,
               "curtailed_kwh": r.curtailed_kwh, "unmet_h": max(r.unmet_h, 0.0),
               "chip_violations": r.chip_violations, "terminal_shortfall_cost": short,
               "carbon_cost": carbon, "wear_cost": wear, "other_cost": other,
               "fallbacks": r.fallbacks, "solves": r.solves, "days": r.hours / 24.0, "wall_s": r.wall_s}
        return {k: float(v) for k, v in out.items()}

    def score(self, m: dict[str, float]) -> float:
        """Return the objective value of metrics ``m``: the weighted sum the spec names.

        Parameters
        ----------
        m : dict of str to float
            Metrics from :meth:`metrics`.

        Returns
        -------
        float
            ``cost`` [currency] for objective ``cost``, ``co2_kg`` [kg] for ``co2``, else
            the sum of ``weights[k] * m[k]``; lower is better.
        """
        return float(sum(w * m[k] for k, w in self.spec.objective_weights().items()))

    def violations(self, m: dict[str, float]) -> dict[str, float]:
        """Return the constraint values of metrics ``m``; feasible when all are <= 0 (Optuna's way).

        ``unmet_h`` [full-power h] is always there (with :data:`UNMET_TOL_H` of slack);
        ``peak_kw`` [kW] and ``chip_violations`` [steps] only when the spec limits them.
        """
        s = self.spec
        out = {"unmet_h": m["unmet_h"] - s.max_unmet_h - UNMET_TOL_H}
        if s.max_peak_kw is not None:
            out["peak_kw"] = m["peak_kw"] - s.max_peak_kw
        if s.max_chip_violations is not None:
            out["chip_violations"] = m["chip_violations"] - s.max_chip_violations
        return out


def suggest(trial: Any, space: list[ParamSpec]) -> dict[str, Any]:
    """Sample one value per entry; Optuna params are named by the space key."""
    out: dict[str, Any] = {}
    for p in space:
        if p.type == "categorical":
            out[p.key] = trial.suggest_categorical(p.key, p.choices)
        elif p.type == "int":
            low, high = p.bounds()
            out[p.key] = trial.suggest_int(p.key, int(low), int(high), step=int(p.step or 1), log=p.log)
        else:
            low, high = p.bounds()
            out[p.key] = trial.suggest_float(p.key, low, high, step=p.step, log=p.log)
    return out


class Objective:
    """``objective(trial) -> score`` over the train period, with pruning and constraints."""

    def __init__(self, ev: Evaluator, train: pl.DataFrame, *, pruning: bool = True) -> None:
        self.ev, self.train, self.pruning = ev, train, pruning

    def __call__(self, trial: Any) -> float:
        """Backtest the trial's settings over the train period and return their score.

        The metrics, the overrides, the worker and the wall time are stored as trial user
        attributes; constraint values too (feasible when <= 0).

        Parameters
        ----------
        trial : optuna.Trial
            Suggests one value per ``[[tune.space]]`` entry and receives a report per day.

        Returns
        -------
        float
            The score (:meth:`Evaluator.score`) of the whole train period.

        Raises
        ------
        optuna.TrialPruned
            A constraint was broken by the end of a day, or (with ``pruning``) the running
            score was worse than the median of earlier trials at that day.
        """
        import optuna

        ev = self.ev
        params = suggest(trial, ev.spec.space)
        ov = ev.overrides(params)
        trial.set_user_attr("overrides", ov)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        stop: dict[str, Any] = {}

        def on_day(day: int, partial: BacktestResult) -> bool:
            m = ev.metrics(partial, ov)
            value = ev.score(m)
            trial.report(value, day)
            viol = ev.violations(m)
            broken = {k: v for k, v in viol.items() if v > 0}
            if broken:
                stop.update(reason=f"infeasible by day {day}: {_fmt(broken)}", m=m, viol=viol)
                return True
            if self.pruning and trial.should_prune():
                stop.update(reason=f"pruned at day {day} (worse than the median)", m=m, viol=None)
                return True
            return False

        t0 = time.perf_counter()
        res, m = ev.run(self.train, ov, on_day=on_day)
        trial.set_user_attr("wall_s", time.perf_counter() - t0)
        if stop:
            trial.set_user_attr("metrics", stop["m"])
            trial.set_user_attr("stopped", stop["reason"])
            if stop["viol"] is not None:
                _set_constraints(trial, stop["viol"])
            raise optuna.TrialPruned(stop["reason"])
        trial.set_user_attr("metrics", m)
        _set_constraints(trial, ev.violations(m))
        return ev.score(m)


def _set_constraints(trial: Any, viol: dict[str, float]) -> None:
    trial.set_user_attr("constraints", viol)
    if hasattr(trial, "set_constraint"):  # Optuna >= 5
        for k, v in viol.items():
            trial.set_constraint(k, float(v))


def _fmt(d: dict[str, float]) -> str:
    return ", ".join(f"{k} over by {v:.4g}" for k, v in d.items())


def constraints_of(trial: Any) -> list[float]:
    """Return the stored constraint values of a finished trial (Optuna < 5's ``constraints_func``)."""
    return list(trial.user_attrs.get("constraints", {}).values())


def feasible(trial: Any) -> bool:
    """Whether every stored constraint value of ``trial`` is <= 0 (true with none stored)."""
    return all(v <= 0 for v in trial.user_attrs.get("constraints", {}).values())


def limits_only(overrides: dict[str, Any]) -> dict[str, Any]:
    """Drop the LP's weights from ``overrides``, keeping the physical limits only.

    The oracle bound is computed with the site's own weights (:data:`WEIGHT_KEYS` and the
    jobs' ``unmet_penalty_per_h``), so a tuned weight cannot move the bound.

    Parameters
    ----------
    overrides : dict of str to Any
        Dispatch overrides by override key.

    Returns
    -------
    dict of str to Any
        A new dict; ``overrides`` is left unchanged.
    """
    return {k: v for k, v in overrides.items()
            if k not in WEIGHT_KEYS and not k.endswith(".unmet_penalty_per_h")}
