"""The role vocabulary: what a meter measures, and each role's index in the kernels' arrays."""

from __future__ import annotations

COOLING_SUBSYSTEMS = ("chiller", "dry_cooler", "cdu_pump", "immersion", "crah", "tower")
#: Roles whose readings are energy (registers in kWh or power in kW), summed per window.
ENERGY_ROLES = (
    ("facility", "it")
    + tuple(f"cooling.{s}" for s in COOLING_SUBSYSTEMS)
    + ("electrical_losses", "other", "pv", "wind", "grid_import", "grid_export", "battery",
       "heat_reuse_kwh", "ppa")
)
#: On-site renewable generation: part of the site's power balance and dispatch.
ONSITE_RENEWABLE_ROLES = ("pv", "wind")
#: Off-site generation contracted to the site (power-purchase agreements), metered at the
#: farm [kWh]: counted in REF and ``cfe_hourly`` (ISO/IEC 30134-3), never in the site's power
#: balance, its grid estimate or dispatch.
CONTRACTED_RENEWABLE_ROLES = ("ppa",)
RENEWABLE_ROLES = ONSITE_RENEWABLE_ROLES + CONTRACTED_RENEWABLE_ROLES
#: Roles integrated like energy but in litres (a cumulative water meter).
VOLUME_ROLES = ("water_l",)
#: Instantaneous sensors, averaged per window (time-weighted would need a kind of its own).
SENSOR_ROLES = ("ambient_temp_c", "supply_temp_c", "return_temp_c", "flow_lpm", "battery_soc")
ALL_ROLES = ENERGY_ROLES + VOLUME_ROLES + SENSOR_ROLES
#: Roles whose power may legitimately be negative (battery discharge).
SIGNED_ROLES = ("battery",)
ROLE_INDEX = {r: i for i, r in enumerate(ALL_ROLES)}
