"""The interface every sink implements, and sinks built from the config.

A checkpoint calls :meth:`Sink.flush` on every sink before it commits offsets, so ``flush``
must leave everything written so far durable, or raise. Rows follow
:mod:`pueflow.schema.rows`: a ``time`` column (``Datetime("ns", "UTC")``), the tag
columns of the measurement, and field columns; a row's identity is (measurement, tags,
time), so writing it again overwrites it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import polars as pl

    from pueflow.config.models import Config


@runtime_checkable
class Sink(Protocol):
    """Where output rows go (Parquet store, time-series store, Kafka topic)."""

    name: str

    def write(self, measurement: str, rows: pl.DataFrame) -> None:
        """Buffer ``rows`` of ``measurement``; may write early, never loses them."""

    def flush(self) -> None:
        """Make every buffered row durable; raise :class:`~pueflow.exceptions.SinkError`
        (or its ``SinkBackpressure``) if that is not possible. Safe to call again."""

    def close(self) -> None:
        """Flush and release resources."""


def build_sinks(cfg: Config, run: str = "") -> list[Sink]:
    """One sink per ``[[sinks]]`` entry of ``cfg``, in order.

    Constructors: ``ParquetStore(path, name=)``, ``InfluxSink(spec, run=)``,
    ``KafkaSink(spec, cfg.kafka)``; the latter two are imported only when configured, so
    their client libraries stay optional. ``run`` names a replay or tuning run (rows also
    carry it as their ``run`` tag). Routing (which rows reach which sink) is the
    sovereignty router's job, not the sink's.
    """
    sinks: list[Sink] = []
    for spec in cfg.sinks:
        if spec.type == "parquet":
            from pueflow.connectors.parquet_store import ParquetStore

            sinks.append(ParquetStore(spec.path, name=spec.name))
        elif spec.type == "influx":
            from pueflow.connectors.influx import InfluxSink

            sinks.append(InfluxSink(spec, run=run))
        elif spec.type == "kafka":
            from pueflow.connectors.kafka_sink import KafkaSink

            sinks.append(KafkaSink(spec, cfg.kafka))
        else:  # pragma: no cover - the config's Literal rejects anything else
            msg = f"sink {spec.name!r}: unknown type {spec.type!r}; use parquet, influx or kafka"
            raise ValueError(msg)
    return sinks
