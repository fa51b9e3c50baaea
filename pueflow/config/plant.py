"""Physical description of a site's plant, read from ``[sites.plant]``.

Every field has a default so a site without a plant section still loads; counts left at
``None`` are sized from the site's ``it_capacity_kw`` by :func:`pueflow.sim.plant.resolve`.
Units are in the names (``_kw``, ``_kwh``, ``_c``, ``_k``, ``_m_s``, ``_pct``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RackSpec(_Spec):
    """Liquid-cooled GPU racks (e.g. GB200 NVL72: ~120-132 kW, ~85-90 % to liquid)."""

    count: int | None = Field(None, ge=0, description="racks; None = it_capacity_kw / rack_kw")
    rack_kw: float = Field(125.0, gt=0, description="nameplate IT power per rack [kW]")
    liquid_fraction: float = Field(0.85, ge=0, le=1, description="share of rack heat to the CDU loop")
    spread: float = Field(0.03, ge=0, le=0.2, description="static rack-to-rack power spread [-]")


class LoadSpec(_Spec):
    """GPU workload: synchronous training jobs over groups of racks, plus diurnal inference."""

    training_fraction: float = Field(0.8, ge=0, le=1, description="share of racks running training")
    job_racks_min: int = Field(4, ge=1)
    job_racks_max: int = Field(16, ge=1)
    job_hours_mean: float = Field(30.0, gt=0, description="mean training-job length [h]")
    idle_minutes_mean: float = Field(20.0, gt=0, description="mean gap between jobs [min]")
    startup_minutes: float = Field(6.0, gt=0, description="ramp from idle to full training [min]")
    train_level_min: float = Field(0.78, gt=0, le=1.05, description="training power / nameplate, low")
    train_level_max: float = Field(0.95, gt=0, le=1.05, description="training power / nameplate, high")
    ripple: float = Field(0.02, ge=0, le=0.2, description="step-to-step training power ripple [-]")
    checkpoint_interval_minutes: float = Field(45.0, gt=0)
    checkpoint_seconds: float = Field(120.0, gt=0, description="length of a checkpoint dip [s]")
    checkpoint_level: float = Field(0.45, ge=0, le=1, description="power / nameplate while checkpointing")
    idle_level: float = Field(0.18, ge=0, le=1, description="power / nameplate of an idle rack")
    failures_per_rack_day: float = Field(0.03, ge=0, description="job-killing faults per rack and day")
    restart_minutes_mean: float = Field(20.0, gt=0)
    inference_peak_level: float = Field(0.75, ge=0, le=1.05)
    inference_trough_level: float = Field(0.35, ge=0, le=1.05)
    inference_peak_hour_local: float = Field(20.0, ge=0, lt=24)
    inference_noise: float = Field(0.05, ge=0, le=0.5, description="inference level noise [-]")

    @model_validator(mode="after")
    def _order(self) -> LoadSpec:
        if self.job_racks_max < self.job_racks_min:
            msg = f"job_racks_max = {self.job_racks_max} < job_racks_min = {self.job_racks_min}; swap them"
            raise ValueError(msg)
        if self.train_level_max < self.train_level_min:
            msg = "train_level_max < train_level_min; swap them"
            raise ValueError(msg)
        return self


class CduSpec(_Spec):
    """Coolant distribution units: plate heat exchanger + VFD pumps, secondary loop to racks."""

    count: int | None = Field(None, ge=0, description="CDUs; None = liquid heat / rated_kw, rounded up")
    rated_kw: float = Field(1250.0, gt=0, description="design heat load per CDU [kW]")
    supply_setpoint_c: float = Field(32.0, description="secondary (TCS) supply temperature [degC]")
    delta_t_design_k: float = Field(10.0, gt=0, description="secondary return - supply at design flow [K]")
    approach_k: float = Field(2.0, ge=0, description="secondary supply - facility water supply [K]")
    pump_design_kw: float = Field(18.0, ge=0, description="pump power at design flow [kW]")
    pump_exponent: float = Field(2.6, ge=1, le=3, description="pump power ~ flow**exponent")
    min_flow_fraction: float = Field(0.3, ge=0, le=1, description="VFD minimum flow / design flow")
    fluid_cp_kj_per_kg_k: float = Field(3.95, gt=0, description="PG25 ~3.95, water 4.18")
    fluid_density_kg_m3: float = Field(1020.0, gt=0)


class DryCoolerSpec(_Spec):
    """Dry (optionally adiabatic) coolers rejecting the facility-water heat to ambient air."""

    count: int | None = Field(None, ge=0, description="None = sized from IT when no towers are set")
    rated_kw: float = Field(1000.0, gt=0, description="heat rejected per unit at full fan [kW]")
    approach_k: float = Field(6.0, ge=0, description="leaving water - air inlet at full fan [K]")
    fan_kw: float = Field(22.0, ge=0, description="fan power per unit at full speed [kW]")
    min_speed: float = Field(0.15, ge=0, le=1)
    adiabatic_above_c: float | None = Field(None, description="spray pre-cooling above this ambient [degC]")
    adiabatic_efficiency: float = Field(0.7, ge=0, le=1, description="share of the wet-bulb depression won")


class TowerSpec(_Spec):
    """Open cooling towers (evaporative): leaving water follows the wet bulb."""

    count: int = Field(0, ge=0)
    rated_kw: float = Field(5000.0, gt=0, description="heat rejected per tower at full fan [kW]")
    approach_k: float = Field(4.0, ge=0, description="leaving water - wet bulb at full fan [K]")
    fan_kw: float = Field(45.0, ge=0, description="fan power per tower at full speed [kW]")
    min_speed: float = Field(0.2, ge=0, le=1)


class ChillerSpec(_Spec):
    """Trim chillers: run when the heat sink cannot reach the facility-water setpoint."""

    count: int | None = Field(None, ge=0, description="None = enough for 60 % of the IT heat")
    capacity_kw: float = Field(2000.0, gt=0, description="cooling capacity per chiller [kW]")
    condenser_approach_k: float = Field(12.0, ge=0, description="condensing temp - sink temp [K]")
    evaporator_approach_k: float = Field(2.0, ge=0, description="facility supply - evaporating temp [K]")
    lift_k: list[float] = Field(default_factory=lambda: [5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0])
    cop: list[float] = Field(default_factory=lambda: [11.0, 8.0, 6.2, 5.0, 4.2, 3.6, 2.8])
    min_part_load: float = Field(0.15, gt=0, le=1, description="part load below which COP degrades")

    @model_validator(mode="after")
    def _curve(self) -> ChillerSpec:
        if len(self.lift_k) != len(self.cop) or not self.lift_k:
            msg = f"lift_k ({len(self.lift_k)}) and cop ({len(self.cop)}) need the same, non-zero length"
            raise ValueError(msg)
        if any(b <= a for a, b in zip(self.lift_k, self.lift_k[1:], strict=False)):
            msg = "lift_k must be strictly increasing, e.g. [5, 10, 20, 30]"
            raise ValueError(msg)
        if min(self.cop) <= 0:
            msg = "every cop must be > 0"
            raise ValueError(msg)
        return self


class ImmersionSpec(_Spec):
    """Single-phase immersion tanks (their IT is metered on ``pdu-imm-*``)."""

    count: int = Field(0, ge=0, description="tanks")
    tank_kw: float = Field(100.0, gt=0, description="IT nameplate per tank [kW]")
    pump_kw_per_kw_it: float = Field(0.012, ge=0, description="tank pump + CDU power per IT kW")
    base_kw: float = Field(0.8, ge=0, description="controls, filtration per tank [kW]")


class CrahSpec(_Spec):
    """Residual air cooling (CRAH / fan walls) for the non-liquid share of the heat."""

    count: int | None = Field(None, ge=0, description="None = air heat / rated_kw, rounded up")
    rated_kw: float = Field(150.0, gt=0, description="air heat per unit at full fan [kW]")
    fan_kw: float = Field(7.5, ge=0, description="fan power per unit at full speed [kW]")
    min_speed: float = Field(0.3, ge=0, le=1)


class ElectricalSpec(_Spec):
    """UPS modules and transformers; their losses are reported on ``ups-*/loss_kw``."""

    incomers: int = Field(2, ge=1, description="utility incomers (facility registers)")
    ups_count: int | None = Field(None, ge=0, description="None = IT load / ups_rated_kw, rounded up")
    ups_rated_kw: float = Field(1250.0, gt=0)
    ups_load_fraction: list[float] = Field(default_factory=lambda: [0.1, 0.25, 0.5, 0.75, 1.0])
    ups_efficiency: list[float] = Field(default_factory=lambda: [0.90, 0.95, 0.97, 0.975, 0.972])
    cdu_on_ups: bool = Field(True, description="CDU pumps ride through on UPS")
    transformer_rated_kva: float | None = Field(None, gt=0, description="None = 1.3 x peak facility")
    transformer_no_load_fraction: float = Field(0.001, ge=0, description="iron loss / rating")
    transformer_load_loss_fraction: float = Field(0.008, ge=0, description="copper loss at rating / rating")

    @model_validator(mode="after")
    def _curve(self) -> ElectricalSpec:
        if len(self.ups_load_fraction) != len(self.ups_efficiency) or not self.ups_efficiency:
            msg = "ups_load_fraction and ups_efficiency need the same, non-zero length"
            raise ValueError(msg)
        if not all(0 < e <= 1 for e in self.ups_efficiency):
            msg = "ups_efficiency values are fractions in (0, 1], e.g. 0.97"
            raise ValueError(msg)
        return self


class AuxSpec(_Spec):
    """Everything else on the facility meter: lighting, security, offices, controls."""

    count: int = Field(2, ge=0, description="aux meters")
    base_kw: float | None = Field(None, ge=0, description="None = 0.4 % of IT capacity")
    office_kw: float | None = Field(None, ge=0, description="weekday 08-18 local; None = 0.2 % of IT")


class PvSpec(_Spec):
    """On-site PV: a CEC module and inverter from pvlib's bundled SAM libraries."""

    kwp: float = Field(0.0, ge=0, description="DC nameplate [kWp]")
    module: str = "Canadian_Solar_Inc__CS3W_400P"
    inverter: str = "INGETEAM_POWER_TECHNOLOGY_S_A___Ingecon_Sun_1170TL_U_B450_Outdoor__450V_"
    inverters: int | None = Field(None, ge=1, description="None = kwp / (dc_ac_ratio x Paco), rounded up")
    dc_ac_ratio: float = Field(1.25, gt=0)
    tilt_deg: float | None = Field(None, ge=0, le=90, description="None = 0.9 x |latitude|")
    azimuth_deg: float | None = Field(None, ge=0, lt=360, description="None = equator-facing")
    dc_loss_fraction: float = Field(0.08, ge=0, lt=1, description="soiling, wiring, mismatch")


class WindSpec(_Spec):
    """Wind turbines with a power curve from windpowerlib's bundled turbine library."""

    count: int = Field(0, ge=0)
    turbine_type: str = "E-82/2300"
    hub_height_m: float = Field(98.0, gt=0)
    hellman_exponent: float = Field(0.14, ge=0, le=0.6, description="shear from 10 m to hub")
    turbulence: float = Field(0.06, ge=0, le=0.5, description="per-turbine speed fluctuation [-]")


class BatterySpec(_Spec):
    """Battery storage run by a simple rule: soak surplus renewables, shave the evening peak."""

    capacity_kwh: float = Field(0.0, ge=0)
    power_kw: float = Field(0.0, ge=0)
    round_trip_efficiency: float = Field(0.9, gt=0, le=1)
    soc_min: float = Field(0.1, ge=0, le=1)
    soc_max: float = Field(0.95, ge=0, le=1)
    soc_initial: float = Field(0.5, ge=0, le=1)
    charge_hours_local: tuple[float, float] = Field((1.0, 6.0), description="off-peak grid charging")
    discharge_hours_local: tuple[float, float] = Field((18.0, 23.0), description="peak shaving")
    grid_charge_fraction: float = Field(0.5, ge=0, le=1, description="share of power_kw when grid charging")

    @model_validator(mode="after")
    def _soc(self) -> BatterySpec:
        if not self.soc_min <= self.soc_initial <= self.soc_max:
            msg = "need soc_min <= soc_initial <= soc_max"
            raise ValueError(msg)
        return self


class WaterSpec(_Spec):
    """Site water use (``water-*/volume_l``): towers always, dry coolers in adiabatic hours."""

    l_per_kwh_rejected: float = Field(1.8, ge=0, description="litres per kWh of heat rejected by evaporation")


class MeterFaultSpec(_Spec):
    """Telemetry faults injected when ``faults=True``; rates are per series and day."""

    gaps_per_series_day: float = Field(0.02, ge=0)
    gap_minutes_min: float = Field(2.0, gt=0)
    gap_minutes_max: float = Field(20.0, gt=0)
    jitter_per_register_day: float = Field(0.5, ge=0, description="small register decreases")
    resets_per_register_day: float = Field(0.02, ge=0, description="register back to zero")
    spikes_per_series_day: float = Field(0.02, ge=0, description="power readings far above max_kw")
    duplicates_per_series_day: float = Field(0.1, ge=0)
    late_per_series_day: float = Field(0.05, ge=0, description="arrive after the grace period")
    out_of_order_per_series_day: float = Field(0.1, ge=0, description="arrive late but within grace")
    nan_per_series_day: float = Field(0.02, ge=0)
    rollover_register_fraction: float = Field(0.1, ge=0, le=1,
                                              description="registers started near their max so they wrap")
    register_max_kwh: float | None = Field(None, gt=0,
                                           description="None = each meter rule's register_max (keep equal)")

    @model_validator(mode="after")
    def _gap(self) -> MeterFaultSpec:
        if self.gap_minutes_max < self.gap_minutes_min:
            msg = "gap_minutes_max < gap_minutes_min; swap them"
            raise ValueError(msg)
        return self


class ClimateSpec(_Spec):
    """Site climate: seasonal and diurnal temperature, hot spells, humidity, wind, clouds."""

    summer_high_c: float = Field(29.0, description="mean daily max of the warmest month [degC]")
    winter_low_c: float = Field(8.0, description="mean daily min of the coldest month [degC]")
    diurnal_range_k: float = Field(9.0, ge=0, description="mean daily max - min [K]")
    warmest_day_of_year: int | None = Field(None, ge=1, le=366, description="None = 215 N, 30 S")
    synoptic_sigma_k: float = Field(1.8, ge=0, description="multi-day weather anomaly [K]")
    hot_spell_probability: float = Field(0.0, ge=0, le=1, description="per warm-season day")
    hot_spell_peak_c: float = Field(42.0, description="afternoon max during a spell [degC]")
    hot_spell_days_min: int = Field(2, ge=1)
    hot_spell_days_max: int = Field(3, ge=1)
    rh_mean_pct: float = Field(65.0, ge=1, le=100)
    rh_diurnal_amplitude_pct: float = Field(15.0, ge=0, le=50)
    wind_weibull_k: float = Field(2.0, gt=0, description="Weibull shape at 10 m")
    wind_weibull_c_m_s: float = Field(6.5, gt=0, description="Weibull scale at 10 m [m/s]")
    wind_diurnal_amplitude: float = Field(0.15, ge=0, lt=1, description="relative diurnal swing")
    wind_peak_hour_local: float = Field(15.0, ge=0, lt=24, description="solar time of max wind")
    wind_correlation_hours: float = Field(8.0, gt=0)
    cloudy_day_probability: float = Field(0.2, ge=0, le=1, description="broken-cloud days")
    overcast_day_probability: float = Field(0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> ClimateSpec:
        if self.hot_spell_days_max < self.hot_spell_days_min:
            msg = "hot_spell_days_max < hot_spell_days_min; swap them"
            raise ValueError(msg)
        if self.cloudy_day_probability + self.overcast_day_probability > 1:
            msg = "cloudy_day_probability + overcast_day_probability must be <= 1"
            raise ValueError(msg)
        return self


class PlantSpec(_Spec):
    """What is physically installed at a site: racks, cooling plant, PV, wind, battery."""

    racks: RackSpec = Field(default_factory=RackSpec)
    load: LoadSpec = Field(default_factory=LoadSpec)
    cdu: CduSpec = Field(default_factory=CduSpec)
    facility_delta_t_k: float = Field(8.0, gt=0, description="facility-water return - supply [K]")
    dry_cooler: DryCoolerSpec = Field(default_factory=DryCoolerSpec)
    tower: TowerSpec = Field(default_factory=TowerSpec)
    chiller: ChillerSpec = Field(default_factory=ChillerSpec)
    immersion: ImmersionSpec = Field(default_factory=ImmersionSpec)
    crah: CrahSpec = Field(default_factory=CrahSpec)
    electrical: ElectricalSpec = Field(default_factory=ElectricalSpec)
    aux: AuxSpec = Field(default_factory=AuxSpec)
    pv: PvSpec = Field(default_factory=PvSpec)
    wind: WindSpec = Field(default_factory=WindSpec)
    battery: BatterySpec = Field(default_factory=BatterySpec)
    water: WaterSpec = Field(default_factory=WaterSpec)
    faults: MeterFaultSpec = Field(default_factory=MeterFaultSpec)
    climate: ClimateSpec = Field(default_factory=ClimateSpec)
