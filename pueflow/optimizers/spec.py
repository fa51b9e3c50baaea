"""Dispatch settings, read from ``[sites.dispatch]`` (placeholder, extended by optimizers)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DispatchSpec(BaseModel):
    """Tariffs, horizon, limits and penalties for a site's dispatch LP."""

    model_config = ConfigDict(extra="allow")
