"""Audit log of what left each jurisdiction: append-only JSON lines, one per cross-border write.

Each line records when it was written (UTC), the sink and its jurisdiction, the source
jurisdiction(s), the measurement, the windows, the row count and the rows' time range.
Only writes that carry rows across a border are recorded; what stays home is not audited.

The default file sits *beside* the first Parquet store (``<path>.audit.jsonl``), never inside
it: ``polars.scan_parquet(store)`` refuses a folder holding files of other types.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from pueflow.config.models import Config

DEFAULT_AUDIT_FILE = "pueflow-audit.jsonl"
AUDIT_SUFFIX = ".audit.jsonl"


def audit_path(cfg: Config) -> Path:
    """Return where the audit log of ``cfg`` goes.

    ``[routing] audit_log`` if set, else beside the first Parquet store
    (``pueflow-out`` -> ``pueflow-out.audit.jsonl``), else ``pueflow-audit.jsonl`` in the
    working directory.
    """
    if cfg.routing.audit_log:
        return Path(cfg.routing.audit_log)
    for sink in cfg.sinks:
        if sink.type == "parquet":
            store = Path(sink.path)
            return store.with_name(store.name + AUDIT_SUFFIX)
    return Path(DEFAULT_AUDIT_FILE)


def _iso(t: object) -> str | None:
    """Return ``t`` as an ISO-8601 UTC string ending in ``Z``, or ``None`` for ``None``.

    A naive datetime is taken as UTC (rows carry UTC times by contract).

    Raises
    ------
    TypeError
        If ``t`` is neither ``None`` nor a :class:`datetime.datetime` (a ``time`` column
        that is not of polars type Datetime).
    """
    if t is None:
        return None
    if not isinstance(t, datetime):
        msg = (f"audit entry: the 'time' column holds {type(t).__name__} {t!r}; "
               "expected a polars Datetime column (UTC)")
        raise TypeError(msg)
    if t.tzinfo is None:  # rows carry UTC times; a naive one is UTC by contract
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def entry(*, sink: str, sink_jurisdiction: str, sources: list[str], measurement: str,
          rows: pl.DataFrame, written_at: datetime) -> dict[str, Any]:
    """Build one audit record for ``rows`` of ``measurement`` that left ``sources`` for ``sink``.

    Returns
    -------
    dict
        ``written_at`` (ISO UTC), sink and jurisdictions, measurement, the distinct sites,
        scopes and windows (when the rows have those columns), the row count and the rows'
        ``time_min``/``time_max`` (``None`` without a ``time`` column or with no rows).

    Raises
    ------
    TypeError
        The ``time`` column is not of polars type Datetime.
    """
    rec: dict[str, Any] = {
        "written_at": _iso(written_at),
        "sink": sink,
        "sink_jurisdiction": sink_jurisdiction,
        "source_jurisdictions": sorted(sources),
        "measurement": measurement,
    }
    for col, key in (("site", "sites"), ("scope", "scopes"), ("window", "windows")):
        if col in rows.columns:
            rec[key] = sorted(str(v) for v in rows[col].unique().to_list())
    rec["rows"] = rows.height
    times = rows["time"] if "time" in rows.columns else None
    rec["time_min"] = _iso(times.min()) if times is not None else None
    rec["time_max"] = _iso(times.max()) if times is not None else None
    return rec


class AuditLog:
    """Append-only JSON-lines file; each :meth:`append` is flushed before it returns.

    Parameters
    ----------
    path : path
        The file; its folder is created on the first append.
    clock : callable, optional
        Returns the current time (timezone-aware); for tests.
    """

    def __init__(self, path: str | Path, clock: Callable[[], datetime] | None = None):
        self.path = Path(path)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.lines = 0

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append ``records``, one JSON object a line, and flush."""
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        # "a" opens with O_APPEND: earlier lines are never rewritten, even by two writers
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
        self.lines += len(records)

    def record(self, sink: str, sink_jurisdiction: str, measurement: str,
               groups: list[tuple[list[str], pl.DataFrame]]) -> None:
        """Append one line per (source jurisdictions, rows) group that crossed a border."""
        now = self.clock()
        self.append([entry(sink=sink, sink_jurisdiction=sink_jurisdiction, sources=src,
                           measurement=measurement, rows=rows, written_at=now)
                     for src, rows in groups if rows.height])


def read_audit(path: str | Path) -> list[dict[str, Any]]:
    """Read every record of an audit log, oldest first (empty if the file does not exist)."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]
