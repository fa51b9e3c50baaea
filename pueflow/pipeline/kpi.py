"""ISO/IEC 30134 KPIs from per-role window energies (The Green Grid definitions).

Every KPI is a ratio of energies summed over the same window: never a mean of ratios,
never a ratio of instantaneous powers. Fleet KPIs sum energies across sites first.

- PUE = facility / IT. IT <= 0 gives no PUE (null + ``non_positive_it``); PUE < 1 is a
  better-than-perfect reading: flagged and not reported.
- pPUE_x = (IT + overhead_x) / IT for each cooling subsystem and overhead class, so that
  1 + sum(pPUE_x - 1) = PUE when the overheads add up to facility - IT.
- REF = renewable / facility, capped at 1, renewable = on-site ``pv`` + ``wind`` + contracted
  ``ppa`` (ISO/IEC 30134-3 counts contracted supply); CUE = grid kWh x grid CO2 [kg/kWh] / IT;
  WUE = water [L] / IT; ERF = reused heat / facility.
- ``cfe_matched_kwh`` = min(renewable, facility) of a window and ``cfe_hourly`` = matched /
  facility: reported on 1-hour windows only (see :data:`CFE_WINDOW_NS`); over a longer period
  the carbon-free share is the ratio of sums of the hours (:func:`cfe_of_hours`), an
  energy-weighted hourly match that is never above the period's REF.
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
       "cfe_hourly", "cfe_matched_kwh", "cooling_kwh", "facility_kwh")
)
F = {name: i for i, name in enumerate(KPI_FIELDS)}
FLAG_NON_POSITIVE_IT, FLAG_BETTER_THAN_PERFECT = 1, 2

# integer constants: numba reads module-level ints, not dicts
I_IT, I_FAC, I_EL, I_OTHER = R["it"], R["facility"], R["electrical_losses"], R["other"]
I_PV, I_WIND, I_GRID, I_WATER, I_HEAT = R["pv"], R["wind"], R["grid_import"], R["water_l"], R["heat_reuse_kwh"]
F_PUE, F_PPUE_COOLING, F_PPUE_EL, F_PPUE_OTHER = F["pue"], F["ppue_cooling"], F["ppue_electrical"], F["ppue_other"]
F_REF, F_CUE, F_WUE, F_ERF = F["ref"], F["cue_kg_per_kwh"], F["wue_l_per_kwh"], F["erf"]
F_COOLING, F_FACILITY = F["cooling_kwh"], F["facility_kwh"]
F_CFE, F_CFE_MATCHED = F["cfe_hourly"], F["cfe_matched_kwh"]
I_PPA = R["ppa"]
#: the only window length [ns] whose rows carry ``cfe_hourly`` / ``cfe_matched_kwh``
CFE_WINDOW_NS = 3600 * 10**9
CFE_FIELDS = ("cfe_hourly", "cfe_matched_kwh")


# ----------------------------------------------------------------------------- the ratio rules
# Written once, used by the window kernel, the fleet aggregates and the run summary: each
# gives NaN (null) where the KPI is undefined, never inf.


@njit
def pue_of(facility_kwh, it_kwh):
    """PUE = facility / IT energy [-]; NaN when IT <= 0 or the ratio is below 1 (flagged)."""
    if not it_kwh > 0.0:
        return np.nan
    r = facility_kwh / it_kwh
    return r if r >= 1.0 else np.nan


@njit
def ppue_of(it_kwh, overhead_kwh):
    """Partial PUE = (IT + one overhead) / IT [-]; NaN when IT <= 0."""
    return (it_kwh + overhead_kwh) / it_kwh if it_kwh > 0.0 else np.nan


@njit
def per_it(x, it_kwh):
    """``x`` per kWh of IT energy (CUE [kg/kWh], WUE [L/kWh]); NaN when IT <= 0."""
    return x / it_kwh if it_kwh > 0.0 else np.nan


@njit
def share_of_facility(x_kwh, facility_kwh, cap):
    """``x`` / facility energy (REF capped at 1, ERF uncapped); NaN when facility <= 0."""
    if not facility_kwh > 0.0:
        return np.nan
    r = x_kwh / facility_kwh
    return min(r, 1.0) if cap else r


@njit
def _sum_ratios(fac, it, ren, co2, water, cool, out):
    for i in range(fac.shape[0]):
        out[i, 0] = pue_of(fac[i], it[i])
        out[i, 1] = share_of_facility(ren[i], fac[i], True)
        out[i, 2] = per_it(co2[i], it[i])
        out[i, 3] = per_it(water[i], it[i])
        out[i, 4] = ppue_of(it[i], cool[i])


#: columns of :func:`ratios_of_sums`
SUM_RATIOS = ("pue", "ref", "cue_kg_per_kwh", "wue_l_per_kwh", "ppue_cooling")


def ratios_of_sums(facility_kwh, it_kwh, renewable_kwh, co2_kg=None, water_l=None,
                   cooling_kwh=None) -> dict[str, np.ndarray]:
    """KPIs of summed energies (fleet rows, run summaries), by the same rules as the kernel.

    Parameters
    ----------
    facility_kwh, it_kwh, renewable_kwh : array [kWh]
    co2_kg : array [kg], optional
    water_l : array [L], optional
    cooling_kwh : array [kWh], optional

    Returns
    -------
    dict of arrays named as :data:`SUM_RATIOS`; NaN where a KPI is undefined.
    """
    fac = np.ascontiguousarray(facility_kwh, np.float64)
    n = fac.shape[0]

    def col(x):
        return np.zeros(n) if x is None else np.nan_to_num(np.ascontiguousarray(x, np.float64))

    out = np.empty((n, len(SUM_RATIOS)), np.float64)
    _sum_ratios(fac, np.ascontiguousarray(it_kwh, np.float64), col(renewable_kwh), col(co2_kg),
                col(water_l), col(cooling_kwh), out)
    return {name: out[:, j] for j, name in enumerate(SUM_RATIOS)}


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
            out[r, F_PUE] = pue_of(facility, it)
            if facility / it < 1.0:
                flags[r] = FLAG_BETTER_THAN_PERFECT
            if any_cooling:
                out[r, F_PPUE_COOLING] = ppue_of(it, cooling)
            for k in range(COOLING_ROLES.shape[0]):
                c = COOLING_ROLES[k]
                if metered[c]:
                    out[r, F_PPUE_COOLING + 1 + k] = ppue_of(it, e[c])
            if metered[I_EL]:
                out[r, F_PPUE_EL] = ppue_of(it, e[I_EL])
            if metered[I_OTHER]:
                out[r, F_PPUE_OTHER] = ppue_of(it, e[I_OTHER])
            if metered[I_GRID]:
                grid = e[I_GRID]
            else:
                # contracted ``ppa`` supply is off site: it never offsets the grid estimate
                grid = max(facility - e[I_PV] - e[I_WIND], 0.0)
            out[r, F_CUE] = per_it(grid * co2_kg_per_kwh, it)
            if metered[I_WATER]:
                out[r, F_WUE] = per_it(e[I_WATER], it)
        if metered[I_PV] or metered[I_WIND] or metered[I_PPA]:
            ren = e[I_PV] + e[I_WIND] + e[I_PPA]
            out[r, F_REF] = share_of_facility(ren, facility, True)
            if facility > 0.0:
                out[r, F_CFE_MATCHED] = min(max(ren, 0.0), facility)
                out[r, F_CFE] = out[r, F_CFE_MATCHED] / facility
        if metered[I_HEAT]:
            out[r, F_ERF] = share_of_facility(e[I_HEAT], facility, False)


def cfe_of_hours(facility_kwh, renewable_kwh) -> float:
    """Energy-weighted hourly carbon-free share of a period from its hourly energies.

    Parameters
    ----------
    facility_kwh : array [kWh]
        Facility energy of each hour.
    renewable_kwh : array [kWh]
        Renewable generation (on-site + contracted) of the same hours.

    Returns
    -------
    float
        sum over hours of min(renewable, facility) / sum of facility [-]; NaN when the
        facility energy sums to <= 0.
    """
    fac = np.nan_to_num(np.asarray(facility_kwh, np.float64))
    ren = np.nan_to_num(np.asarray(renewable_kwh, np.float64))
    matched = np.minimum(ren, np.maximum(fac, 0.0)).sum()
    return float(share_of_facility(matched, fac.sum(), True))


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
