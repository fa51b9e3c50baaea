"""Physics-based telemetry simulator of the sites in a config, with ground truth and a fault list.

It models weather, PV, wind, GPU load, cooling, the electrical chain, the battery and the
meters.
"""

from __future__ import annotations

from pueflow.sim.chart import write_chart
from pueflow.sim.run import SimResult, Simulation, simulate, simulate_to_file

__all__ = ["SimResult", "Simulation", "simulate", "simulate_to_file", "write_chart"]
