"""Resolve a site's config into the plain numbers the optimizers use (:class:`SiteModel`).

This is the one place that reads ``[sites.dispatch]`` together with ``[sites.plant]``:
control limits come from the dispatch section; sizes it leaves unset (battery, PV, wind)
are read from the plant description when it has them, else they are zero.
``overrides`` (dotted keys into the dispatch section) let a tuner vary settings without
touching files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from pueflow.config.dispatch import DispatchSpec, clock_hours, duration_s
from pueflow.exceptions import OptimizerError
from pueflow.optimizers import plant


@dataclass(frozen=True)
class Battery:
    """A site battery, resolved from ``[sites.dispatch.battery]`` and the plant description.

    Attributes
    ----------
    energy_kwh : float
        Usable capacity [kWh].
    charge_kw, discharge_kw : float
        Power limits [kW].
    eta_charge, eta_discharge : float
        One-way efficiencies [-] (the square root of the round trip when not given).
    self_discharge_per_h : float
        Share of the stored energy lost per hour [1/h].
    e_min_kwh, e_max_kwh, e_init_kwh, e_terminal_kwh : float
        State-of-charge bounds, start and end target [kWh].
    terminal_penalty_per_kwh : float
        Cost of ending below ``e_terminal_kwh`` [currency/kWh].
    wear_per_kwh : float
        Cost per kWh charged or discharged [currency/kWh].
    """

    energy_kwh: float
    charge_kw: float
    discharge_kw: float
    eta_charge: float
    eta_discharge: float
    self_discharge_per_h: float
    e_min_kwh: float
    e_max_kwh: float
    e_init_kwh: float
    e_terminal_kwh: float
    terminal_penalty_per_kwh: float
    wear_per_kwh: float


@dataclass(frozen=True)
class Job:
    """A flexible IT job: a daily window, an amount of work and a concave throughput curve.

    Attributes
    ----------
    name : str
    max_kw, idle_kw : float
        Power at full speed and when idle [kW].
    start_h, end_h : float
        Local clock hours of its daily window [h].
    work_h : float
        Work due by the end of the window [full-power h].
    ramp_kw_per_h : float
        Largest power change per hour [kW/h]; ``inf`` for no limit.
    alpha_per_kw, beta : array
        Slope [1/kW] and intercept [-] of each segment of the throughput curve.
    widths_kw : array
        Power span of each segment [kW].
    penalty_per_h : float
        Cost of each hour of work left undone [currency/h].
    heat_share : array
        Share of its heat that each cooling loop carries [-].
    """

    name: str
    max_kw: float
    idle_kw: float
    start_h: float
    end_h: float
    work_h: float
    ramp_kw_per_h: float  # inf = no limit
    alpha_per_kw: np.ndarray  # throughput slopes [1/kW], one per segment
    beta: np.ndarray  # intercepts [-]
    widths_kw: np.ndarray  # power span of each segment [kW]
    penalty_per_h: float
    heat_share: np.ndarray  # share of its heat per loop

    def rate(self, power_kw: float | np.ndarray) -> np.ndarray:
        """Return the work rate [full-power h per h] of the concave curve at ``power_kw``.

        Parameters
        ----------
        power_kw : float or array [kW]
            Power drawn by the job; any shape.

        Returns
        -------
        array [full-power h per h]
            Same shape as ``power_kw`` (0-d for a scalar): the lowest segment line
            ``alpha_per_kw * p + beta``, never below 0.
        """
        p = np.asarray(power_kw, np.float64)[..., None]
        return np.maximum(np.min(self.alpha_per_kw * p + self.beta, axis=-1), 0.0)


@dataclass(frozen=True)
class Loop:
    """A cooling loop with its supply-temperature band and its plant parameters.

    Attributes
    ----------
    name : str
    heat_share : float
        Share of the IT heat it carries [-].
    supply_min_c, supply_max_c, nominal_c : float
        Supply temperature band and nominal setpoint [degC].
    ramp_c_per_h : float
        Largest supply change per hour [K/h].
    chip_limit_c : float
        Hard chip temperature limit, enforced by the safety layer [degC].
    chip_plan_c : float
        The limit plans are made against: the hard limit minus a margin [degC].
    rho_c_per_kw : float
        Chip temperature rise over supply per kW of heat [K/kW].
    chiller : bool
        Whether a chiller can carry heat the dry coolers cannot.
    params : array
        Plant parameter vector of :func:`~pueflow.optimizers.plant.loop_params`.
    heat_max_kw : float
        Design heat [kW].
    """

    name: str
    heat_share: float
    supply_min_c: float
    supply_max_c: float
    nominal_c: float
    ramp_c_per_h: float
    chip_limit_c: float  # hard limit, enforced by safety
    chip_plan_c: float  # limit the LP and the rule plan against (hard limit minus a margin)
    rho_c_per_kw: float
    chiller: bool
    params: np.ndarray
    heat_max_kw: float


@dataclass(frozen=True)
class SiteModel:
    """Everything dispatch needs to know about one site, in kW / kWh / h / °C."""

    site_id: str
    timezone: str
    latitude: float
    longitude: float
    altitude_m: float
    it_capacity_kw: float
    grid_co2_kg_per_kwh: float
    step_s: float
    horizon_steps: int
    redispatch_steps: int
    import_limit_kw: float
    export_limit_kw: float
    aux_fraction: float
    aux_kw: float
    curtail_per_kwh: float
    battery: Battery | None
    jobs: tuple[Job, ...]
    loops: tuple[Loop, ...]
    pv_kwp: float
    wind_kw: float
    firm_it_kw: float
    spec: DispatchSpec
    dr_events: tuple[tuple[int, int, float], ...] = field(default=())

    @property
    def step_h(self) -> float:
        """Dispatch step [h]."""
        return self.step_s / 3600.0

    @property
    def step_ns(self) -> int:
        """Dispatch step [ns], rounded to a whole ns."""
        return int(round(self.step_s * 1e9))

    @property
    def max_price(self) -> float:
        """Scale of the tariff's prices for default penalties [currency/kWh].

        The highest price, but never below the largest magnitude of a negative one: with
        every price negative a penalty scaled by the highest price would reward what it
        is meant to punish (and leave the LP unbounded).
        """
        return price_scale(self.spec.tariff)


def price_scale(tariff: Any) -> float:
    """Return the highest price, or the largest negative magnitude if that is greater [currency/kWh].

    Default penalties (unmet work, SoC band, terminal target) are scaled by it, so they stay
    positive and dominate energy cost even when every price of a tariff is negative.
    """
    prices = [tariff.default_price_per_kwh, *(p.price_per_kwh for p in tariff.periods)]
    return max(max(prices), -min(prices), 0.0)


def _plant_value(plant: Any, *paths: str) -> float | None:
    """First numeric value found at one of the dotted ``paths`` of the plant description."""
    for path in paths:
        node = plant
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
            if node is None:
                break
        if isinstance(node, int | float) and not isinstance(node, bool):
            return float(node)
    return None


def apply_overrides(spec: DispatchSpec, overrides: dict[str, Any] | None) -> DispatchSpec:
    """Return a validated copy of ``spec`` with dotted-key overrides applied.

    ``{"battery.wear_cost_per_kwh": 0.1, "horizon": "12h", "jobs.0.ramp_kw_per_h": 5000}``.
    """
    if not overrides:
        return spec
    data = spec.model_dump()
    for key, value in overrides.items():
        node: Any = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.get(part)
            if node is None:
                msg = f"override {key!r}: no {part!r} in the dispatch settings"
                raise OptimizerError(msg)
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            if last not in node:
                msg = f"override {key!r}: unknown setting {last!r}; known: {sorted(node)}"
                raise OptimizerError(msg)
            node[last] = value
    try:
        return DispatchSpec.model_validate(data)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<dispatch>'}: {e['msg']}" for e in exc.errors())
        msg = f"overrides {overrides!r} make invalid dispatch settings: {errs}"
        raise OptimizerError(msg) from None


def _battery(spec: DispatchSpec, plant_desc: Any, default_penalty: float) -> Battery | None:
    b = spec.battery
    energy = b.energy_kwh
    if energy is None:
        energy = _plant_value(plant_desc, "battery.capacity_kwh", "battery.energy_kwh") or 0.0
    plant_kw = _plant_value(plant_desc, "battery.power_kw")
    ch = b.charge_kw if b.charge_kw is not None else (plant_kw if plant_kw is not None else energy / 2)
    dis = b.discharge_kw if b.discharge_kw is not None else (plant_kw if plant_kw is not None else energy / 2)
    if energy <= 0 or (ch <= 0 and dis <= 0):
        return None
    rte = _plant_value(plant_desc, "battery.round_trip_efficiency")
    one_way = float(np.sqrt(rte)) if rte else 0.95
    pen = b.terminal_penalty_per_kwh
    return Battery(
        energy_kwh=energy, charge_kw=ch, discharge_kw=dis,
        eta_charge=b.charge_efficiency or one_way, eta_discharge=b.discharge_efficiency or one_way,
        self_discharge_per_h=b.self_discharge_per_h,
        e_min_kwh=energy * b.soc_min_pct / 100, e_max_kwh=energy * b.soc_max_pct / 100,
        e_init_kwh=energy * b.initial_soc_pct / 100, e_terminal_kwh=energy * b.terminal_soc_pct / 100,
        terminal_penalty_per_kwh=pen if pen is not None else default_penalty, wear_per_kwh=b.wear_cost_per_kwh)


def _wind_capacity_kw(plant_desc: Any) -> float | None:
    """Turbine count x rated power; the rating is read from a type name like 'E-82/2300'."""
    count = _plant_value(plant_desc, "wind.count")
    kind = getattr(getattr(plant_desc, "wind", None), "turbine_type", None)
    if not count or not isinstance(kind, str):
        return None
    m = re.search(r"/(\d+(?:\.\d+)?)", kind)
    return count * float(m.group(1)) if m else None


def _loops(spec: DispatchSpec, it_capacity_kw: float) -> tuple[Loop, ...]:
    out = []
    for c in spec.cooling:
        qd = c.design_heat_kw or max(c.heat_share, 1e-3) * it_capacity_kw
        params = plant.loop_params(
            qd, c.design_delta_t_c, c.approach_c,
            c.fan_kw if c.fan_kw is not None else 0.012 * qd,
            c.pump_kw if c.pump_kw is not None else 0.010 * qd,
            c.chiller, c.chiller_carnot_fraction, c.chiller_lift_c)
        out.append(Loop(c.name, c.heat_share, c.supply_min_c, c.supply_max_c, c.nominal_supply_c,
                        c.ramp_c_per_h, c.chip_limit_c, c.chip_limit_c - c.chip_margin_c,
                        c.chip_rise_c / qd, c.chiller, params, qd))
    return tuple(out)


def _jobs(spec: DispatchSpec, loops: tuple[Loop, ...], max_price: float) -> tuple[Job, ...]:
    names = [lp.name for lp in loops]
    out = []
    for j in spec.jobs:
        pts = np.array(j.throughput, dtype=np.float64)
        dp, dr = np.diff(pts[:, 0]), np.diff(pts[:, 1])
        slope = dr / dp  # throughput fraction per power fraction
        alpha = slope / j.max_kw
        beta = pts[:-1, 1] - slope * pts[:-1, 0]
        share = np.array([lp.heat_share for lp in loops])
        if j.loop:
            share = np.array([1.0 if n == j.loop else 0.0 for n in names])
        pen = j.unmet_penalty_per_h if j.unmet_penalty_per_h is not None else 10.0 * max_price * j.max_kw
        out.append(Job(j.name, j.max_kw, j.idle_kw, clock_hours(j.window_start), clock_hours(j.window_end),
                       j.work_h, j.ramp_kw_per_h or np.inf, alpha, beta, dp * j.max_kw, pen, share))
    return tuple(out)


def site_model(site: Any, overrides: dict[str, Any] | None = None) -> SiteModel:
    """Resolve ``site`` (a :class:`pueflow.config.models.Site`) into a :class:`SiteModel`.

    Raises
    ------
    OptimizerError
        If the site has no ``[sites.dispatch]`` section or an override is unknown.
    """
    if site.dispatch is None:
        msg = f"site {site.id!r} has no [sites.dispatch] section; add one to dispatch it"
        raise OptimizerError(msg)
    spec = apply_overrides(site.dispatch, overrides)
    plant_desc = getattr(site, "plant", None)
    cap = float(site.it_capacity_kw)
    step_s = duration_s(spec.step)
    loops = _loops(spec, cap)
    tariff = spec.tariff
    max_price = price_scale(tariff)
    max_co2 = max(spec.carbon.intensity_kg_per_kwh or [site.grid_co2_kg_per_kwh])
    jobs = _jobs(spec, loops, max_price)
    fc = spec.forecast
    pv = fc.pv_kwp if fc.pv_kwp is not None else _plant_value(plant_desc, "pv.kwp") or 0.0
    wind = fc.wind_kw if fc.wind_kw is not None else _wind_capacity_kw(plant_desc) or 0.0
    jobs_max = sum(j.max_kw for j in jobs)
    firm = fc.firm_it_kw if fc.firm_it_kw is not None else max(0.6 * cap - jobs_max, 0.1 * cap)
    events = tuple((int(e.start.timestamp() * 1e9), int(e.end.timestamp() * 1e9), e.import_limit_kw)
                   for e in spec.grid.events)
    return SiteModel(
        site_id=site.id, timezone=site.timezone, latitude=site.latitude, longitude=site.longitude,
        altitude_m=getattr(site, "altitude_m", 0.0), it_capacity_kw=cap,
        grid_co2_kg_per_kwh=site.grid_co2_kg_per_kwh, step_s=step_s,
        horizon_steps=max(1, int(round(duration_s(spec.horizon) / step_s))),
        redispatch_steps=max(1, int(round(duration_s(spec.redispatch) / step_s))),
        import_limit_kw=spec.grid.import_limit_kw or 1.5 * cap,
        export_limit_kw=spec.grid.export_limit_kw, aux_fraction=spec.aux_fraction, aux_kw=spec.aux_kw,
        curtail_per_kwh=spec.curtailment_cost_per_kwh,
        battery=_battery(spec, plant_desc, max_price + spec.carbon.price_per_t * max_co2 / 1e3),
        jobs=jobs, loops=loops, pv_kwp=pv, wind_kw=wind, firm_it_kw=firm, spec=spec, dr_events=events)
