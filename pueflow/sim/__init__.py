"""Physics-based telemetry simulator: weather, PV, wind, GPU load, cooling, electrical,
battery and meters of the sites in a config, with ground truth and a fault list.

``pueflow.config.models`` imports :mod:`pueflow.config.plant`, so the public names below are loaded
lazily to keep that import free of cycles.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SimResult", "Simulation", "simulate", "simulate_to_file", "write_chart"]


def __getattr__(name: str) -> Any:
    if name in ("SimResult", "Simulation", "simulate", "simulate_to_file"):
        from pueflow.sim import run

        return getattr(run, name)
    if name == "write_chart":
        from pueflow.sim.chart import write_chart

        return write_chart
    msg = f"module 'pueflow.sim' has no attribute {name!r}"
    raise AttributeError(msg)
