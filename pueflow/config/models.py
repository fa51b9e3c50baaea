"""Configuration: pydantic models loaded from TOML. The only place config is read.

``load_config(path)`` returns a validated :class:`Config` or raises
:class:`~pueflow.exceptions.ConfigError` listing *every* problem as
(key, bad value, how to fix it).
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import zoneinfo
from datetime import date
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from pueflow.config.base import Model, duration_str
from pueflow.config.dispatch import DispatchSpec
from pueflow.config.plant import PlantSpec
from pueflow.config.routing_models import RoutingConfig
from pueflow.config.time_units import unit_ns
from pueflow.config.tune import TuneSpec
from pueflow.config.zones import base_bucket_ns, window_zone_problem
from pueflow.roles import ALL_ROLES
from pueflow.units import parse_duration_ns


class MeterRule(Model):
    """Map readings whose device and point match the globs to a role and a kind.

    Rules are tried in order; the first match wins.
    """

    device: str = "*"
    point: str = "*"
    kind: Literal["register", "power", "sensor"]
    role: str
    register_max: float = Field(1e12, gt=0, description="register rollover value [kWh]")
    jitter_kwh: float = Field(0.0, ge=0, description="decrease tolerated as meter jitter [kWh]")
    max_gap: str = Field("", description="longest interval filled; default 60s (power), 15m (register)")
    max_kw: float | None = Field(None, gt=0, description="readings above this are spikes [kW]")
    scale: float = Field(1.0, gt=0, description="multiply readings by this (e.g. 0.001 for W->kW)")

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        if v not in ALL_ROLES:
            close = difflib.get_close_matches(v.lower(), ALL_ROLES, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            msg = f"unknown role; {hint}choose one of {', '.join(ALL_ROLES)}"
            raise ValueError(msg)
        return v

    @field_validator("max_gap")
    @classmethod
    def _gap(cls, v: str) -> str:
        return duration_str(v) if v else v

    def max_gap_ns(self) -> int:
        """Return the longest power-sample interval still integrated [ns] (kind default if unset)."""
        if self.max_gap:
            return parse_duration_ns(self.max_gap)
        return parse_duration_ns("15m" if self.kind == "register" else "60s")

    def matches(self, device: str, point: str) -> bool:
        """Tell whether this rule's device and point globs match a reading's names."""
        return fnmatch.fnmatchcase(device, self.device) and fnmatch.fnmatchcase(point, self.point)


class PpaContract(Model):
    """An off-site wind farm contracted to the site (a power-purchase agreement).

    Its delivery is metered at the farm and reported as series ``ppa-<name>``/``power_kw``
    (role ``ppa``): counted in REF and ``cfe_hourly``, never in the site's power balance or
    dispatch. The simulator generates the feed from the site's wind, ``lag_hours`` later
    and scaled by ``wind_speed_factor``, through ``turbine_type`` power curves.
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    capacity_kw: float = Field(gt=0, description="contracted farm capacity [kW]")
    turbine_type: str = "E-82/2300"
    hub_height_m: float = Field(98.0, gt=0)
    wind_speed_factor: float = Field(1.0, gt=0, le=3.0, description="farm 10 m wind / site's [-]")
    lag_hours: float = Field(3.0, ge=0, le=48, description="the farm sees the site's weather later [h]")


class GuaranteeOfOrigin(Model):
    """Guarantees of origin cancelled for the site's supply: ``kwh`` over ``start`` .. ``end``.

    ``end`` is exclusive (a calendar year: start = 2026-01-01, end = 2027-01-01). Counted as
    contracted renewable energy in annual REF (``report --eed``), pro rata by days for a
    period that straddles the year; not in ``cfe_hourly`` (a certificate has no hour). List
    only certificates that do not already back a metered ``ppa`` feed (else counted twice).
    """

    start: date
    end: date
    kwh: float = Field(ge=0, description="energy the certificates cover [kWh]")
    technology: str = ""

    @model_validator(mode="after")
    def _period(self) -> GuaranteeOfOrigin:
        if self.end <= self.start:
            msg = (f"end {self.end} is not after start {self.start}; the period is "
                   f"[start, end), e.g. start = 2026-01-01, end = 2027-01-01")
            raise ValueError(msg)
        return self

    def kwh_within(self, start: date, end: date) -> float:
        """Return the certificates' energy pro rata to the days of ``[start, end)`` [kWh]."""
        lo, hi = max(start, self.start), min(end, self.end)
        if hi <= lo:
            return 0.0
        return self.kwh * (hi - lo).days / (self.end - self.start).days


class Site(Model):
    """One site (``[[sites]]``): jurisdiction, zone, capacity, PUE category and its meter map."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    jurisdiction: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country code")
    timezone: str = "UTC"
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    altitude_m: float = 0.0
    it_capacity_kw: float = Field(gt=0)
    pue_category: Literal[1, 2, 3] = 2
    grid_co2_kg_per_kwh: float = Field(0.0, ge=0, le=2.0)
    meters: list[MeterRule] = Field(default_factory=list)
    meter_profile: str | None = Field(None, description="name in [meter_profiles], appended to meters")
    plant: PlantSpec = Field(default_factory=PlantSpec)
    dispatch: DispatchSpec | None = None
    ppa: list[PpaContract] = Field(default_factory=list)
    guarantees_of_origin: list[GuaranteeOfOrigin] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            msg = "unknown IANA time zone; write e.g. 'Africa/Casablanca', 'Europe/Madrid', 'UTC'"
            raise ValueError(msg) from exc
        return v

    def rule_for(self, device: str, point: str) -> MeterRule | None:
        """First meter rule matching ``device``/``point``, or None (an unknown series)."""
        for rule in self.meters:
            if rule.matches(device, point):
                return rule
        return None


class PipelineConfig(Model):
    """Windows, grace, lateness and checkpoint settings of the core (``[pipeline]``)."""

    windows: list[str] = Field(default_factory=lambda: ["1m", "15m", "1h", "1d"])
    grace: str = "30s"
    max_future: str = "1d"
    idle_timeout: str = "60s"
    checkpoint_interval: str = "10s"
    checkpoint_records: int = Field(500_000, gt=0)

    @field_validator("grace", "max_future", "idle_timeout", "checkpoint_interval")
    @classmethod
    def _d(cls, v: str) -> str:
        return duration_str(v)

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: list[str]) -> list[str]:
        if not v:
            msg = "give at least one window, e.g. ['1m', '15m', '1h', '1d']"
            raise ValueError(msg)
        lens = [parse_duration_ns(w) for w in v]
        base = min(lens)
        bad = [w for w, n in zip(v, lens, strict=True) if n % base]
        if bad:
            msg = f"windows {bad} are not multiples of the smallest window; use e.g. 1m, 15m, 1h, 1d"
            raise ValueError(msg)
        return [w.strip() for w in v]

    def window_ns(self) -> dict[str, int]:
        """Return each configured window's length [ns]."""
        return {w: parse_duration_ns(w) for w in self.windows}

    def base_ns(self) -> int:
        """Smallest window [ns]; the kernel's bucket may be finer, see ``Config.base_ns``."""
        return min(self.window_ns().values())


#: Row kinds a sink can take.
SinkMeasurement = Literal["kpi", "quality", "setpoint", "fleet"]


def _all_measurements() -> list[SinkMeasurement]:
    return ["kpi", "quality", "setpoint", "fleet"]


class Sink(Model):
    """One output (``[[sinks]]``): Parquet store, InfluxDB v2 or a Kafka topic, in one jurisdiction."""

    name: str = Field(min_length=1)
    type: Literal["parquet", "influx", "kafka"]
    jurisdiction: str = Field(pattern=r"^([A-Z]{2}|GLOBAL)$")
    path: str = "pueflow-out"
    url: str = ""
    org: str = ""
    bucket: str = ""
    token_env: str = "PUEFLOW_INFLUX_TOKEN"
    topic: str = ""
    measurements: list[SinkMeasurement] = Field(default_factory=_all_measurements)
    sites: list[str] = Field(default_factory=list, description="empty = every site in its jurisdiction")
    min_window: str = Field("", description="coarsest-only sinks: drop kpi rows of shorter windows")
    batch_rows: int = Field(5000, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(8, ge=0)

    @field_validator("min_window")
    @classmethod
    def _mw(cls, v: str) -> str:
        return duration_str(v) if v else v

    def token(self) -> SecretStr:
        """Return the InfluxDB token from the environment variable ``token_env`` names."""
        return SecretStr(os.environ.get(self.token_env, ""))


class KafkaConfig(Model):
    """Consume mode's broker, topics, group, wire format, security and stage-2 keys (``[kafka]``)."""

    bootstrap_servers: list[str] = Field(default_factory=lambda: ["127.0.0.1:9092"])
    topics: list[str] = Field(default_factory=lambda: ["telemetry"])
    group_id: str = "pueflow"
    format: Literal["json", "line"] = "json"
    timestamp_unit: str = "s"
    dlq_topic: str = "telemetry.dlq"
    setpoint_topic: str = "pueflow.setpoints"
    state_topic: str = "pueflow.state"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username_env: str = "PUEFLOW_KAFKA_USERNAME"
    sasl_password_env: str = "PUEFLOW_KAFKA_PASSWORD"
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    max_poll_records: int = Field(5000, gt=0)
    #: consume parses v2 record batches in numba (compressed ones once decompressed), a block per batch,
    #: instead of kafka-python's record-by-record Python; false: kafka-python's parser only
    fast_batches: bool = True
    #: consume publishes every closed site window's energy totals here (keyed by site) for
    #: ``pueflow aggregate``; None: consume writes fleet rows itself when it owns every partition
    kpi_topic: str | None = None
    aggregate_group_id: str = "pueflow.aggregate"
    #: where the KPI topic and its aggregator live; sites of other jurisdictions may publish
    #: to it only windows the routing rules let cross (check-config refuses otherwise)
    kpi_topic_jurisdiction: str | None = None
    #: event time past a fleet window's end after which it closes with the sites that reported
    kpi_deadline: str = "5m"
    #: how long after its window's end a site's row still restates a closed fleet window
    kpi_allowed_lateness: str = "1h"

    @field_validator("timestamp_unit")
    @classmethod
    def _unit(cls, v: str) -> str:
        unit_ns(v)  # the decoders' own check: its error names the value and the forms
        return v.strip()



class Config(Model):
    """A whole pueflow configuration: pipeline, sites, sinks, Kafka, routing and tuning."""

    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    sites: list[Site] = Field(min_length=1)
    sinks: list[Sink] = Field(default_factory=list)
    meter_profiles: dict[str, list[MeterRule]] = Field(default_factory=dict)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    tune: TuneSpec | None = None
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    source: str = Field("", exclude=True)

    @model_validator(mode="after")
    def _apply_profiles(self) -> Config:
        for i, site in enumerate(self.sites):
            if site.meter_profile is None:
                continue
            if site.meter_profile not in self.meter_profiles:
                known = sorted(self.meter_profiles)
                msg = (f"sites[{i}].meter_profile = {site.meter_profile!r} is not defined; "
                       f"add [[meter_profiles.{site.meter_profile}]] or use one of {known}")
                raise ValueError(msg)
            site.meters = [*site.meters, *self.meter_profiles[site.meter_profile]]
            site.meter_profile = None
        return self

    @model_validator(mode="after")
    def _windows_align(self) -> Config:
        # a '1d' window starts at each site's local midnight: refuse only zones whose
        # offsets would need buckets finer than min(smallest window, 1m)
        problems = [p for s in self.sites
                    if (p := window_zone_problem(self.pipeline.windows, s.id, s.timezone))]
        if problems:
            msg = "pipeline.windows: " + "; ".join(problems)
            raise ValueError(msg)
        return self

    def base_ns(self) -> int:
        """Return the base bucket [ns] of the window kernel.

        It divides every window and, with '1d', every UTC offset of every site's zone, so each
        local midnight starts a bucket.
        """
        return base_bucket_ns(self.pipeline.windows, [s.timezone for s in self.sites])

    def site(self, site_id: str) -> Site:
        """Return the site ``site_id``; KeyError naming the known ids if there is none."""
        for s in self.sites:
            if s.id == site_id:
                return s
        msg = f"no site {site_id!r} in {self.source or 'config'}; known: {[s.id for s in self.sites]}"
        raise KeyError(msg)


