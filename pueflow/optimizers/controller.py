"""One receding-horizon step, shared by the streaming dispatcher and the closed-loop backtest.

The streaming side is :class:`~pueflow.optimizers.dispatcher.Dispatcher`, the closed-loop
one :func:`~pueflow.optimizers.backtest.run_backtest`. A step forecasts the horizon from recent observations, lays the problem over the carried
state and plans it with the policy (the LP with its rule fallback, or the rule). What is
published from the plan, and how the state moves, is the caller's: the dispatcher carries
an estimate, the backtest drives a plant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pueflow.optimizers.assets import SiteModel
from pueflow.optimizers.forecast import Forecast, Forecaster, Recent
from pueflow.optimizers.horizon import DispatchState, Problem, make_problem
from pueflow.optimizers.plan import Plan
from pueflow.optimizers.policy import SiteDispatch
from pueflow.optimizers.tariff import Calendar, Signals


@dataclass
class Step:
    """The outcome of one step.

    forecast : the horizon's forecast
    problem, plan : what was planned
    fallback_steps : steps whose forecast a file or feed did not cover (filled by its fallback)
    """

    forecast: Forecast
    problem: Problem
    plan: Plan
    fallback_steps: int = 0


def plan_step(model: SiteModel, engine: SiteDispatch, forecaster: Forecaster, policy: str, t0_ns: int,
              recent: Recent, state: DispatchState, *, hour: np.ndarray | None = None,
              sig: Signals | None = None, cal: Calendar | None = None, end_ns: int | None = None) -> Step:
    """Forecast, lay and plan the horizon that starts at ``t0_ns`` [int64 ns, UTC].

    Parameters
    ----------
    policy : ``"mpc"`` or ``"rule"``
    recent : observations before ``t0_ns`` (NaN where missing or too poorly covered to trust)
    state : state carried into the horizon (not changed)
    hour, sig, cal, end_ns : pre-computed local hours [h], signals and calendar of the horizon,
        and the period's end; see :func:`~pueflow.optimizers.horizon.make_problem`

    Raises
    ------
    Whatever the forecaster raises: a caller that must not stop catches it.
    """
    n = model.horizon_steps
    times = t0_ns + model.step_ns * np.arange(n, dtype=np.int64)
    fc = forecaster.forecast(times, recent, hour)
    p = make_problem(model, t0_ns, n, fc, state, sig=sig, cal=cal, end_ns=end_ns)
    plan = engine.plan(p, policy)
    return Step(fc, p, plan, int(getattr(forecaster, "last_fallback_steps", 0)))
