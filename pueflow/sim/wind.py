"""Wind-turbine output from a real power curve in windpowerlib's bundled turbine library.

The 10 m wind of :mod:`pueflow.sim.weather` is carried to hub height with the Hellman
power law (``windpowerlib.wind_speed.hellman``); each turbine sees it with its own slow
turbulence, and ``windpowerlib.power_output.power_curve`` maps speed to power (zero below
cut-in and above cut-out).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from pueflow.config.plant import WindSpec
from pueflow.exceptions import ConfigError
from pueflow.sim.weather import ar1


@functools.cache
def turbine_types() -> tuple[str, ...]:
    """Turbine types with a power curve in windpowerlib's bundled (offline) library."""
    from windpowerlib import get_turbine_types

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        df = get_turbine_types(turbine_library="local", print_out=False, filter_=True)
    return tuple(df.loc[df["has_power_curve"], "turbine_type"])


@functools.cache
def power_curve(turbine_type: str, hub_height_m: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Return the power curve of a turbine in windpowerlib's bundled library; cached.

    Returns
    -------
    wind_speed : array [m/s]
    power : array [kW]
    nominal_power : float [kW]

    Raises
    ------
    ConfigError
        If ``turbine_type`` is not in the library (the message lists close names).
    """
    if turbine_type not in turbine_types():
        import difflib

        close = difflib.get_close_matches(turbine_type, turbine_types(), n=3)
        source = "<plant>"
        raise ConfigError(source, [("plant.wind.turbine_type", turbine_type,
                                    f"not in windpowerlib's bundled library; close names: {close}")])
    from windpowerlib import WindTurbine

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pandas deprecations inside windpowerlib
        t = WindTurbine(hub_height=hub_height_m, turbine_type=turbine_type)
    pc = t.power_curve
    return (pc["wind_speed"].to_numpy(float), pc["value"].to_numpy(float) / 1000.0,
            float(t.nominal_power) / 1000.0)


def hub_speed_m_s(spec: WindSpec, wind10_m_s: np.ndarray) -> np.ndarray:
    """Hub-height wind speed from 10 m speed (Hellman power law) [m/s]."""
    from windpowerlib.wind_speed import hellman

    return np.asarray(hellman(wind10_m_s, 10.0, spec.hub_height_m, hellman_exponent=spec.hellman_exponent))


def turbine_power_kw(spec: WindSpec, wind10_m_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return each turbine's AC output on the weather grid [kW], shape (n_grid, count).

    Each turbine sees the hub-height speed with its own turbulence drawn from ``rng``.
    """
    from windpowerlib.power_output import power_curve as pc_fn

    speeds, power, _ = power_curve(spec.turbine_type, spec.hub_height_m)
    hub = hub_speed_m_s(spec, wind10_m_s)
    out = np.empty((len(hub), spec.count))
    for i in range(spec.count):
        v = hub * (1.0 + spec.turbulence * ar1(rng, len(hub), 900.0))
        out[:, i] = np.asarray(pc_fn(np.maximum(v, 0.0), speeds, power))
    return out
