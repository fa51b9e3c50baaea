"""Kafka sink: rows (setpoints by default) as JSON messages on a topic, keyed by site.

Each row becomes one Telegraf-style JSON message, so the same decoders read it back:
``{"name": measurement, "tags": {...}, "fields": {...}, "timestamp": ns}`` (timestamps
in ns), built by the same envelope as :func:`~pueflow.connectors.wire.encode_json`. The
key is the site, so a site's setpoints stay ordered. Delivery is at-least-once: a consumer of this topic treats (measurement, tags, timestamp) as the
identity, as the time-series store does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from pueflow.connectors.kafka import build_producer
from pueflow.connectors.telegraf_json import envelope, jstr, member, members, quoted
from pueflow.exceptions import SinkBackpressure
from pueflow.schema import rows as rw

if TYPE_CHECKING:
    from pueflow.config.models import KafkaConfig, Sink


def to_messages(measurement: str, df: pl.DataFrame) -> list[tuple[bytes, bytes]]:
    """Encode the rows of one measurement as Kafka messages in Telegraf's JSON envelope.

    Parameters
    ----------
    measurement : str
        Measurement name written as ``"name"``; its tag columns (:mod:`pueflow.schema.rows`)
        present in ``df`` become ``"tags"``, the other columns except ``time`` ``"fields"``.
    df : polars.DataFrame
        Rows with a UTC ``time`` column.

    Returns
    -------
    list of (bytes, bytes)
        ``(key, JSON payload)`` per row (see :func:`.telegraf_json.envelope`); the key is the
        site (else the scope, else empty), timestamps are in [ns]. Null and non-finite
        fields are left out, empty tag values too, and so is a row with no field left; an
        empty frame gives an empty list.
    """
    if df.height == 0:
        return []
    tags = [c for c in rw.tag_columns(measurement) if c in df.columns]
    parts = [e for c in rw.field_columns(measurement, df)
             if (e := member(c, c, df.schema[c])) is not None]
    fields = members(parts)
    tag_parts: list[pl.Expr] = [pl.when(pl.col(t).cast(pl.String) != "").then(
        pl.lit(jstr(t) + ":") + quoted(pl.col(t))) for t in tags]
    ts = pl.col(rw.TIME).cast(pl.Datetime("ns", "UTC")).dt.epoch("ns").cast(pl.String)
    key = pl.coalesce([pl.when(pl.col(c).cast(pl.String) != "").then(pl.col(c).cast(pl.String))
                       for c in ("site", "scope") if c in tags] + [pl.lit("")])
    out = df.select(key.alias("k"), fields.alias("f"),
                    envelope(pl.lit(jstr(measurement)), members(tag_parts), fields, ts).alias("v"))
    out = out.filter(pl.col("f") != "")
    return [(k.encode(), v.encode()) for k, v in zip(out["k"].to_list(), out["v"].to_list(),
                                                      strict=True)]


class KafkaSink:
    """Write rows to ``spec.topic``; :meth:`flush` waits for the broker's acknowledgement.

    Parameters
    ----------
    spec : Sink
        ``topic`` and ``measurements`` (default here: setpoints only, when the spec lists
        every measurement) are used.
    kafka : KafkaConfig
        Bootstrap servers and security.
    producer : KafkaProducer, optional
        Share one (tests); built from ``kafka`` otherwise.
    """

    def __init__(self, spec: Sink, kafka: KafkaConfig, *, producer: Any = None):
        self.name = spec.name
        self.topic = spec.topic
        self.kafka = kafka
        self.timeout_s = spec.timeout_s
        self._producer = producer
        self._own = producer is None
        self._futures: list[Any] = []
        self.rows_written = 0

    def _get(self) -> Any:
        if self._producer is None:
            self._producer = build_producer(self.kafka)
        return self._producer

    def write(self, measurement: str, df: pl.DataFrame) -> None:
        """Send the rows asynchronously (the producer buffers and batches)."""
        if df.height == 0:
            return
        for key, value in to_messages(measurement, df):
            self._send(key, value)

    def _send(self, key: bytes, value: bytes) -> None:
        self._futures.append((self._get().send(self.topic, key=key, value=value), key, value))

    def flush(self) -> None:
        """Wait (up to ``timeout_s`` [s]) until every row sent so far is acknowledged.

        Rows the broker refused are sent again and rows still unacknowledged stay pending;
        either way :class:`SinkBackpressure` is raised so the caller waits and calls
        ``flush`` again. Nothing is dropped; with nothing sent it returns at once.

        Raises
        ------
        SinkBackpressure
            Some rows were not acknowledged (``retry_after`` = 1 s); they are kept.
        """
        if not self._futures:
            return
        self._get().flush(timeout=self.timeout_s)
        entries, self._futures = self._futures, []
        bad = [(f, k, v) for f, k, v in entries if not f.is_done or f.failed()]
        self.rows_written += len(entries) - len(bad)
        if bad:
            f0 = bad[0][0]
            why = f0.exception if f0.is_done else "timeout"
            for f, k, v in bad:
                if f.is_done:
                    self._send(k, v)
                else:
                    self._futures.append((f, k, v))
            msg = (f"sink {self.name!r} (topic {self.topic!r}): {len(bad)} of {len(entries)} "
                   f"rows not acknowledged ({why}); re-sent")
            raise SinkBackpressure(msg, retry_after=1.0)

    def close(self) -> None:
        """Close the producer this sink built (a shared one is left open); idempotent."""
        if self._producer is not None and self._own:
            self._producer.close(timeout=self.timeout_s)
            self._producer = None
