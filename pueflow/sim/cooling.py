"""Cooling plant: CDUs, heat sink (dry coolers or towers), trim chillers, immersion, CRAH.

Heat path: rack liquid heat -> CDU (secondary loop held at its supply setpoint) -> facility
water -> dry coolers (sensible, optionally adiabatic) or cooling towers (wet bulb) -> and, when
the sink cannot reach the facility-water setpoint, trim chillers take the rest. Residual air
heat goes through CRAH fans into the same facility water. All functions are vectorised over
samples (rows) and units (columns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pueflow.config.plant import CduSpec, ChillerSpec, CrahSpec, ImmersionSpec, PlantSpec


@dataclass
class CduReadings:
    """Per-CDU readings, each shaped (n, cdus)."""

    pump_kw: np.ndarray
    flow_lpm: np.ndarray
    supply_c: np.ndarray
    return_c: np.ndarray


def cdu(spec: CduSpec, heat_kw: np.ndarray, supply_c: np.ndarray) -> CduReadings:
    """Secondary loop of each CDU.

    Flow tracks the heat at the design temperature difference, Q = m_dot * cp * dT, down to
    the VFD's minimum flow (below which dT shrinks); pump power follows the affinity law
    ``P = P_design * (flow / flow_design) ** exponent``.

    Parameters
    ----------
    heat_kw : array (n, cdus) [kW] liquid heat picked up from the racks
    supply_c : array (n,) [degC] secondary supply temperature
    """
    cp = spec.fluid_cp_kj_per_kg_k
    m_design = spec.rated_kw / (cp * spec.delta_t_design_k)               # [kg/s]
    m = np.maximum(heat_kw / (cp * spec.delta_t_design_k), spec.min_flow_fraction * m_design)
    m = np.maximum(m, 1e-9)
    dt_k = heat_kw / (m * cp)
    flow_lpm = m / spec.fluid_density_kg_m3 * 1000.0 * 60.0
    pump = spec.pump_design_kw * (m / m_design) ** spec.pump_exponent
    sup = np.broadcast_to(np.asarray(supply_c, np.float64)[:, None], heat_kw.shape)
    return CduReadings(pump, flow_lpm, sup.copy(), sup + dt_k)


def chiller_cop(spec: ChillerSpec, lift_k: np.ndarray, part_load: np.ndarray) -> np.ndarray:
    """COP from the configured lift curve, degraded at part load.

    ``COP = COP(lift) * plr / (a + (1 - a) * plr)`` with ``a = min_part_load``: at zero load a
    running chiller still draws ``a * capacity / COP(lift)``.
    """
    base = np.interp(lift_k, spec.lift_k, spec.cop)
    a = spec.min_part_load
    plr = np.clip(part_load, 1e-6, 1.0)
    return base * plr / (a + (1.0 - a) * plr)


@dataclass
class SinkReadings:
    """Heat-sink plant readings."""

    sink_fan_kw: np.ndarray      # (n, units) dry-cooler or tower fans
    chiller_kw: np.ndarray       # (n, chillers)
    facility_supply_c: np.ndarray  # (n,) achieved facility-water supply
    water_l_s: np.ndarray        # (n,) evaporated + blow-down water [L/s]
    chiller_load_kw: np.ndarray  # (n,) heat taken by chillers


def heat_sink(plant: PlantSpec, units: int, chillers: int, ambient_c: np.ndarray,
              wet_bulb_c: np.ndarray, heat_kw: np.ndarray) -> SinkReadings:
    """Reject ``heat_kw`` of facility-water heat to ambient.

    At full fan the sink removes ``rated * (T_in - T_sink) / (T_in - T_design)`` where
    ``T_in`` is the facility return and ``T_design = setpoint - approach`` the sink
    temperature it is rated at; so with the sink sized to the load, chillers start exactly
    when ``sink temperature + approach > facility supply setpoint``. Below that capacity the
    fans slow down (power ~ speed**3); above it they run flat out and trim chillers take the
    rest at a COP set by their lift. Heat beyond chiller capacity warms the facility supply.
    The sink is the wet bulb for towers, the dry bulb for dry coolers (lowered towards the
    wet bulb by adiabatic sprays above ``adiabatic_above_c``).
    """
    towers = plant.tower.count > 0
    t_fs = plant.cdu.supply_setpoint_c - plant.cdu.approach_k
    d_t = plant.facility_delta_t_k
    t_in = t_fs + d_t
    if towers:
        sink_t, approach = wet_bulb_c, plant.tower.approach_k
        rated, fan_kw, min_speed = plant.tower.rated_kw, plant.tower.fan_kw, plant.tower.min_speed
        evaporative = np.ones_like(ambient_c, dtype=bool)
    else:
        dc = plant.dry_cooler
        evaporative = (np.zeros_like(ambient_c, dtype=bool) if dc.adiabatic_above_c is None
                       else ambient_c > dc.adiabatic_above_c)
        sink_t = np.where(evaporative, ambient_c - dc.adiabatic_efficiency * (ambient_c - wet_bulb_c),
                          ambient_c)
        approach, rated, fan_kw, min_speed = dc.approach_k, dc.rated_kw, dc.fan_kw, dc.min_speed
    full_fan_kw = units * rated * np.maximum(t_in - sink_t, 0.0) / (d_t + approach)
    q_ch = np.maximum(heat_kw - full_fan_kw, 0.0)
    cap = plant.chiller.capacity_kw
    served = np.minimum(q_ch, chillers * cap)
    n_on = np.ceil(served / cap - 1e-9).astype(np.int64)
    per = np.where(n_on > 0, served / np.maximum(n_on, 1), 0.0)
    t_cond = sink_t + plant.chiller.condenser_approach_k + (approach if towers else 0.0)
    lift = np.maximum(t_cond - (t_fs - plant.chiller.evaporator_approach_k), 0.0)
    per_kw = np.where(per > 0, per / chiller_cop(plant.chiller, lift, per / cap), 0.0)
    on = np.arange(chillers)[None, :] < n_on[:, None]
    chiller_kw = np.where(on, per_kw[:, None], 0.0)
    chiller_total = chiller_kw.sum(axis=1)

    unmet = q_ch - served
    t_fs_actual = t_fs + np.where(heat_kw > 0, unmet / np.maximum(heat_kw, 1e-9), 0.0) * d_t
    # towers also reject the chillers' compressor heat; air-cooled trim chillers have their own
    sink_load = heat_kw - served + (served + chiller_total if towers else 0.0)
    speed = np.where(q_ch > 0, 1.0, np.clip(sink_load / np.maximum(full_fan_kw, 1e-9), min_speed, 1.0))
    fans = np.repeat((fan_kw * speed**3)[:, None], units, axis=1)
    water = np.where(evaporative, plant.water.l_per_kwh_rejected * (heat_kw + chiller_total) / 3600.0, 0.0)
    return SinkReadings(fans, chiller_kw, t_fs_actual, water, served)


def crah_kw(spec: CrahSpec, units: int, air_heat_kw: np.ndarray) -> np.ndarray:
    """CRAH fan power per unit [kW], shape (n, units): airflow ~ heat, power ~ airflow**3."""
    if units == 0:
        return np.zeros((len(air_heat_kw), 0))
    speed = np.clip(air_heat_kw / (units * spec.rated_kw), spec.min_speed, 1.0)
    return np.repeat((spec.fan_kw * speed**3)[:, None], units, axis=1)


def immersion_kw(spec: ImmersionSpec, tank_it_kw: np.ndarray) -> np.ndarray:
    """Tank pump + dielectric CDU power per tank [kW], shape like ``tank_it_kw``."""
    return spec.base_kw + spec.pump_kw_per_kw_it * tank_it_kw
