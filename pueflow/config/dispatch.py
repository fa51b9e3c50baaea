"""Dispatch settings, read from ``[sites.dispatch]``.

Everything has a default, so an empty ``[sites.dispatch]`` table turns dispatch on with a
flat tariff, the site's average grid intensity, no battery (unless the plant declares one)
and one liquid cooling loop. Powers are in kW, energies in kWh, prices in the tariff's
currency per kWh (or per kW for the demand charge), temperatures in °C, local clock times
as ``"HH:MM"`` in the site's time zone.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HHMM = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")
_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")


def clock_hours(text: str) -> float:
    """``"07:30"`` -> 7.5 [h]; ``"24:00"`` is the end of the day."""
    m = _HHMM.match(text.strip())
    if not m or (int(m.group(1)) == 24 and int(m.group(2)) != 0):
        msg = f"{text!r} is not a local clock time; write 'HH:MM' between '00:00' and '24:00'"
        raise ValueError(msg)
    return int(m.group(1)) + int(m.group(2)) / 60.0


def _check_clock(v: str) -> str:
    clock_hours(v)
    return v.strip()


def _check_duration(v: str) -> str:
    if not _DUR.match(str(v)):
        msg = f"{v!r} is not a duration; write e.g. '5m', '15m', '1h', '24h'"
        raise ValueError(msg)
    return str(v).strip()


def duration_s(text: str) -> float:
    """``"15m"`` -> 900.0 [s]."""
    m = _DUR.match(text)
    if not m:
        msg = f"{text!r} is not a duration; write e.g. '5m', '15m', '1h', '24h'"
        raise ValueError(msg)
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TouPeriod(_Spec):
    """One time-of-use period: a price that applies between two local clock times."""

    name: str = "flat"
    price_per_kwh: float = Field(1.0, description="energy price [currency/kWh]")
    start: str = Field("00:00", description="local start, inclusive; may be after end (wraps midnight)")
    end: str = Field("24:00", description="local end, exclusive")
    months: list[int] = Field(default_factory=list, description="1-12; empty = every month")
    weekdays: list[int] = Field(default_factory=list, description="0=Mon..6=Sun; empty = every day")

    _c = field_validator("start", "end")(_check_clock)

    @field_validator("months")
    @classmethod
    def _months(cls, v: list[int]) -> list[int]:
        if any(m < 1 or m > 12 for m in v):
            msg = "months are 1 (January) to 12 (December)"
            raise ValueError(msg)
        return v

    @field_validator("weekdays")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        if any(d < 0 or d > 6 for d in v):
            msg = "weekdays are 0 (Monday) to 6 (Sunday)"
            raise ValueError(msg)
        return v


class TariffSpec(_Spec):
    """Time-of-use energy prices, export price and a demand (billed-peak) charge."""

    currency: str = "MAD"
    periods: list[TouPeriod] = Field(default_factory=list, description="first match wins")
    default_price_per_kwh: float = Field(1.0, description="price when no period matches")
    export_price_per_kwh: float = 0.0
    demand_charge_per_kw: float = Field(0.0, ge=0, description="per kW of billed peak, per billing period")
    demand_periods: list[str] = Field(
        default_factory=list, description="period names the billed peak is measured in; empty = all hours")
    billing_period: Literal["month", "day"] = "month"


class CarbonSpec(_Spec):
    """Grid carbon intensity and an internal carbon price."""

    price_per_t: float = Field(0.0, ge=0, description="carbon price [currency/tCO2]")
    intensity_kg_per_kwh: list[float] = Field(
        default_factory=list,
        description="24 hourly local values [kgCO2/kWh]; empty = the site's grid_co2_kg_per_kwh")

    @field_validator("intensity_kg_per_kwh")
    @classmethod
    def _profile(cls, v: list[float]) -> list[float]:
        if v and (len(v) != 24 or min(v) < 0):
            msg = f"give 24 non-negative hourly values (local hours 0..23), not {len(v)}"
            raise ValueError(msg)
        return v


class DemandResponseEvent(_Spec):
    """A committed import reduction: import above ``import_limit_kw`` is penalised."""

    start: datetime
    end: datetime
    import_limit_kw: float = Field(ge=0)

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            msg = "give a time-zone-aware time, e.g. 2025-07-01T18:00:00Z"
            raise ValueError(msg)
        return v


class GridSpec(_Spec):
    """Grid connection limits [kW] and demand-response events.

    ``import_limit_kw`` unset means 1.5 x the site's IT capacity; ``export_limit_kw`` = 0
    forbids export. ``dr_penalty_per_kwh`` prices import above an event's limit.
    """

    import_limit_kw: float | None = Field(None, gt=0, description="default 1.5 x IT capacity")
    export_limit_kw: float = Field(0.0, ge=0)
    dr_penalty_per_kwh: float = Field(10.0, ge=0, description="cost of import above a DR limit")
    events: list[DemandResponseEvent] = Field(default_factory=list)


class BatterySpec(_Spec):
    """Battery control limits; unset sizes are taken from ``[sites.plant]`` (else no battery)."""

    energy_kwh: float | None = Field(None, ge=0)
    charge_kw: float | None = Field(None, ge=0)
    discharge_kw: float | None = Field(None, ge=0)
    charge_efficiency: float | None = Field(
        None, gt=0, le=1, description="default sqrt of the plant's round-trip efficiency, else 0.95")
    discharge_efficiency: float | None = Field(None, gt=0, le=1)
    self_discharge_per_h: float = Field(0.0, ge=0, lt=1)
    soc_min_pct: float = Field(10.0, ge=0, le=100)
    soc_max_pct: float = Field(90.0, ge=0, le=100)
    initial_soc_pct: float = Field(50.0, ge=0, le=100)
    terminal_soc_pct: float = Field(50.0, ge=0, le=100)
    terminal_penalty_per_kwh: float | None = Field(
        None, ge=0, description="per kWh short of the terminal target at the horizon's end; default the "
        "highest tariff price plus its carbon cost, so the target holds unless a price (a history's, a "
        "demand-response penalty) makes missing it pay")
    wear_cost_per_kwh: float = Field(0.05, ge=0, description="per kWh charged or discharged")

    @model_validator(mode="after")
    def _band(self) -> BatterySpec:
        if self.soc_min_pct > self.soc_max_pct:
            msg = f"soc_min_pct {self.soc_min_pct} > soc_max_pct {self.soc_max_pct}; swap them"
            raise ValueError(msg)
        return self


class JobSpec(_Spec):
    """A flexible training job that recurs every day in a local window with a deadline at its end."""

    name: str = "training"
    max_kw: float = Field(1000.0, gt=0)
    idle_kw: float = Field(0.0, ge=0, description="floor while the window is open (GPUs held)")
    window_start: str = "00:00"
    window_end: str = "24:00"
    work_h: float = Field(12.0, ge=0, description="work per window in full-power hours")
    ramp_kw_per_h: float | None = Field(None, gt=0, description="None = no ramp limit")
    throughput: list[tuple[float, float]] = Field(
        default_factory=lambda: [(0.0, 0.0), (0.5, 0.62), (0.75, 0.87), (1.0, 1.0)],
        description="(power fraction, throughput fraction) points of a concave curve")
    unmet_penalty_per_h: float | None = Field(
        None, ge=0, description="per full-power hour not done by the deadline; default 10x its energy at peak price")
    loop: str = Field("", description="cooling loop that removes its heat; '' = shared like firm IT")

    _c = field_validator("window_start", "window_end")(_check_clock)

    @field_validator("throughput")
    @classmethod
    def _curve(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if len(v) < 2 or v[0] != (0.0, 0.0) or v[-1][0] != 1.0:
            msg = "start the throughput curve at (0, 0), end it at power fraction 1.0, give at least two points"
            raise ValueError(msg)
        slopes = []
        for (p0, r0), (p1, r1) in zip(v, v[1:], strict=False):
            if p1 <= p0:
                msg = "power fractions must increase"
                raise ValueError(msg)
            slopes.append((r1 - r0) / (p1 - p0))
        if any(b > a + 1e-12 for a, b in zip(slopes, slopes[1:], strict=False)) or min(slopes) < 0:
            msg = "the throughput curve must be concave and non-decreasing (slopes must not rise)"
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _idle(self) -> JobSpec:
        if self.idle_kw > self.max_kw:
            msg = f"idle_kw {self.idle_kw} > max_kw {self.max_kw}"
            raise ValueError(msg)
        return self


class CoolingLoopSpec(_Spec):
    """A cooling loop: supply-temperature band, chip limit and a lumped plant.

    The plant is dry coolers, a trim chiller and pumps. Unset design figures scale with the
    loop's share of IT capacity. Temperatures are in [degC], differences in [K].
    """

    name: str = "liquid"
    kind: Literal["liquid", "immersion"] = "liquid"
    heat_share: float = Field(1.0, ge=0, le=1, description="share of firm IT heat removed by this loop")
    supply_min_c: float = 20.0
    supply_max_c: float = 45.0
    nominal_supply_c: float = Field(32.0, description="setpoint of the rule baseline and at start")
    ramp_c_per_h: float = Field(4.0, gt=0)
    chip_limit_c: float = 85.0
    chip_rise_c: float = Field(45.0, gt=0, description="chip minus supply temperature at design heat [K]")
    chip_margin_c: float = Field(2.0, ge=0, description="plans stay this far below the chip limit [K]")
    design_heat_kw: float | None = Field(None, gt=0)
    design_delta_t_c: float = Field(10.0, gt=0, description="return minus supply at design [K]")
    approach_c: float = Field(6.0, gt=0, description="dry-cooler approach at design, full fans [K]")
    fan_kw: float | None = Field(None, ge=0, description="dry-cooler fans at design [kW]; default 1.2 % of design heat")
    pump_kw: float | None = Field(None, ge=0, description="pumps at design flow [kW]; default 1 % of design heat")
    chiller: bool = True
    chiller_carnot_fraction: float = Field(0.5, gt=0, le=1)
    chiller_lift_c: float = Field(8.0, ge=0, description="condenser approach above ambient [K]")

    @model_validator(mode="after")
    def _band(self) -> CoolingLoopSpec:
        if not self.supply_min_c <= self.nominal_supply_c <= self.supply_max_c:
            msg = (f"nominal_supply_c {self.nominal_supply_c} is outside "
                   f"[{self.supply_min_c}, {self.supply_max_c}]; move it into the band")
            raise ValueError(msg)
        if self.chip_limit_c <= self.supply_min_c:
            msg = "chip_limit_c must be above supply_min_c"
            raise ValueError(msg)
        return self


class ForecastSpec(_Spec):
    """Default forecasters' settings and priors; ``path`` feeds external forecasts instead."""

    pv_kwp: float | None = Field(None, ge=0, description="default from [sites.plant], else 0")
    wind_kw: float | None = Field(None, ge=0, description="default from [sites.plant], else 0")
    firm_it_kw: float | None = Field(None, ge=0, description="prior firm IT load; default 60 % of capacity minus jobs")
    pv_performance_ratio: float = Field(0.8, gt=0, le=1.2)
    wind_capacity_factor: float = Field(0.35, ge=0, le=1)
    ambient_mean_c: float = 20.0
    ambient_amplitude_c: float = Field(5.0, ge=0)
    pv_tau_h: float = Field(3.0, gt=0, description="cloudiness persistence [h]")
    wind_tau_h: float = Field(6.0, gt=0)
    load_tau_h: float = Field(6.0, gt=0)
    ambient_tau_h: float = Field(6.0, gt=0)
    history_days: float = Field(7.0, gt=0, le=60)
    path: str = Field("", description="Parquet/CSV of external forecasts (time, pv_kw, wind_kw, it_kw, ambient_c, ...)")


class DispatchSpec(_Spec):
    """Tariffs, horizon, limits and penalties for a site's dispatch LP."""

    step: str = Field("15m", description="LP step")
    horizon: str = Field("24h", description="LP horizon")
    redispatch: str = Field("15m", description="re-solve every ... of event time (at least every step)")
    input_window: str = Field("15m", description="KPI window the dispatcher reads")
    time_limit_s: float = Field(2.0, gt=0, description="LP budget; past it the rule plan is published")
    solver: Literal["auto", "highs", "milp"] = "auto"
    aux_fraction: float = Field(0.02, ge=0, le=0.5, description="non-cooling overhead per kW of IT")
    aux_kw: float = Field(0.0, ge=0, description="constant non-cooling overhead [kW]")
    curtailment_cost_per_kwh: float = Field(0.0, ge=0)
    job_prorate: float = Field(1.0, ge=0, le=1, description="share of a job's pro-rated work required by a horizon that ends before its deadline")
    rule_cheap_band: float = Field(
        0.25, ge=0, le=1, description="rule: cheap = price within this share of the horizon's range above its minimum")
    rule_peak_band: float = Field(
        0.25, ge=0, le=1, description="rule: peak = price within this share of the range below its maximum")
    rule_grid_heavy_fraction: float = Field(0.8, ge=0, le=1)
    tariff: TariffSpec = Field(default_factory=TariffSpec)
    carbon: CarbonSpec = Field(default_factory=CarbonSpec)
    grid: GridSpec = Field(default_factory=GridSpec)
    battery: BatterySpec = Field(default_factory=BatterySpec)
    jobs: list[JobSpec] = Field(default_factory=list)
    cooling: list[CoolingLoopSpec] = Field(default_factory=lambda: [CoolingLoopSpec()])
    forecast: ForecastSpec = Field(default_factory=ForecastSpec)

    _d = field_validator("step", "horizon", "redispatch", "input_window")(_check_duration)

    @model_validator(mode="after")
    def _consistent(self) -> DispatchSpec:
        step, hor, red = duration_s(self.step), duration_s(self.horizon), duration_s(self.redispatch)
        if hor < step:
            msg = f"horizon {self.horizon} is shorter than step {self.step}"
            raise ValueError(msg)
        if red > step and red % step:
            msg = f"redispatch {self.redispatch} must be a multiple of step {self.step} (or shorter: then every step)"
            raise ValueError(msg)
        names = [c.name for c in self.cooling]
        if len(set(names)) != len(names):
            msg = f"cooling loop names must be unique: {names}"
            raise ValueError(msg)
        for j in self.jobs:
            if j.loop and j.loop not in names:
                msg = f"job {j.name!r} names loop {j.loop!r}; known loops: {names}"
                raise ValueError(msg)
        jn = [j.name for j in self.jobs]
        if len(set(jn)) != len(jn):
            msg = f"job names must be unique: {jn}"
            raise ValueError(msg)
        if sum(c.heat_share for c in self.cooling) > 1 + 1e-9:
            msg = "cooling heat_share values add up to more than 1"
            raise ValueError(msg)
        return self
