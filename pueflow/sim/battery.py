"""Battery storage under a simple rule (the sim's stand-in for the dispatch optimiser).

Rule, each step: soak up renewable surplus (never import to do it); in the discharge window
cover the net load without exporting; in the off-peak charge window top up from the grid at
``grid_charge_fraction`` of rated power. Power is AC at the battery terminals, + charge /
- discharge; the round-trip loss is split evenly between charging and discharging.
"""

from __future__ import annotations

import numpy as np

from pueflow.config.plant import BatterySpec
from pueflow.jit import njit


@njit
def _battery_kernel(dt_s, net_kw, local_hour, params, energy_kwh, power_out, soc_out):  # pragma: no cover
    """Fill ``power_out`` [kW] and ``soc_out`` [%, at the start of each step]; return end energy."""
    cap, p_max, eta, e_min, e_max = params[0], params[1], params[2], params[3], params[4]
    ch0, ch1, dis0, dis1, grid_frac = params[5], params[6], params[7], params[8], params[9]
    e = energy_kwh
    h = dt_s / 3600.0
    for k in range(len(net_kw)):
        soc_out[k] = 100.0 * e / cap if cap > 0 else 0.0
        hr = local_hour[k]
        net = net_kw[k]  # facility - renewables: < 0 is surplus
        p = 0.0
        if net < 0.0:
            p = min(-net, p_max)
        elif dis0 <= hr < dis1:
            p = -min(net, p_max)
        elif ch0 <= hr < ch1:
            p = grid_frac * p_max
        if p > 0.0:
            p = min(p, max(e_max - e, 0.0) / (eta * h))
            e += p * eta * h
        elif p < 0.0:
            p = -min(-p, max(e - e_min, 0.0) * eta / h)
            e += p / eta * h
        power_out[k] = p
    return e


class Battery:
    """Stateful battery; :meth:`step` advances it over consecutive chunks."""

    def __init__(self, spec: BatterySpec):
        self.spec = spec
        self.energy_kwh = spec.soc_initial * spec.capacity_kwh
        eta = float(np.sqrt(spec.round_trip_efficiency))
        self._params = np.array([spec.capacity_kwh, spec.power_kw, eta,
                                 spec.soc_min * spec.capacity_kwh, spec.soc_max * spec.capacity_kwh,
                                 *spec.charge_hours_local, *spec.discharge_hours_local,
                                 spec.grid_charge_fraction])

    def step(self, dt_s: float, net_kw: np.ndarray, local_hour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the battery rule over one chunk; the stored energy carries to the next call.

        Parameters
        ----------
        dt_s : float
            Sample step [s].
        net_kw : array [kW]
            Facility load minus PV and wind output per sample.
        local_hour : array [h]
            Local hour of each sample (charge and discharge windows).

        Returns
        -------
        power_kw : array [kW]
            Battery power, + charge.
        soc_pct : array [%]
            State of charge at the start of each sample.
        """
        n = len(net_kw)
        power, soc = np.empty(n), np.empty(n)
        self.energy_kwh = float(_battery_kernel(float(dt_s), np.ascontiguousarray(net_kw, np.float64),
                                                np.ascontiguousarray(local_hour, np.float64),
                                                self._params, self.energy_kwh, power, soc))
        return power, soc
