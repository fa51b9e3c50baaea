"""Physical description of a site's plant, read from ``[sites.plant]`` (placeholder, extended by sim)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PlantSpec(BaseModel):
    """What is physically installed at a site: racks, cooling plant, PV, wind, battery."""

    model_config = ConfigDict(extra="allow")
