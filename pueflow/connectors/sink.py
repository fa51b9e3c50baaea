"""The interface every sink implements, and sinks built from the config.

A checkpoint calls :meth:`Sink.flush` on every sink before it commits offsets, so ``flush``
must leave everything written so far durable, or raise. Rows follow
:mod:`pueflow.schema.rows`: a ``time`` column (``Datetime("ns", "UTC")``), the tag
columns of the measurement, and field columns; a row's identity is (measurement, tags,
time), so writing it again overwrites it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pueflow.config.models import Sink as SinkSpec
from pueflow.connectors.parquet_store import ParquetStore
from pueflow.sovereignty.router import Router

if TYPE_CHECKING:
    import polars as pl

    from pueflow.config.models import Config
    from pueflow.schema.rows import Output


@runtime_checkable
class Sink(Protocol):
    """Where output rows go (Parquet store, time-series store, Kafka topic)."""

    name: str

    def write(self, measurement: str, rows: pl.DataFrame) -> None:
        """Buffer ``rows`` of ``measurement``; may write early, never loses them."""

    def flush(self) -> None:
        """Make every buffered row durable; safe to call again.

        Raises
        ------
        SinkError
            Or its subclass ``SinkBackpressure``, if that is not possible now.
        """

    def close(self) -> None:
        """Flush and release resources."""


def build_sinks(cfg: Config, run: str = "") -> list[Sink]:
    """Build one sink per ``[[sinks]]`` entry of ``cfg``, in order.

    Constructors: ``ParquetStore(path, name=)``, ``InfluxSink(spec, run=)``,
    ``KafkaSink(spec, cfg.kafka)``; the latter two are imported only when configured, so
    their client libraries stay optional. ``run`` names a replay or tuning run (rows also
    carry it as their ``run`` tag). Routing (which rows reach which sink) is the
    sovereignty router's job, not the sink's.
    """
    sinks: list[Sink] = []
    for spec in cfg.sinks:
        if spec.type == "parquet":
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


class SinkSet:
    """Every configured sink behind the sovereignty router."""

    def __init__(self, cfg: Config, sinks: list[Any]):
        self.cfg = cfg
        self.router = Router(cfg)
        by_name = {s.name: s for s in cfg.sinks}
        self.pairs = [(by_name[s.name], s) for s in sinks if s.name in by_name]

    def write(self, out: Output) -> int:
        """Hand each measurement's rows to every sink the router allows them to reach.

        Each write is audited (what left a jurisdiction). Rows are buffered by the sinks;
        :meth:`flush` makes them durable.

        Parameters
        ----------
        out : Output
            One step's output frames, by measurement.

        Returns
        -------
        int
            Rows written, counted once per sink (0 when nothing was routed).
        """
        n = 0
        for measurement, df in out.frames().items():
            for spec, sink in self.pairs:
                rows = self.router.rows_for(spec, measurement, df)
                if rows is not None:
                    sink.write(measurement, rows)
                    self.router.audit(spec, measurement, rows)  # what left a jurisdiction
                    n += rows.height
        return n

    def flush(self) -> None:
        """Flush every sink in order; the first failure propagates (see :meth:`Sink.flush`)."""
        for _, sink in self.pairs:
            sink.flush()

    def close(self) -> None:
        """Close every sink in order."""
        for _, sink in self.pairs:
            sink.close()


def build_sinkset(cfg: Config, run: str = "", out_dir: str | Path | None = None) -> SinkSet:
    """Build the sinks of the config behind its sovereignty router.

    Parameters
    ----------
    cfg : Config
        Its ``[[sinks]]`` (the caller's config is not modified).
    run : str
        Run tag for sinks that write it.
    out_dir : str or Path, optional
        Relocates the Parquet stores: one store goes to that folder, several to a sub-folder
        per sink name (so jurisdictions never share a folder). With no Parquet sink configured,
        a ``local`` one is added there, in the first site's jurisdiction.

    Returns
    -------
    SinkSet
    """
    if out_dir is not None:
        parquet = [s for s in cfg.sinks if s.type == "parquet"]
        cfg = cfg.model_copy(deep=True)
        for s in cfg.sinks:
            if s.type == "parquet":
                s.path = str(out_dir) if len(parquet) == 1 else str(Path(out_dir) / s.name)
        if not parquet:
            jur = cfg.sites[0].jurisdiction
            cfg.sinks.append(SinkSpec(name="local", type="parquet", path=str(out_dir), jurisdiction=jur))
    return SinkSet(cfg, build_sinks(cfg, run=run))
