"""Plant layout: unit counts, device names and the telemetry series each unit emits.

Counts not configured are sized from IT capacity; the series are checked against the
site's meter rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pueflow.config.models import Site
from pueflow.exceptions import ConfigError
from pueflow.schema.registry import DEFAULT_MAX_KW_FACTOR
from pueflow.sim.meters import POWER, REGISTER, SENSOR, SeriesTable
from pueflow.sim.solar import layout

_KIND_NAME = {POWER: "power", REGISTER: "register", SENSOR: "sensor"}


@dataclass(frozen=True)
class Counts:
    """How many units of each kind a site has (after auto-sizing)."""

    racks: int
    tanks: int
    cdus: int
    dry_coolers: int
    towers: int
    chillers: int
    crahs: int
    ups: int
    aux: int
    pv_inverters: int
    turbines: int
    incomers: int
    battery: int


def resolve(site: Site) -> Counts:
    """Return the unit counts of ``site.plant``, sizing ``None`` counts from ``it_capacity_kw``.

    Racks fill the IT capacity [kW] left after immersion tanks; CDUs, dry coolers, chillers,
    CRAHs and UPS units are sized with margins over the heat or load they serve. A site
    without PV has no inverters; a battery counts only with both capacity and power > 0.

    Parameters
    ----------
    site : Site
        One site of the config.

    Returns
    -------
    Counts

    Raises
    ------
    ConfigError
        If both cooling towers and dry coolers are configured.
    """
    p = site.plant
    cap = site.it_capacity_kw
    tanks = p.immersion.count
    racks = p.racks.count if p.racks.count is not None else max(
        0, round((cap - tanks * p.immersion.tank_kw) / p.racks.rack_kw))
    rack_kw = racks * p.racks.rack_kw
    liquid = rack_kw * p.racks.liquid_fraction
    cdus = p.cdu.count if p.cdu.count is not None else (
        math.ceil(1.1 * liquid / p.cdu.rated_kw) if liquid > 0 else 0)
    towers = p.tower.count
    heat = 1.05 * (rack_kw + tanks * p.immersion.tank_kw)
    dry = p.dry_cooler.count if p.dry_cooler.count is not None else (
        0 if towers else math.ceil(1.15 * heat / p.dry_cooler.rated_kw))
    chillers = p.chiller.count if p.chiller.count is not None else math.ceil(0.6 * heat / p.chiller.capacity_kw)
    air = rack_kw * (1 - p.racks.liquid_fraction) + 0.02 * cap
    crahs = p.crah.count if p.crah.count is not None else math.ceil(1.2 * air / p.crah.rated_kw)
    ups_load = rack_kw + tanks * p.immersion.tank_kw + (0.02 * cap if p.electrical.cdu_on_ups else 0.0)
    ups = p.electrical.ups_count if p.electrical.ups_count is not None else max(
        1, math.ceil(ups_load / p.electrical.ups_rated_kw))
    inverters = 0
    if p.pv.kwp > 0:
        inverters = layout(p.pv, site.latitude).inverters
    battery = int(p.battery.capacity_kwh > 0 and p.battery.power_kw > 0)
    if towers and p.dry_cooler.count:
        source = "<plant>"
        raise ConfigError(source, [(f"sites[{site.id}].plant.dry_cooler.count", p.dry_cooler.count,
                                    "a site rejects heat through towers or dry coolers; set one count to 0")])
    return Counts(racks, tanks, cdus, dry, towers, chillers, crahs, ups, p.aux.count, inverters,
                  p.wind.count, p.electrical.incomers, battery)


def names(prefix: str, n: int) -> list[str]:
    """``prefix-1``..``prefix-9``; zero-padded (``cdu-01``) when there are ten or more."""
    width = len(str(n)) if n < 10 else max(2, len(str(n)))
    return [f"{prefix}-{i:0{width}d}" for i in range(1, n + 1)]


@dataclass(frozen=True)
class SeriesSpec:
    """One series a plant unit can emit, and where the simulator reads its value.

    Attributes
    ----------
    device, point : str
        The series key within the site.
    kind : int
        ``POWER``, ``REGISTER`` or ``SENSOR``.
    role : str
        Physical role: what the truth counts it as.
    group : str
        Name of the simulated array the value comes from.
    column : int
        Column of that array (the unit's index in its group).
    """

    device: str
    point: str
    kind: int
    role: str       # physical role (what the truth counts it as)
    group: str      # array the value comes from
    column: int


def series_specs(site: Site, c: Counts) -> list[SeriesSpec]:
    """List every series the plant can emit, in emission order."""
    out: list[SeriesSpec] = []

    def add(devices, point, kind, role, group):
        out.extend(SeriesSpec(d, point, kind, role, group, i) for i, d in enumerate(devices))

    add(names("incomer", c.incomers), "energy_kwh", REGISTER, "facility", "incomer")
    add(names("pdu", c.racks), "power_kw", POWER, "it", "rack_it")
    add(names("pdu-imm", c.tanks), "power_kw", POWER, "it", "tank_it")
    cdus = names("cdu", c.cdus)
    add(cdus, "pump_power_kw", POWER, "cooling.cdu_pump", "cdu_pump")
    add(cdus, "supply_temp_c", SENSOR, "supply_temp_c", "cdu_supply")
    add(cdus, "return_temp_c", SENSOR, "return_temp_c", "cdu_return")
    add(cdus, "flow_lpm", SENSOR, "flow_lpm", "cdu_flow")
    add(names("drycooler", c.dry_coolers), "fan_power_kw", POWER, "cooling.dry_cooler", "sink_fan")
    add(names("tower", c.towers), "fan_power_kw", POWER, "cooling.tower", "sink_fan")
    add(names("chiller", c.chillers), "power_kw", POWER, "cooling.chiller", "chiller")
    add(names("crah", c.crahs), "power_kw", POWER, "cooling.crah", "crah")
    add(names("immersion", c.tanks), "power_kw", POWER, "cooling.immersion", "immersion")
    add(names("ups", c.ups), "loss_kw", POWER, "electrical_losses", "ups")
    add(names("aux", c.aux), "power_kw", POWER, "other", "aux")
    add(names("pv-inv", c.pv_inverters), "power_kw", POWER, "pv", "pv")
    add(names("wtg", c.turbines), "power_kw", POWER, "wind", "wind")
    add([f"ppa-{p.name}" for p in site.ppa], "power_kw", POWER, "ppa", "ppa")
    add(["grid-1"], "import_kwh", REGISTER, "grid_import", "grid_import")
    add(["grid-1"], "export_kwh", REGISTER, "grid_export", "grid_export")
    add(names("bess", c.battery), "power_kw", POWER, "battery", "bess")
    add(names("bess", c.battery), "soc_pct", SENSOR, "battery_soc", "soc")
    add(["weather-1"], "ambient_temp_c", SENSOR, "ambient_temp_c", "ambient")
    add(["water-1"], "volume_l", REGISTER, "water_l", "water")
    return out


def emitted(site: Site, specs: list[SeriesSpec], register_max: float | None) -> tuple[list[SeriesSpec], SeriesTable]:
    """Select the series the site's meter rules map, with their meter parameters.

    A series no rule matches is not emitted (the truth still counts its energy). A rule that
    maps a series to another role or kind is a config error.
    """
    keep: list[SeriesSpec] = []
    problems: list[tuple[str, object, str]] = []
    params: list[tuple[float, float, int, float]] = []
    for s in specs:
        rule = site.rule_for(s.device, s.point)
        if rule is None:
            continue
        want = _KIND_NAME[s.kind]
        if rule.role != s.role or rule.kind != want:
            problems.append((f"sites[{site.id}].meters ({s.device}/{s.point})", f"{rule.kind} {rule.role}",
                             f"the simulator emits this as kind = '{want}', role = '{s.role}'; "
                             f"fix the rule with device = '{rule.device}', point = '{rule.point}'"))
            continue
        keep.append(s)
        max_kw = rule.max_kw if rule.max_kw is not None else DEFAULT_MAX_KW_FACTOR * site.it_capacity_kw
        params.append((register_max or rule.register_max, rule.jitter_kwh, rule.max_gap_ns(), max_kw))
    if problems:
        source = "<config>"
        raise ConfigError(source, problems)
    arr = np.array(params, np.float64).reshape(-1, 4)
    table = SeriesTable(
        device=[s.device for s in keep], point=[s.point for s in keep],
        kind=np.array([s.kind for s in keep], np.int8), register_max=arr[:, 0],
        jitter=arr[:, 1], max_gap_ns=arr[:, 2].astype(np.int64), spike_kw=arr[:, 3])
    return keep, table
