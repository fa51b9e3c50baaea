"""Configuration: pydantic models read from TOML in one place, cross-checks, routing rules."""
