"""Configuration: pydantic models read from TOML in one place, cross-checks, routing rules.

``load_config(path)`` returns a validated :class:`Config` or raises
:class:`~pueflow.exceptions.ConfigError` listing every problem as (key, bad value, fix).
"""

from pueflow.config.load import load_config, parse_config
from pueflow.config.models import Config

__all__ = ["Config", "load_config", "parse_config"]
