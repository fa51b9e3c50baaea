"""The models of ``[routing]``: what may cross a border, to which sink.

Kept apart from the rule functions (:mod:`pueflow.config.routing`), which take the whole
:class:`~pueflow.config.models.Config`: the config model holds these, so they import
nothing of it.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from pueflow.config.base import Model, duration_str

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


class RoutingAllow(Model):
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
        return duration_str(v) if v else v


class RoutingConfig(Model):
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
        return duration_str(v)

    @field_validator("fleet_min_window")
    @classmethod
    def _fd(cls, v: str) -> str:
        return duration_str(v) if v else v
