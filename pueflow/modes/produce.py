"""Publish telemetry to Kafka in either wire format (demos, tests, history into a topic).

Messages are keyed by site, so with Kafka's default partitioner a site's readings stay in
one partition (its watermark then lives in one consumer). Readings are sent in event-time
order within each slice of ``slice_s`` of event time, site by site.

Values: Parquet/CSV hold readings in the config's units, the wire carries what a meter
sends, and the consumer multiplies wire values by each meter's ``scale``; so canonical
files are divided by ``scale`` on the way out and wire-format files pass through as read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pueflow.config.load import load_config
from pueflow.config.models import Config
from pueflow.connectors.files import format_of, iter_file, telemetry_files
from pueflow.connectors.kafka import build_producer
from pueflow.connectors.ops import configure_json_logging
from pueflow.connectors.wire import encode_json, encode_line
from pueflow.schema.registry import Registry

log = logging.getLogger("pueflow.produce")


@dataclass
class ProduceStats:
    """Counters of a publish; one object can accumulate several :func:`produce_frame` calls.

    Attributes
    ----------
    messages : int
        Kafka messages sent.
    readings : int
        Rows (readings) of the frames published.
    bytes : int
        Payload bytes sent (keys and headers not counted).
    seconds : float
        Wall time spent publishing [s], flushes included.
    """

    messages: int = 0
    readings: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def messages_per_s(self) -> float:
        """Messages sent per second of wall time [1/s]; 0 before any time has passed."""
        return self.messages / self.seconds if self.seconds else 0.0


def encode_keyed(df: pl.DataFrame, fmt: str, *, timestamp_unit: str = "s", per_message: int = 1,
                 slice_s: float = 300.0) -> Iterable[tuple[bytes, bytes]]:
    """Encode a canonical long-form frame into (key, payload) messages keyed by site.

    Rows are cut into time slices of ``slice_s``; within each slice, one run of messages per
    site, so a site's readings go out roughly in time order.

    Parameters
    ----------
    df : polars.DataFrame
        Columns time (UTC datetime), site, device, point, value.
    fmt : {"json", "line"}
        Wire format; anything other than ``"json"`` is encoded as line protocol.
    timestamp_unit : str
        Unit of JSON timestamps (``"s"``, ``"ms"``, ...).
    per_message : int
        Readings per message.
    slice_s : float
        Length of a time slice [s].

    Yields
    ------
    key : bytes
        The site id, UTF-8.
    payload : bytes
        One message. An empty frame yields nothing.
    """
    if df.height == 0:
        return
    slice_ns = max(int(slice_s * 1e9), 1)
    df = df.with_columns((pl.col("time").dt.epoch("ns") // slice_ns).alias("_slice"))
    for (_,), part in df.sort("_slice", maintain_order=True).group_by(
            ["_slice"], maintain_order=True):
        for (site,), sub in part.drop("_slice").group_by(["site"], maintain_order=True):
            if fmt == "json":
                msgs = encode_json(sub, timestamp_unit, per_message)
            else:
                msgs = encode_line(sub, per_message)
            key = str(site).encode()
            for m in msgs:
                yield key, m


class _Pacer:
    """Sleep so that no more than ``rate`` messages a second go out (None = no limit)."""

    def __init__(self, rate: float | None):
        self.rate = rate
        self.t0 = time.monotonic()
        self.n = 0

    def tick(self) -> None:
        self.n += 1
        if self.rate:
            ahead = self.n / self.rate - (time.monotonic() - self.t0)
            if ahead > 0.005:
                time.sleep(ahead)


def produce_frame(cfg: Config, df: pl.DataFrame, *, topic: str | None = None,
                  fmt: str | None = None, rate: float | None = None, per_message: int = 1,
                  producer: Any = None, stats: ProduceStats | None = None) -> ProduceStats:
    """Publish a canonical long-form frame (time, site, device, point, value).

    Parameters
    ----------
    topic : str, optional
        Default: the first of ``cfg.kafka.topics``.
    fmt : {"json", "line"}, optional
        Default: ``cfg.kafka.format``.
    rate : float, optional
        Messages per second (None: as fast as the broker takes them).
    per_message : int
        Metrics per JSON message (the ``{"metrics": [...]}`` batch form when > 1) or lines
        per line-protocol message.
    """
    topic = topic or cfg.kafka.topics[0]
    fmt = fmt or cfg.kafka.format
    if fmt not in ("json", "line"):
        msg = f"wire format {fmt!r} is not 'json' or 'line'"
        raise ValueError(msg)
    own = producer is None
    if own:
        producer = build_producer(cfg.kafka, linger_ms=20, batch_size=512 * 1024)
    stats = stats or ProduceStats()
    pacer = _Pacer(rate)
    t0 = time.monotonic()
    try:
        for key, payload in encode_keyed(df, fmt, timestamp_unit=cfg.kafka.timestamp_unit,
                                         per_message=per_message):
            producer.send(topic, key=key, value=payload)
            stats.messages += 1
            stats.bytes += len(payload)
            pacer.tick()
        stats.readings += df.height
        producer.flush()
    finally:
        if own:
            producer.close(timeout=10)
    stats.seconds += time.monotonic() - t0
    return stats


def _unscaled_config(cfg: Config) -> Config:
    raw = cfg.model_copy(deep=True)
    for site in raw.sites:
        for rule in site.meters:
            rule.scale = 1.0
    return raw


def run_produce(cfg: Config, input_path: str | Path, *, rate: float | None = None,
                fmt: str | None = None, topic: str | None = None, per_message: int = 1,
                chunk_rows: int = 1_000_000) -> ProduceStats:
    """Publish a telemetry file or folder to Kafka, keyed by site.

    Inputs are Parquet, CSV, JSON lines or line protocol. Values read from Parquet and CSV
    files are divided by their meter's ``scale`` again, so the topic carries raw meter
    readings as a device would send them. Unreadable rows are logged (the first 20 per
    chunk) and skipped.

    Parameters
    ----------
    cfg : Config
        ``kafka`` (servers, topics, format, timestamp unit) and the sites' meter rules.
    input_path : str or Path
        A telemetry file, or a folder searched for them.
    rate : float, optional
        At most this many messages a second; default: as fast as the broker takes them.
    fmt : {"json", "line"}, optional
        Wire format; default ``cfg.kafka.format``.
    topic : str, optional
        Default: the first of ``cfg.kafka.topics``.
    per_message : int
        Readings per message.
    chunk_rows : int
        Rows read per chunk.

    Returns
    -------
    ProduceStats
    """
    raw_registry = Registry(_unscaled_config(cfg))
    scales = Registry(cfg)
    producer = build_producer(cfg.kafka, linger_ms=20, batch_size=512 * 1024)
    stats = ProduceStats()
    try:
        for f in telemetry_files(input_path):
            canonical = format_of(f) in ("parquet", "csv")
            for chunk in iter_file(f, raw_registry, chunk_rows=chunk_rows,
                                   timestamp_unit=cfg.kafka.timestamp_unit):
                df = _long_form(chunk.batch, raw_registry, scales if canonical else None)
                produce_frame(cfg, df, topic=topic, fmt=fmt, rate=rate,
                              per_message=per_message, producer=producer, stats=stats)
                for row, why in chunk.errors[:20]:
                    log.warning("%s row %d not published: %s", f, row, why)
        log.info("produced", extra={"messages": stats.messages, "readings": stats.readings,
                                    "seconds": round(stats.seconds, 3)})
    finally:
        producer.close(timeout=10)
    return stats


def _long_form(batch: Any, registry: Registry, scales: Registry | None) -> pl.DataFrame:
    keys = registry.keys
    ser = batch.series
    uniq, inv = np.unique(ser, return_inverse=True)
    value = batch.value
    if scales is not None:
        sc = np.array([scales.scale[scales.id(*keys[s])] for s in uniq.tolist()])
        if (sc != 1.0).any():
            value = value / sc[inv]
    site = pl.Series([keys[s][0] for s in uniq.tolist()], dtype=pl.String)
    dev = pl.Series([keys[s][1] for s in uniq.tolist()], dtype=pl.String)
    pt = pl.Series([keys[s][2] for s in uniq.tolist()], dtype=pl.String)
    idx = pl.Series(inv.astype(np.uint32))
    return pl.DataFrame({
        "time": pl.Series(batch.time_ns).cast(pl.Datetime("ns", "UTC")),
        "site": site.gather(idx), "device": dev.gather(idx), "point": pt.gather(idx),
        "value": value,
    })


def main(argv: list[str] | None = None) -> int:
    """``python -m pueflow.modes.produce --config C --input FILE [--rate N]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="pueflow-produce", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--rate", type=float, default=None, help="messages per second")
    ap.add_argument("--format", choices=["json", "line"], default=None)
    ap.add_argument("--topic", default=None)
    ap.add_argument("--per-message", type=int, default=1)
    args = ap.parse_args(argv)
    configure_json_logging()
    st = run_produce(load_config(args.config), args.input, rate=args.rate, fmt=args.format,
                     topic=args.topic, per_message=args.per_message)
    print(f"{st.messages} messages, {st.readings} readings in {st.seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
