"""Clear-sky global horizontal irradiance: a numba fast path and a pvlib reference path.

The fast path uses NOAA's low-precision solar position (Spencer's series for declination
and the equation of time, accurate to a few tenths of a degree) and the Haurwitz clear-sky
model, GHI = 1098 cos(z) exp(-0.057 / cos(z)) [W/m²]. It needs no data files and costs a
few nanoseconds a step. ``model="pvlib"`` calls pvlib (Ineichen with its Linke turbidity
climatology) when it is installed.
"""

from __future__ import annotations

import math

import numpy as np

from pueflow.jit import njit

NS_PER_DAY = 86_400_000_000_000


@njit
def _day_of_year(days: int) -> int:
    """Day of year (1-366) of ``days`` since 1970-01-01 (proleptic Gregorian)."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy_mar = doe - (365 * yoe + yoe // 4 - yoe // 100)  # day of year starting 1 March
    mp = (5 * doy_mar + 2) // 153
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    d = doy_mar - (153 * mp + 2) // 5 + 1
    leap = 1 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 0
    cum = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
    return cum[m - 1] + d + (leap if m > 2 else 0)


@njit
def _cos_zenith(time_ns: int, lat_deg: float, lon_deg: float) -> float:
    days = time_ns // NS_PER_DAY
    sec = (time_ns - days * NS_PER_DAY) / 1e9
    hour = sec / 3600.0
    doy = _day_of_year(days)
    gam = 2.0 * math.pi / 365.0 * (doy - 1 + (hour - 12.0) / 24.0)
    eqt = 229.18 * (0.000075 + 0.001868 * math.cos(gam) - 0.032077 * math.sin(gam)
                    - 0.014615 * math.cos(2 * gam) - 0.040849 * math.sin(2 * gam))
    decl = (0.006918 - 0.399912 * math.cos(gam) + 0.070257 * math.sin(gam)
            - 0.006758 * math.cos(2 * gam) + 0.000907 * math.sin(2 * gam)
            - 0.002697 * math.cos(3 * gam) + 0.00148 * math.sin(3 * gam))
    tst = hour * 60.0 + eqt + 4.0 * lon_deg
    ha = math.radians(tst / 4.0 - 180.0)
    lat = math.radians(lat_deg)
    return math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(ha)


@njit
def _clearsky_ghi(time_ns, lat_deg, lon_deg, out):
    for i in range(len(time_ns)):
        cz = _cos_zenith(time_ns[i], lat_deg, lon_deg)
        out[i] = 1098.0 * cz * math.exp(-0.057 / cz) if cz > 0.0 else 0.0
    return out


@njit
def _cos_zenith_vec(time_ns, lat_deg, lon_deg, out):
    for i in range(len(time_ns)):
        out[i] = _cos_zenith(time_ns[i], lat_deg, lon_deg)
    return out


def cos_zenith(time_ns, latitude: float, longitude: float) -> np.ndarray:
    """Cosine of the solar zenith angle [-] at UTC ``time_ns`` [int64 ns]."""
    t = np.ascontiguousarray(time_ns, dtype=np.int64)
    return _cos_zenith_vec(t, float(latitude), float(longitude), np.empty(len(t)))


def clearsky_ghi(time_ns, latitude: float, longitude: float, altitude_m: float = 0.0,
                 model: str = "fast") -> np.ndarray:
    """Clear-sky GHI [W/m²] at UTC ``time_ns`` [int64 ns, instants].

    Parameters
    ----------
    latitude, longitude : [degrees], north and east positive
    altitude_m : [m], used by the pvlib path only
    model : ``"fast"`` (numba, Haurwitz) or ``"pvlib"`` (Ineichen; needs pvlib)
    """
    t = np.ascontiguousarray(time_ns, dtype=np.int64)
    if model == "fast":
        return _clearsky_ghi(t, float(latitude), float(longitude), np.empty(len(t)))
    if model != "pvlib":
        msg = f"model {model!r} is unknown; use 'fast' or 'pvlib'"
        raise ValueError(msg)
    import warnings

    import pandas as pd
    import pvlib

    idx = pd.DatetimeIndex(t.astype("datetime64[ns]")).tz_localize("UTC")
    loc = pvlib.location.Location(latitude, longitude, altitude=altitude_m)
    with warnings.catch_warnings():  # pvlib's own deprecation notices are not ours to raise
        warnings.simplefilter("ignore")
        return loc.get_clearsky(idx, model="ineichen")["ghi"].to_numpy(dtype=np.float64)
