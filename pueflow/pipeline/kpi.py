"""ISO/IEC 30134 KPIs from per-role window energies (The Green Grid definitions).

Every KPI is a ratio of energies summed over the same window: never a mean of ratios,
never a ratio of instantaneous powers. Fleet KPIs sum energies across sites first.

- PUE = facility / IT. IT <= 0 gives no PUE (null + ``non_positive_it``); PUE < 1 is a
  better-than-perfect reading: flagged and not reported.
- pPUE_x = (IT + overhead_x) / IT for each cooling subsystem and overhead class, so that
  1 + sum(pPUE_x - 1) = PUE when the overheads add up to facility - IT.
- REF = renewable / facility, capped at 1; CUE = grid kWh x grid CO2 [kg/kWh] / IT;
  WUE = water [L] / IT; ERF = reused heat / facility.
"""

from __future__ import annotations

import numpy as np

from pueflow.jit import njit
from pueflow.roles import COOLING_SUBSYSTEMS, ROLE_INDEX

R = ROLE_INDEX
N_ROLES = len(ROLE_INDEX)
COOLING_ROLES = np.array([R[f"cooling.{s}"] for s in COOLING_SUBSYSTEMS], np.int64)

#: Output columns of :func:`kpis`, in order.
KPI_FIELDS = (
    ("pue", "ppue_cooling")
    + tuple(f"ppue_{s}" for s in COOLING_SUBSYSTEMS)
    + ("ppue_electrical", "ppue_other", "ref", "cue_kg_per_kwh", "wue_l_per_kwh", "erf",
       "cooling_kwh", "facility_kwh")
)
F = {name: i for i, name in enumerate(KPI_FIELDS)}
FLAG_NON_POSITIVE_IT, FLAG_BETTER_THAN_PERFECT = 1, 2

# integer constants: numba reads module-level ints, not dicts
I_IT, I_FAC, I_EL, I_OTHER = R["it"], R["facility"], R["electrical_losses"], R["other"]
I_PV, I_WIND, I_GRID, I_WATER, I_HEAT = R["pv"], R["wind"], R["grid_import"], R["water_l"], R["heat_reuse_kwh"]
F_PUE, F_PPUE_COOLING, F_PPUE_EL, F_PPUE_OTHER = F["pue"], F["ppue_cooling"], F["ppue_electrical"], F["ppue_other"]
F_REF, F_CUE, F_WUE, F_ERF = F["ref"], F["cue_kg_per_kwh"], F["wue_l_per_kwh"], F["erf"]
F_COOLING, F_FACILITY = F["cooling_kwh"], F["facility_kwh"]


@njit
def kpis(energy, metered, co2_kg_per_kwh, out, flags):
    """Compute KPI fields for each row of role energies.

    Parameters
    ----------
    energy : 2-D array [rows, roles] [kWh, L for water]
        Window energy per role (``ROLE_INDEX`` order).
    metered : 1-D bool array [roles]
        Whether the site has a meter for each role; unmetered roles give null (NaN) KPIs.
        Without a facility meter, facility = IT + cooling + electrical losses + other.
    co2_kg_per_kwh : float
        Grid carbon intensity [kg CO2 / kWh].
    out : 2-D array [rows, len(KPI_FIELDS)], written (NaN = null)
    flags : 1-D int array [rows], written: 0, ``FLAG_NON_POSITIVE_IT`` or
        ``FLAG_BETTER_THAN_PERFECT``.
    """
    nan = np.nan
    for r in range(energy.shape[0]):
        e = energy[r]
        it = e[I_IT]
        cooling = 0.0
        any_cooling = False
        for c in COOLING_ROLES:
            if metered[c]:
                cooling += e[c]
                any_cooling = True
        if metered[I_FAC]:
            facility = e[I_FAC]
        else:
            facility = it + cooling + e[I_EL] + e[I_OTHER]
        out[r, F_COOLING] = cooling if any_cooling else nan
        out[r, F_FACILITY] = facility
        flags[r] = 0
        for j in range(out.shape[1] - 2):
            out[r, j] = nan
        if not it > 0.0:
            flags[r] = FLAG_NON_POSITIVE_IT
        else:
            pue = facility / it
            if pue < 1.0:
                flags[r] = FLAG_BETTER_THAN_PERFECT
            else:
                out[r, F_PUE] = pue
            if any_cooling:
                out[r, F_PPUE_COOLING] = (it + cooling) / it
            for k in range(COOLING_ROLES.shape[0]):
                c = COOLING_ROLES[k]
                if metered[c]:
                    out[r, F_PPUE_COOLING + 1 + k] = (it + e[c]) / it
            if metered[I_EL]:
                out[r, F_PPUE_EL] = (it + e[I_EL]) / it
            if metered[I_OTHER]:
                out[r, F_PPUE_OTHER] = (it + e[I_OTHER]) / it
            if metered[I_GRID]:
                grid = e[I_GRID]
            else:
                grid = max(facility - e[I_PV] - e[I_WIND], 0.0)
            out[r, F_CUE] = grid * co2_kg_per_kwh / it
            if metered[I_WATER]:
                out[r, F_WUE] = e[I_WATER] / it
        if facility > 0.0:
            if metered[I_PV] or metered[I_WIND]:
                out[r, F_REF] = min((e[I_PV] + e[I_WIND]) / facility, 1.0)
            if metered[I_HEAT]:
                out[r, F_ERF] = e[I_HEAT] / facility


def compute(energy: np.ndarray, metered: np.ndarray, co2_kg_per_kwh: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Validate and run :func:`kpis`; returns ``(fields, flags)``."""
    energy = np.ascontiguousarray(energy, dtype=np.float64)
    if energy.ndim != 2 or energy.shape[1] != N_ROLES:
        msg = f"energy must be [rows, {N_ROLES}] (one column per role); got shape {energy.shape}"
        raise ValueError(msg)
    metered = np.ascontiguousarray(metered, dtype=np.bool_)
    out = np.empty((energy.shape[0], len(KPI_FIELDS)), np.float64)
    flags = np.empty(energy.shape[0], np.int8)
    kpis(energy, metered, float(co2_kg_per_kwh), out, flags)
    return out, flags
