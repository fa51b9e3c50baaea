"""PV output from pvlib, using only its bundled SAM libraries (nothing is downloaded).

Clear sky (Ineichen, bundled Linke turbidity) x a stochastic clear-sky index, Erbs
decomposition, fixed-tilt transposition, a CEC module (single diode) and a CEC (Sandia)
inverter.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pueflow.config.plant import PvSpec
from pueflow.exceptions import ConfigError
from pueflow.sim.weather import Weather


def _data_dir() -> Path:
    import pvlib

    return Path(pvlib.__file__).parent / "data"


@functools.cache
def cec_modules() -> pd.DataFrame:
    """Return pvlib's bundled CEC module library (2019-03-05), one column per module; cached."""
    import pvlib

    return pvlib.pvsystem.retrieve_sam(path=str(_data_dir() / "sam-library-cec-modules-2019-03-05.csv"))


@functools.cache
def cec_inverters() -> pd.DataFrame:
    """Return pvlib's bundled CEC inverter library (2019-03-05), one column per inverter; cached."""
    import pvlib

    return pvlib.pvsystem.retrieve_sam(path=str(_data_dir() / "sam-library-cec-inverters-2019-03-05.csv"))


def _lookup(table: pd.DataFrame, name: str, key: str) -> pd.Series:
    if name in table.columns:
        return table[name]
    import difflib

    close = difflib.get_close_matches(name, list(table.columns), n=3)
    source = "<plant>"
    raise ConfigError(source, [(f"plant.pv.{key}", name,
                                f"not in pvlib's bundled CEC library; close names: {close}")])


@dataclass
class PvLayout:
    """How the configured kWp is built from the chosen module and inverter."""

    inverters: int
    modules_per_string: int
    strings_per_inverter: int
    kwp_per_inverter: float
    inverter_ac_kw: float
    tilt_deg: float
    azimuth_deg: float


def layout(spec: PvSpec, latitude: float) -> PvLayout:
    """Strings sized to the inverter's MPPT window, inverters to the DC/AC ratio."""
    mod = _lookup(cec_modules(), spec.module, "module")
    inv = _lookup(cec_inverters(), spec.inverter, "inverter")
    ac_kw = float(inv["Paco"]) / 1000.0
    n_inv = spec.inverters or max(1, math.ceil(spec.kwp / (spec.dc_ac_ratio * ac_kw)))
    v_target = 0.5 * (float(inv["Mppt_low"]) + float(inv["Mppt_high"]))
    mps = max(1, round(v_target / float(mod["V_mp_ref"])))
    while mps > 1 and 1.15 * mps * float(mod["V_oc_ref"]) > float(inv["Vdcmax"]):
        mps -= 1
    kwp_inv = spec.kwp / n_inv
    strings = max(1, round(kwp_inv * 1000.0 / (float(mod["STC"]) * mps)))
    tilt = spec.tilt_deg if spec.tilt_deg is not None else round(0.9 * abs(latitude), 1)
    azimuth = spec.azimuth_deg if spec.azimuth_deg is not None else (180.0 if latitude >= 0 else 0.0)
    return PvLayout(n_inv, mps, strings, strings * mps * float(mod["STC"]) / 1000.0, ac_kw, tilt, azimuth)


def ac_power_kw(spec: PvSpec, lay: PvLayout, weather: Weather, latitude: float, longitude: float,
                altitude_m: float) -> np.ndarray:
    """AC output of one inverter on the weather grid [kW]; see :func:`_ac_power_kw`."""
    with warnings.catch_warnings():
        # pandas deprecations raised inside pvlib, and single diode at zero irradiance (night)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        with np.errstate(invalid="ignore", divide="ignore"):
            return _ac_power_kw(spec, lay, weather, latitude, longitude, altitude_m)


def _ac_power_kw(spec: PvSpec, lay: PvLayout, weather: Weather, latitude: float, longitude: float,
                 altitude_m: float) -> np.ndarray:
    """AC output of one inverter on the weather grid [kW], >= 0 (night tare is not exported).

    The clear-sky index scales global horizontal irradiance; Erbs splits it into beam and
    diffuse; pvlib's ModelChain does transposition, cell temperature (SAPM open rack),
    the CEC single-diode module and the Sandia inverter.
    """
    import pvlib

    times = pd.DatetimeIndex(pd.to_datetime(weather.grid_ns, utc=True))
    loc = pvlib.location.Location(latitude, longitude, tz="UTC", altitude=altitude_m)
    solpos = loc.get_solarposition(times)
    cs = loc.get_clearsky(times, model="ineichen", solar_position=solpos)
    ghi = cs["ghi"].to_numpy() * weather.clear_sky_index
    split = pvlib.irradiance.erbs(ghi, solpos["zenith"].to_numpy(), times)
    frame = pd.DataFrame({"ghi": ghi, "dni": np.nan_to_num(split["dni"]), "dhi": np.nan_to_num(split["dhi"]),
                          "temp_air": weather.ambient_c, "wind_speed": weather.wind10_m_s}, index=times)
    temp_params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"]
    array = pvlib.pvsystem.Array(
        pvlib.pvsystem.FixedMount(lay.tilt_deg, lay.azimuth_deg),
        module_parameters=cec_modules()[spec.module], temperature_model_parameters=temp_params,
        modules_per_string=lay.modules_per_string, strings=lay.strings_per_inverter)
    system = pvlib.pvsystem.PVSystem(arrays=[array], inverter_parameters=cec_inverters()[spec.inverter])
    mc = pvlib.modelchain.ModelChain(system, loc, aoi_model="physical", spectral_model="no_loss",
                                     dc_model="cec", ac_model="sandia", losses_model="no_loss")
    mc.run_model(frame)
    dc = mc.results.dc
    dc_w = (dc["p_mp"] if isinstance(dc, pd.DataFrame) else dc).to_numpy() * (1.0 - spec.dc_loss_fraction)
    inv = cec_inverters()[spec.inverter]
    v_dc = (dc["v_mp"].to_numpy() if isinstance(dc, pd.DataFrame) else np.full(len(dc_w), float(inv["Vdco"])))
    ac_w = pvlib.inverter.sandia(np.nan_to_num(v_dc, nan=float(inv["Vdco"])), np.nan_to_num(dc_w), inv)
    up = solpos["apparent_elevation"].to_numpy() > 0.0
    return np.where(up, np.clip(np.nan_to_num(ac_w), 0.0, None), 0.0) / 1000.0
