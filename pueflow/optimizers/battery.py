"""The battery's state-of-charge step and the power it allows in a step, written once.

The rule kernel, the dispatcher's state carry, the backtest's plant and the safety clip
all move a battery through a step the same way:

    e' = e (1 − σ dt) + η_c dt p      (p ≥ 0, charging)
    e' = e (1 − σ dt) + dt p / η_d    (p < 0, discharging)

with ``p`` the battery power [kW] at its terminals (+ charge), ``σ`` the self-discharge
[1/h], ``η_c``/``η_d`` the one-way efficiencies. The LP writes the same recursion as
constraints (charge and discharge as two columns); this module is its scalar form.
Both functions are numba kernels so the rule kernel can call them; from Python they
are ordinary functions of floats.
"""

from __future__ import annotations

from pueflow.jit import njit


@njit
def soc_step(e_kwh: float, power_kw: float, dt_h: float, eta_charge: float, eta_discharge: float,
             self_discharge_per_h: float) -> float:
    """Return the energy [kWh] after a step of ``dt_h`` [h] at terminal power ``power_kw`` [kW, + charge].

    Parameters
    ----------
    e_kwh : float [kWh]
        Stored energy at the start of the step.
    power_kw : float [kW]
        Power at the terminals, positive charging, negative discharging.
    dt_h : float [h]
        Step length.
    eta_charge, eta_discharge : float [-]
        One-way efficiencies in (0, 1].
    self_discharge_per_h : float [1/h]
        Share of the stored energy lost per hour.

    Returns
    -------
    float [kWh]
    """
    keep = 1.0 - self_discharge_per_h * dt_h
    if power_kw >= 0.0:
        return e_kwh * keep + eta_charge * dt_h * power_kw
    return e_kwh * keep + dt_h * power_kw / eta_discharge


@njit
def power_window(e_kwh: float, dt_h: float, e_lo_kwh: float, e_hi_kwh: float, eta_charge: float,
                 eta_discharge: float, self_discharge_per_h: float, charge_kw: float,
                 discharge_kw: float) -> tuple[float, float]:
    """Lowest and highest terminal power [kW] that keep the step's end energy in ``[e_lo, e_hi]``.

    Parameters
    ----------
    e_kwh : float [kWh]
        Stored energy at the start of the step.
    dt_h : float [h]
        Step length, > 0.
    e_lo_kwh, e_hi_kwh : float [kWh]
        Band the energy must end in; a start outside it may stay where self-discharge
        takes it (the window then only allows moving back towards the band).
    charge_kw, discharge_kw : float [kW]
        Power ratings (both ≥ 0).

    Returns
    -------
    (lo, hi) : float [kW]
        ``-min(discharge_kw, what the energy above e_lo delivers)`` and
        ``min(charge_kw, what fits below e_hi)``; ``lo ≤ 0 ≤ hi``.
    """
    keep = 1.0 - self_discharge_per_h * dt_h
    e = e_kwh * keep
    room = max((e_hi_kwh - e) / (eta_charge * dt_h), 0.0)
    avail = max((e - e_lo_kwh) * eta_discharge / dt_h, 0.0)
    return -min(discharge_kw, avail), min(charge_kw, room)
