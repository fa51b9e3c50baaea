"""Cooling plant model: electric power of a liquid/immersion loop, its convex planes, chip limit.

A loop moves ``heat`` [kW_th] from the racks to ambient air. Pumps run at constant
supply/return difference, so flow and pump power scale with heat (power ~ heat^3). Dry
coolers at full fans reject ``design_heat * ITD / ITD_design`` where the inlet temperature
difference ITD = return - ambient; fan power scales with the cube of the share of that
capacity in use. Heat the dry coolers cannot reject is trimmed by a chiller whose COP is a
fraction of Carnot between the supply and ambient plus a condenser lift. A loop without a
chiller cannot hold a supply temperature below :func:`min_supply_c`.

The function is convex in heat and in supply temperature and nearly jointly convex while
the dry coolers carry most of the heat, so a few planes fitted per step from the forecast
ambient give the LP a convex piecewise-linear model of it (:func:`fit_planes`).

Parameters live in one float64 vector per loop; see the ``P_*`` indices.
"""

from __future__ import annotations

import functools

import numpy as np

from pueflow.jit import njit

P_HEAT, P_DT, P_APPROACH, P_FAN, P_PUMP, P_CHILLER, P_CARNOT, P_LIFT = range(8)
N_PARAMS = 8
COP_MIN = 2.0
COP_MAX = 12.0
#: Anchors of the starting tangent planes, as fractions of the heat and supply-temperature ranges.
PLANE_Q = (0.3, 0.85)
PLANE_T = (0.2, 0.8)
#: Sample grid of the max-affine least-squares refinement (fractions of the ranges).
SAMPLE_Q = tuple(0.15 + 0.85 * i / 7 for i in range(8))
SAMPLE_T = tuple(i / 5 for i in range(6))
REFINE_ITERS = 10


def loop_params(design_heat_kw: float, design_delta_t_c: float, approach_c: float, fan_kw: float,
                pump_kw: float, chiller: bool, carnot_fraction: float, lift_c: float) -> np.ndarray:
    """Pack one loop's plant figures into the parameter vector the kernels take."""
    p = np.zeros(N_PARAMS)
    p[P_HEAT], p[P_DT], p[P_APPROACH] = design_heat_kw, design_delta_t_c, approach_c
    p[P_FAN], p[P_PUMP], p[P_CHILLER] = fan_kw, pump_kw, 1.0 if chiller else 0.0
    p[P_CARNOT], p[P_LIFT] = carnot_fraction, lift_c
    return p


@njit
def _cooling_kw(heat_kw: float, supply_c: float, ambient_c: float, p: np.ndarray) -> float:
    qd = p[P_HEAT]
    if not heat_kw > 0.0 or qd <= 0.0:
        return 0.0
    x = heat_kw / qd
    pump = p[P_PUMP] * x * x * x
    itd_d = p[P_DT] + p[P_APPROACH]
    itd = supply_c + p[P_DT] - ambient_c
    cap = qd * itd / itd_d if itd > 0.0 else 0.0
    if cap >= heat_kw:
        r = heat_kw / cap
        return pump + p[P_FAN] * r * r * r
    rest = heat_kw - cap
    if p[P_CHILLER] <= 0.0:
        # the loop drifts warm instead; its electric power is pumps and full fans
        return pump + p[P_FAN]
    lift = ambient_c + p[P_LIFT] - supply_c
    cop = COP_MAX
    if lift > 0.0:
        cop = min(COP_MAX, max(COP_MIN, p[P_CARNOT] * (supply_c + 273.15) / lift))
    return pump + p[P_FAN] + rest / cop


@njit
def _cooling_kw_vec(heat_kw, supply_c, ambient_c, p, out):
    for i in range(len(out)):
        out[i] = _cooling_kw(heat_kw[i], supply_c[i], ambient_c[i], p)
    return out


@njit
def _plane_lsq(q, t, f, mask, out):
    """Least-squares plane f ≈ a q + g t + h over the masked samples, then a ≥ 0, g ≤ 0.

    Leaves ``out`` unchanged (returns False) with fewer than four samples or when they do
    not span a plane.
    """
    n = 0.0
    mq = mt = mf = 0.0
    for i in range(len(q)):
        if mask[i]:
            n += 1.0
            mq += q[i]
            mt += t[i]
            mf += f[i]
    if n < 4.0:
        return False
    mq /= n
    mt /= n
    mf /= n
    cqq = ctt = cqt = cqf = ctf = 0.0
    for i in range(len(q)):
        if mask[i]:
            dq, dt, df = q[i] - mq, t[i] - mt, f[i] - mf
            cqq += dq * dq
            ctt += dt * dt
            cqt += dq * dt
            cqf += dq * df
            ctf += dt * df
    det = cqq * ctt - cqt * cqt
    if det <= 1e-9 * cqq * ctt:
        return False
    a = max((cqf * ctt - ctf * cqt) / det, 0.0)
    g = min((ctf * cqq - cqf * cqt) / det, 0.0)
    out[0] = a
    out[1] = g
    out[2] = mf - a * mq - g * mt
    return True


@njit
def _fit_planes(ambient_c, p, q_lo, q_hi, t_lo, t_hi, qa, ta, qs, ts, iters, a, g, h):
    """Max-affine fit of cooling power per step.

    Tangent planes at the anchors (``qa`` × ``ta``, fractions of the ranges) start a few
    rounds of max-affine least squares over the sample grid (``qs`` × ``ts``): each sample
    goes to the plane that is highest there, each plane is refitted to its samples.
    """
    n = len(ambient_c)
    k = len(qa) * len(ta)
    ns = len(qs) * len(ts)
    sq = np.empty(ns)
    stt = np.empty(ns)
    sf = np.empty(ns)
    lab = np.empty(ns, np.int64)
    mask = np.empty(ns, np.bool_)
    plane = np.empty(3)
    dq = max(1e-3 * p[P_HEAT], 1e-6)
    dt = 0.05
    for s in range(n):
        amb = ambient_c[s]
        j = 0
        for iq in range(len(qa)):
            for it in range(len(ta)):
                q0 = q_lo + qa[iq] * (q_hi - q_lo)
                t0 = t_lo + ta[it] * (t_hi - t_lo)
                f0 = _cooling_kw(q0, t0, amb, p)
                lo = max(q0 - dq, 0.0)
                fq = (_cooling_kw(q0 + dq, t0, amb, p) - _cooling_kw(lo, t0, amb, p)) / (q0 + dq - lo)
                ft = (_cooling_kw(q0, t0 + dt, amb, p) - _cooling_kw(q0, t0 - dt, amb, p)) / (2 * dt)
                fq = max(fq, 0.0)
                ft = min(ft, 0.0)
                a[s, j] = fq
                g[s, j] = ft
                h[s, j] = f0 - fq * q0 - ft * t0
                j += 1
        i = 0
        for iq in range(len(qs)):
            for it in range(len(ts)):
                sq[i] = q_lo + qs[iq] * (q_hi - q_lo)
                stt[i] = t_lo + ts[it] * (t_hi - t_lo)
                sf[i] = _cooling_kw(sq[i], stt[i], amb, p)
                i += 1
        for _ in range(iters):
            for i in range(ns):
                best = -np.inf
                for j in range(k):
                    v = a[s, j] * sq[i] + g[s, j] * stt[i] + h[s, j]
                    if v > best:
                        best = v
                        lab[i] = j
            for j in range(k):
                for i in range(ns):
                    mask[i] = lab[i] == j
                if _plane_lsq(sq, stt, sf, mask, plane):
                    a[s, j] = plane[0]
                    g[s, j] = plane[1]
                    h[s, j] = plane[2]


def cooling_power_kw(heat_kw, supply_c, ambient_c, params: np.ndarray) -> np.ndarray:
    """Electric power of a cooling loop.

    Parameters
    ----------
    heat_kw : array_like [kW_th]
        Heat load on the loop; zero, negative or NaN heat needs no power.
    supply_c : array_like [°C]
        Supply-temperature setpoint.
    ambient_c : array_like [°C]
        Dry-bulb ambient.
    params : array [N_PARAMS]
        From :func:`loop_params`.

    Returns
    -------
    array [kW_e], broadcast shape of the inputs.
    """
    q, t, a = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (heat_kw, supply_c, ambient_c)))
    shape = q.shape
    out = np.empty(q.size)
    _cooling_kw_vec(np.ascontiguousarray(q).ravel(), np.ascontiguousarray(t).ravel(),
                    np.ascontiguousarray(a).ravel(), np.ascontiguousarray(params, dtype=np.float64), out)
    return out.reshape(shape)


def min_supply_c(heat_kw, ambient_c, params: np.ndarray) -> np.ndarray:
    """Lowest supply temperature [°C] held without a chiller (``-inf`` with no design heat)."""
    q, a = np.broadcast_arrays(np.asarray(heat_kw, np.float64), np.asarray(ambient_c, np.float64))
    if params[P_HEAT] <= 0:
        return np.full(q.shape, -np.inf)
    return a + (params[P_DT] + params[P_APPROACH]) * np.maximum(q, 0.0) / params[P_HEAT] - params[P_DT]


def max_supply_c(heat_kw, chip_limit_c: float, rho_c_per_kw: float) -> np.ndarray:
    """Highest supply temperature [°C] keeping chips at or below ``chip_limit_c``.

    Chip temperature is modelled as supply + ``rho_c_per_kw`` × heat (a lumped thermal
    resistance from coolant to junction at the loop's mean rack power).
    """
    return chip_limit_c - rho_c_per_kw * np.maximum(np.asarray(heat_kw, np.float64), 0.0)


def fit_planes(ambient_c, params: np.ndarray, heat_range_kw: tuple[float, float],
               supply_range_c: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit the LP's cooling planes for each step.

    Tangent planes at a few anchors, refined by max-affine least squares over a grid of the
    region (the plant is not jointly convex where the chiller's COP gains from a warmer
    supply, so pure tangent planes overshoot there; the refit trades that for a small error
    spread over the region).

    Parameters
    ----------
    ambient_c : array [°C], one per step
    params : array [N_PARAMS]
    heat_range_kw, supply_range_c : (low, high)
        Region the anchors are spread over (``PLANE_Q`` × ``PLANE_T``).

    Returns
    -------
    a : array [steps, K] [kW_e/kW_th], ≥ 0
    g : array [steps, K] [kW_e/K], ≤ 0
    h : array [steps, K] [kW_e]
        Cooling power ≥ max_k (a·heat + g·supply + h).
    """
    amb = np.ascontiguousarray(ambient_c, dtype=np.float64)
    k = len(PLANE_Q) * len(PLANE_T)
    a, g, h = (np.empty((len(amb), k)) for _ in range(3))
    _fit_planes(amb, np.ascontiguousarray(params, dtype=np.float64), float(heat_range_kw[0]),
                float(heat_range_kw[1]), float(supply_range_c[0]), float(supply_range_c[1]),
                np.array(PLANE_Q), np.array(PLANE_T), np.array(SAMPLE_Q), np.array(SAMPLE_T),
                REFINE_ITERS, a, g, h)
    return a, g, h


#: Ambient grid of the plane tables [°C]: planes are looked up, not refitted, per step.
TABLE_AMBIENT_C = (-30.0, 60.0, 0.1)


@functools.lru_cache(maxsize=64)
def _table(params: tuple[float, ...], heat_range: tuple[float, float],
           supply_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi, step = TABLE_AMBIENT_C
    amb = lo + step * np.arange(int(round((hi - lo) / step)) + 1)
    return fit_planes(amb, np.array(params), heat_range, supply_range)


def planes_for(ambient_c, params: np.ndarray, heat_range_kw: tuple[float, float],
               supply_range_c: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return :func:`fit_planes` at ``ambient_c`` rounded to the table's 0.1 K grid.

    The table is fitted once per loop over -30..60 degC (``ambient_c`` is clipped to it;
    NaN reads as 20 degC), so the same ambient gives the same planes whoever asks, at the
    cost of a lookup.

    Parameters
    ----------
    ambient_c : float or array [degC]
    params : array
        The loop's parameter vector (:func:`loop_params`).
    heat_range_kw : (float, float)
        Heat span the planes are fitted over [kW].
    supply_range_c : (float, float)
        Supply temperature span [degC].

    Returns
    -------
    a, g, h : arrays
        Plane coefficients [kW_e/kW], [kW_e/K], [kW_e], shape ``ambient_c.shape + (K,)``.
    """
    lo, hi, step = TABLE_AMBIENT_C
    a, g, h = _table(tuple(float(v) for v in params), (float(heat_range_kw[0]), float(heat_range_kw[1])),
                     (float(supply_range_c[0]), float(supply_range_c[1])))
    amb = np.nan_to_num(np.asarray(ambient_c, np.float64), nan=20.0)
    i = np.clip(np.rint((amb - lo) / step), 0, len(a) - 1).astype(np.int64)
    return a[i], g[i], h[i]


def planes_kw(heat_kw, supply_c, a: np.ndarray, g: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Return the plane model's cooling power [kW_e]: max(0, max_k a·heat + g·supply + h).

    ``heat_kw`` [kW] and ``supply_c`` [degC] broadcast against the planes' leading shape;
    the result has that shape (one value per step).
    """
    q = np.asarray(heat_kw, np.float64)[..., None]
    t = np.asarray(supply_c, np.float64)[..., None]
    return np.maximum((a * q + g * t + h).max(axis=-1), 0.0)
