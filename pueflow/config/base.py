"""Shared pieces of the config models: the strict base model and duration fields."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from pueflow.units import parse_duration_ns


class Model(BaseModel):
    """Base of every config model: unknown keys are an error (a typo never passes silently)."""

    model_config = ConfigDict(extra="forbid", frozen=False)



def duration_str(v: Any) -> str:
    """Validate a duration string (``"30s"``) and return it stripped."""
    parse_duration_ns(v)
    return str(v).strip()
