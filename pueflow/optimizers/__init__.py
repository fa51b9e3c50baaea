"""Dispatch: forecasts, cooling plant model, receding-horizon LP, rule baseline, oracle, backtest.

Layout (formulation, solving and results kept apart):

- ``spec``        ``[sites.dispatch]`` settings (:class:`DispatchSpec`)
- ``assets``      config -> :class:`SiteModel` (plain numbers, plant fallbacks, overrides)
- ``tariff``      local calendar, time-of-use prices, carbon, demand mask, billing periods
- ``solar``       clear-sky irradiance (numba fast path, pvlib reference path)
- ``forecast``    :class:`Forecaster` protocol, default and frame-fed forecasters
- ``plant``       cooling plant model (numba), its LP planes, the chip limit
- ``horizon``     one problem: state, job windows, billing slots, repaired bounds
- ``lp``          the LP's structure, built once per site, assembled per problem
- ``solve``       HiGHS (scipy's bundled bindings or ``scipy.optimize.milp``), warm starts
- ``plan``        the result: a :class:`Plan`
- ``rule``        the rule-based baseline and fallback (numba)
- ``policy``      MPC with fallback, rule, oracle over a problem
- ``safety``      hard limits on published setpoints
- ``closedloop``  the plant a backtest drives; ``backtest``: :func:`run_backtest`, :func:`compare`
- ``dispatcher``  :class:`Dispatcher`, the bridge to the streaming core
- ``synthetic``, ``testing``  histories and small sites for tests and benchmarks

Nothing heavy is imported here: :mod:`pueflow.config.models` imports ``spec`` at start-up.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "DispatchSpec": "pueflow.config.dispatch",
    "SiteModel": "pueflow.optimizers.assets",
    "site_model": "pueflow.optimizers.assets",
    "Forecaster": "pueflow.optimizers.forecast",
    "Forecast": "pueflow.optimizers.forecast",
    "DefaultForecaster": "pueflow.optimizers.forecast",
    "FrameForecaster": "pueflow.optimizers.forecast",
    "Plan": "pueflow.optimizers.plan",
    "SiteDispatch": "pueflow.optimizers.policy",
    "Dispatcher": "pueflow.optimizers.dispatcher",
    "run_backtest": "pueflow.optimizers.backtest",
    "compare": "pueflow.optimizers.backtest",
    "BacktestResult": "pueflow.optimizers.backtest",
    "synthetic_history": "pueflow.optimizers.synthetic",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module 'pueflow.optimizers' has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = sorted(_LAZY)
