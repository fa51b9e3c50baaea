"""Configuration: pydantic models loaded from TOML. The only place config is read.

``load_config(path)`` returns a validated :class:`Config` or raises
:class:`~pueflow.exceptions.ConfigError` listing *every* problem as
(key, bad value, how to fix it).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import tomllib
import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from pueflow.exceptions import ConfigError
from pueflow.optimizers.spec import DispatchSpec
from pueflow.optimizers.tune_check import tune_problems
from pueflow.optimizers.tune_spec import TuneSpec
from pueflow.sim.spec import PlantSpec

# --------------------------------------------------------------------------- durations

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)\s*$")
_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
            "h": 3600 * 10**9, "d": 86400 * 10**9}


def parse_duration_ns(text: str) -> int:
    """Parse ``"30s"``, ``"15m"``, ``"1h"``, ``"1d"``, ``"500ms"`` into integer nanoseconds.

    Raises
    ------
    ValueError
        With the accepted forms, if ``text`` is not a duration.
    """
    m = _DURATION.match(str(text))
    if not m:
        msg = f"{text!r} is not a duration; write a number and a unit, e.g. '30s', '15m', '1h', '1d'"
        raise ValueError(msg)
    return int(round(float(m.group(1)) * _UNIT_NS[m.group(2)]))


def _duration(v: Any) -> str:
    parse_duration_ns(v)
    return str(v).strip()


# --------------------------------------------------------------------------- roles

COOLING_SUBSYSTEMS = ("chiller", "dry_cooler", "cdu_pump", "immersion", "crah", "tower")
#: Roles whose readings are energy (registers in kWh or power in kW), summed per window.
ENERGY_ROLES = (
    ("facility", "it")
    + tuple(f"cooling.{s}" for s in COOLING_SUBSYSTEMS)
    + ("electrical_losses", "other", "pv", "wind", "grid_import", "grid_export", "battery",
       "heat_reuse_kwh")
)
#: Roles integrated like energy but in litres (a cumulative water meter).
VOLUME_ROLES = ("water_l",)
#: Instantaneous sensors, averaged per window (time-weighted would need a kind of its own).
SENSOR_ROLES = ("ambient_temp_c", "supply_temp_c", "return_temp_c", "flow_lpm", "battery_soc")
ALL_ROLES = ENERGY_ROLES + VOLUME_ROLES + SENSOR_ROLES
#: Roles whose power may legitimately be negative (battery discharge).
SIGNED_ROLES = ("battery",)
ROLE_INDEX = {r: i for i, r in enumerate(ALL_ROLES)}

# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class MeterRule(_Model):
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
        return _duration(v) if v else v

    def max_gap_ns(self) -> int:
        if self.max_gap:
            return parse_duration_ns(self.max_gap)
        return parse_duration_ns("15m" if self.kind == "register" else "60s")

    def matches(self, device: str, point: str) -> bool:
        return fnmatch.fnmatchcase(device, self.device) and fnmatch.fnmatchcase(point, self.point)


class Site(_Model):
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


class PipelineConfig(_Model):
    windows: list[str] = Field(default_factory=lambda: ["1m", "15m", "1h", "1d"])
    grace: str = "30s"
    max_future: str = "1d"
    idle_timeout: str = "60s"
    checkpoint_interval: str = "10s"
    checkpoint_records: int = Field(500_000, gt=0)

    @field_validator("grace", "max_future", "idle_timeout", "checkpoint_interval")
    @classmethod
    def _d(cls, v: str) -> str:
        return _duration(v)

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
        if "1d" in v and (15 * 60 * 10**9) % base:
            msg = "with a '1d' (local-midnight) window the smallest window must divide 15m"
            raise ValueError(msg)
        return [w.strip() for w in v]

    def window_ns(self) -> dict[str, int]:
        return {w: parse_duration_ns(w) for w in self.windows}

    def base_ns(self) -> int:
        return min(self.window_ns().values())


class Sink(_Model):
    name: str = Field(min_length=1)
    type: Literal["parquet", "influx", "kafka"]
    jurisdiction: str = Field(pattern=r"^([A-Z]{2}|GLOBAL)$")
    path: str = "pueflow-out"
    url: str = ""
    org: str = ""
    bucket: str = ""
    token_env: str = "PUEFLOW_INFLUX_TOKEN"
    topic: str = ""
    measurements: list[Literal["kpi", "quality", "setpoint", "fleet"]] = Field(
        default_factory=lambda: ["kpi", "quality", "setpoint", "fleet"])
    sites: list[str] = Field(default_factory=list, description="empty = every site in its jurisdiction")
    min_window: str = Field("", description="coarsest-only sinks: drop kpi rows of shorter windows")
    batch_rows: int = Field(5000, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(8, ge=0)

    @field_validator("min_window")
    @classmethod
    def _mw(cls, v: str) -> str:
        return _duration(v) if v else v

    def token(self) -> SecretStr:
        import os

        return SecretStr(os.environ.get(self.token_env, ""))


class KafkaConfig(_Model):
    bootstrap_servers: list[str] = Field(default_factory=lambda: ["127.0.0.1:9092"])
    topics: list[str] = Field(default_factory=lambda: ["telemetry"])
    group_id: str = "pueflow"
    format: Literal["json", "line"] = "json"
    timestamp_unit: Literal["s", "ms", "us", "ns"] = "s"
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


#: The most that may ever leave a jurisdiction: quality details, setpoints and raw telemetry
#: never do.
CROSS_BORDER_MEASUREMENTS = ("kpi", "fleet")


def _cross_border_measurements(v: list[str]) -> list[str]:
    bad = [m for m in v if m not in CROSS_BORDER_MEASUREMENTS]
    if bad:
        msg = (f"{bad} may never leave a jurisdiction (quality details, setpoints and raw "
               f"telemetry stay home); choose from {list(CROSS_BORDER_MEASUREMENTS)}")
        raise ValueError(msg)
    return v


class RoutingAllow(_Model):
    """Per-destination allow-list: what one sink may receive from other jurisdictions.

    Once a sink has an allow-list, only rows covered by one of its entries may reach it
    across a border. Entries only narrow the default rule, never widen it.
    """

    sink: str = Field(min_length=1, description="name of the destination sink")
    jurisdictions: list[str] = Field(default_factory=list, description="source countries; empty = any")
    sites: list[str] = Field(default_factory=list,
                             description="source sites; empty = any (an entry naming sites covers "
                                         "only their rows, not fleet aggregates)")
    measurements: list[str] = Field(default_factory=lambda: list(CROSS_BORDER_MEASUREMENTS))
    min_window: str = Field("", description="finest window this sink may receive; default: the routing default")

    @field_validator("measurements")
    @classmethod
    def _m(cls, v: list[str]) -> list[str]:
        return _cross_border_measurements(v)

    @field_validator("jurisdictions")
    @classmethod
    def _j(cls, v: list[str]) -> list[str]:
        bad = [j for j in v if not re.fullmatch(r"[A-Z]{2}", j)]
        if bad:
            msg = f"{bad} are not ISO 3166-1 alpha-2 codes; write e.g. 'MA', 'ES', 'US'"
            raise ValueError(msg)
        return v

    @field_validator("min_window")
    @classmethod
    def _mw(cls, v: str) -> str:
        return _duration(v) if v else v


class RoutingConfig(_Model):
    """Which measurements, at which granularity, may leave a jurisdiction (``[routing]``).

    Default: ``kpi`` rows of windows >= 1 h carrying no device-level tags, and fleet
    aggregates of windows >= 1 h (a jurisdiction's aggregate over one site *is* that site's
    KPI row). Quality details, setpoints and raw telemetry never cross a border.
    """

    cross_border_measurements: list[str] = Field(
        default_factory=lambda: list(CROSS_BORDER_MEASUREMENTS))
    cross_border_min_window: str = Field("1h", description="finest kpi window that may leave")
    fleet_min_window: str = Field("", description="finest fleet window that may leave; "
                                                  "default: cross_border_min_window")
    audit_log: str = Field("", description="JSON-lines audit of cross-border writes; default: "
                                           "beside the first Parquet store")
    allow: list[RoutingAllow] = Field(default_factory=list)

    @field_validator("cross_border_measurements")
    @classmethod
    def _m(cls, v: list[str]) -> list[str]:
        return _cross_border_measurements(v)

    @field_validator("cross_border_min_window")
    @classmethod
    def _d(cls, v: str) -> str:
        return _duration(v)

    @field_validator("fleet_min_window")
    @classmethod
    def _fd(cls, v: str) -> str:
        return _duration(v) if v else v


class Config(_Model):
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

    def site(self, site_id: str) -> Site:
        for s in self.sites:
            if s.id == site_id:
                return s
        msg = f"no site {site_id!r} in {self.source or 'config'}; known: {[s.id for s in self.sites]}"
        raise KeyError(msg)


# --------------------------------------------------------------------------- loading


def _key(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """Render a pydantic location as ``sites[0].meters[2].kind``, using site ids when known."""
    out = ""
    node: Any = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return out


def _value_at(loc: tuple[Any, ...], data: Any) -> Any:
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return "<missing>"
    return node


def _fix_for(err: dict[str, Any], model_fields: list[str]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        name = str(err["loc"][-1])
        close = difflib.get_close_matches(name, model_fields, n=1)
        return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key; remove it"
    if kind == "missing":
        return "required; add this key"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def _known_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model at ``loc`` (for 'did you mean' hints)."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        cand = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not cand:
            return []
        model = cand[0]
    return list(model.model_fields)


def _cross_checks(cfg: Config) -> list[tuple[str, object, str]]:
    problems: list[tuple[str, object, str]] = []
    ids = [s.id for s in cfg.sites]
    for i, sid in enumerate(ids):
        if ids.index(sid) != i:
            problems.append((f"sites[{i}].id", sid, "site ids must be unique; rename one"))
    names = [s.name for s in cfg.sinks]
    for i, n in enumerate(names):
        if names.index(n) != i:
            problems.append((f"sinks[{i}].name", n, "sink names must be unique; rename one"))
    for i, site in enumerate(cfg.sites):
        if not site.meters:
            problems.append((f"sites[{i}].meters", [], "add [[sites.meters]] rules mapping device/point globs to roles"))
        roles = {m.role for m in site.meters}
        if site.meters and "it" not in roles:
            problems.append((f"sites[{i}].meters", sorted(roles), "no meter has role 'it'; PUE needs IT energy"))
        for j, m in enumerate(site.meters):
            key = f"sites[{i}].meters[{j}]"
            sensor = m.role in SENSOR_ROLES
            if sensor and m.kind != "sensor":
                problems.append((f"{key}.kind", m.kind, f"role {m.role!r} is a sensor; set kind = 'sensor'"))
            if not sensor and m.kind == "sensor":
                problems.append((f"{key}.kind", m.kind, f"role {m.role!r} is an energy; use 'register' or 'power'"))
    site_ids = set(ids)
    for i, sink in enumerate(cfg.sinks):
        for sid in sink.sites:
            if sid not in site_ids:
                problems.append((f"sinks[{i}].sites", sid, f"no such site; known: {sorted(site_ids)}"))
        if sink.type == "influx" and not sink.url:
            problems.append((f"sinks[{i}].url", sink.url, "an influx sink needs url = 'http://host:8086'"))
        if sink.type == "influx" and not sink.bucket:
            problems.append((f"sinks[{i}].bucket", sink.bucket, "an influx sink needs a bucket"))
        if sink.type == "kafka" and not sink.topic:
            problems.append((f"sinks[{i}].topic", sink.topic, "a kafka sink needs a topic"))
    problems.extend(tune_problems(cfg))
    from pueflow.sovereignty import route_problems  # late: sovereignty imports config

    problems.extend(route_problems(cfg))
    return problems


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a config dict; raise ConfigError listing every problem."""
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems = [
            (_key(e["loc"], data), _value_at(e["loc"], data), _fix_for(e, _known_fields(e["loc"])))
            for e in exc.errors()
        ]
        raise ConfigError(source, problems) from None
    cfg.source = source
    problems = _cross_checks(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [("<file>", str(p), f"cannot read: {exc.strerror}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), [("<toml>", str(exc), "fix the TOML syntax at that line")]) from None
    return parse_config(data, str(p))
