"""One root error and a tree under it.

Every message says what was wrong, the offending value, and what to do about it.
"""

from __future__ import annotations


class PueflowError(Exception):
    """Root of every error pueflow raises on purpose."""


class ConfigError(PueflowError):
    """The configuration is invalid; ``problems`` lists every (key, value, fix)."""

    def __init__(self, source: str, problems: list[tuple[str, object, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s)"]
        for key, value, fix in problems:
            lines.append(f"  {key} = {value!r}: {fix}")
        super().__init__("\n".join(lines))


class InputFormatError(PueflowError):
    """A telemetry file is structurally wrong (missing column, wrong type, naive time)."""

    def __init__(self, path: str, message: str, row: int | None = None, column: str | None = None):
        self.path, self.row, self.column = path, row, column
        where = path
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")


class SinkError(PueflowError):
    """A sink could not write."""


class SinkBackpressure(SinkError):
    """The store asked us to slow down; retry after ``retry_after`` seconds, never drop."""

    def __init__(self, message: str, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class SovereigntyError(PueflowError):
    """A row or a route would carry data out of its jurisdiction."""


class StateError(PueflowError):
    """Checkpointed state is missing, corrupt, or belongs to another config."""


class OptimizerError(PueflowError):
    """The dispatch optimiser was given inputs it cannot use."""
