"""Kafka plumbing for consume mode: secured clients, the dead-letter writer, the state topic.

Everything here is I/O; no arithmetic. kafka-python is imported lazily so the package
imports without the ``[kafka]`` extra.

Security comes from :class:`~pueflow.config.models.KafkaConfig`: ``security_protocol`` (PLAINTEXT,
SSL, SASL_PLAINTEXT, SASL_SSL), ``sasl_mechanism`` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)
with the user name and password read from the environment variables the config names, and
the SSL files. Secrets are never logged nor kept outside the client's own config.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from pueflow.exceptions import ConfigError, SinkBackpressure, StateError

if TYPE_CHECKING:
    from kafka import KafkaConsumer, KafkaProducer

    from pueflow.config.models import KafkaConfig

log = logging.getLogger(__name__)

#: Consumer settings that differ from kafka-python's defaults, and why.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable_auto_commit": False,        # offsets are committed only after sinks are durable
    "auto_offset_reset": "earliest",    # a new group reads the history already in the topic
    "session_timeout_ms": 10_000,       # a dead process's partitions move within ~10 s
    "heartbeat_interval_ms": 2_000,
    "max_poll_interval_ms": 300_000,
    "fetch_max_wait_ms": 100,
    "metrics_enabled": False,           # kafka-python's own metrics cost ~10 % throughput
}
#: Largest checkpoint record; the state topic is created to accept it.
STATE_MAX_BYTES = 16 * 1024 * 1024
STATE_TOPIC_CONFIG = {"cleanup.policy": "compact", "max.message.bytes": str(STATE_MAX_BYTES)}
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 5,
    "retries": 5,
    "max_request_size": 4 * 1024 * 1024,
    "metrics_enabled": False,
}


# --------------------------------------------------------------------------- clients


def security_options(kc: KafkaConfig, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Return kafka-python keyword arguments for the configured security protocol.

    SASL credentials are read from the variables ``kc`` names in ``environ`` (default
    ``os.environ``); every problem is collected, so one error lists them all.

    Raises
    ------
    ConfigError
        If SASL is configured but its environment variables are unset, or a mechanism is
        missing, or an SSL file does not exist.
    """
    env = os.environ if environ is None else environ
    opts: dict[str, Any] = {"security_protocol": kc.security_protocol}
    problems: list[tuple[str, object, str]] = []
    if kc.security_protocol in ("SSL", "SASL_SSL"):
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(kc, key)
            if path is None:
                continue
            if not os.path.exists(path):
                problems.append((f"kafka.{key}", path, "file not found; give the PEM file's path"))
            opts[key] = path
        opts["ssl_check_hostname"] = True
    if kc.security_protocol.startswith("SASL_"):
        if kc.sasl_mechanism is None:
            problems.append(("kafka.sasl_mechanism", None,
                             "SASL needs a mechanism: 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'"))
        user = env.get(kc.sasl_username_env)
        password = env.get(kc.sasl_password_env)
        if not user:
            problems.append(("kafka.sasl_username_env", kc.sasl_username_env,
                             "environment variable is unset; export the SASL user name in it"))
        if not password:
            problems.append(("kafka.sasl_password_env", kc.sasl_password_env,
                             "environment variable is unset; export the SASL password in it"))
        opts.update(sasl_mechanism=kc.sasl_mechanism, sasl_plain_username=user,
                    sasl_plain_password=password)
    elif kc.sasl_mechanism is not None:
        problems.append(("kafka.security_protocol", kc.security_protocol,
                         "sasl_mechanism is set but the protocol is not SASL_*; use "
                         "'SASL_SSL' (or 'SASL_PLAINTEXT' on a trusted network)"))
    if problems:
        source = "kafka"
        raise ConfigError(source, problems)
    return opts


def consumer_options(kc: KafkaConfig, **overrides: Any) -> dict[str, Any]:
    """Return every keyword argument the service's consumer is built with (secrets included).

    ``overrides`` apply last, over :data:`CONSUMER_DEFAULTS` and the security options.
    """
    opts = {"bootstrap_servers": list(kc.bootstrap_servers), "group_id": kc.group_id,
            "max_poll_records": kc.max_poll_records, **CONSUMER_DEFAULTS}
    opts.update(security_options(kc))
    opts.update(overrides)
    return opts


def build_consumer(kc: KafkaConfig, **overrides: Any) -> KafkaConsumer:
    """Build a consumer with auto-commit off; subscribe it yourself (with a rebalance listener)."""
    from kafka import KafkaConsumer

    return KafkaConsumer(**consumer_options(kc, **overrides))


def build_producer(kc: KafkaConfig, **overrides: Any) -> KafkaProducer:
    """Build a producer: :data:`PRODUCER_DEFAULTS` (acks all), security, then ``overrides``."""
    from kafka import KafkaProducer

    opts = {"bootstrap_servers": list(kc.bootstrap_servers), **PRODUCER_DEFAULTS}
    opts.update(security_options(kc))
    opts.update(overrides)
    return KafkaProducer(**opts)


def ensure_topics(kc: KafkaConfig, topics: dict[str, tuple[int, dict[str, str]]]) -> list[str]:
    """Create the topics that do not exist yet: name -> (partitions, topic configs).

    Returns the names this call created (replication factor 1); a topic created meanwhile by
    another process is skipped. A broker that refuses a topic config (e.g. compaction) gets
    the topic without it and a warning; production brokers should be set up by their owner.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=list(kc.bootstrap_servers), **security_options(kc))
    try:
        missing = [t for t in topics if t not in set(admin.list_topics())]
        created = []
        for name in missing:
            parts, configs = topics[name]
            for cfgs in (configs, {}):
                try:
                    admin.create_topics([NewTopic(name, parts, 1, topic_configs=cfgs)])
                    created.append(name)
                    break
                except TopicAlreadyExistsError:
                    break
                except Exception as exc:  # noqa: BLE001 - broker-specific refusals
                    if not cfgs:
                        raise
                    log.warning("topic %s: broker refused configs %s (%s); creating without",
                                name, cfgs, exc)
        return created
    finally:
        admin.close()


def partitions_for(consumer: Any, topic: str, timeout_s: float = 10.0) -> list[int]:
    """Return the sorted partition ids of ``topic``, waiting up to ``timeout_s`` [s] for metadata.

    Raises :class:`StateError` if the topic still has no partitions by then.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        if time.monotonic() > deadline:
            msg = f"topic {topic!r} has no partitions in the broker's metadata; create it"
            raise StateError(msg)
        time.sleep(0.05)


# --------------------------------------------------------------------------- dead letters


class DeadLetters:
    """Write rejected input to the dead-letter topic.

    Value: the raw bytes; key: the source key; headers ``reason``, ``source_topic``,
    ``source_partition``, ``source_offset`` (and ``truncated``, the original length, when
    the raw payload was cut to ``max_bytes``).

    Sends are asynchronous; :meth:`flush` makes them durable (the checkpoint calls it before
    committing offsets) and raises if any failed.
    """

    def __init__(self, producer: KafkaProducer, topic: str, max_bytes: int = 1_000_000):
        self.producer = producer
        self.topic = topic
        self.max_bytes = max_bytes
        self.count = 0
        self._futures: list[Any] = []

    def send(self, raw: bytes | None, reason: str, topic: str, partition: int, offset: int,
             key: bytes | None = None) -> None:
        """Send one rejected record (``None`` as empty bytes; ``reason`` cut to 4000 chars)."""
        raw = raw or b""
        headers = [("reason", reason[:4000].encode()), ("source_topic", topic.encode()),
                   ("source_partition", str(partition).encode()),
                   ("source_offset", str(offset).encode())]
        if len(raw) > self.max_bytes:
            headers.append(("truncated", str(len(raw)).encode()))
            raw = raw[: self.max_bytes]
        self._send((raw, key, headers))
        self.count += 1

    def _send(self, msg: tuple[bytes, bytes | None, list]) -> None:
        raw, key, headers = msg
        self._futures.append((self.producer.send(self.topic, value=raw, key=key,
                                                 headers=headers), msg))

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait up to ``timeout_s`` [s] for every send; re-send failed ones.

        Raises :class:`SinkBackpressure` if any failed or timed out (the checkpoint then does
        not commit, and retries).
        """
        if not self._futures:
            return
        self.producer.flush(timeout=timeout_s)
        entries, self._futures = self._futures, []
        bad = [(f, m) for f, m in entries if not f.is_done or f.failed()]
        if bad:
            f0 = bad[0][0]
            exc = f0.exception if f0.is_done else "timeout"
            for f, m in bad:
                if f.is_done:
                    self._send(m)
                else:
                    self._futures.append((f, m))
            msg = (f"dead-letter topic {self.topic!r}: {len(bad)} send(s) not acknowledged "
                   f"({exc}); re-sent, not committing")
            raise SinkBackpressure(msg, retry_after=1.0)


# --------------------------------------------------------------------------- state topic


@dataclass(slots=True)
class StateRecord:
    """One checkpoint of one source partition: where to resume and the state there."""

    topic: str
    partition: int
    offset: int                # next offset to read; the state reflects every record before it
    sites: list[str]
    state: bytes
    written_ns: int = 0

    def encode(self, group: str) -> bytes:
        """Encode as a JSON header line, then the state zlib-compressed (mostly zeros: ~25x)."""
        head = orjson.dumps({"v": 1, "group": group, "topic": self.topic,
                             "partition": self.partition, "offset": self.offset,
                             "sites": self.sites, "written_ns": self.written_ns, "z": "zlib"})
        return head + b"\n" + zlib.compress(self.state, 1)

    @classmethod
    def decode(cls, value: bytes) -> StateRecord:
        """Decode :meth:`encode`'s bytes; :class:`StateError` if corrupt or not version 1."""
        head, _, state = value.partition(b"\n")
        try:
            h = orjson.loads(head)
            if h.get("z") == "zlib":
                state = zlib.decompress(state)
        except (orjson.JSONDecodeError, zlib.error) as exc:
            msg = f"state record is corrupt ({exc}); delete it to start that partition fresh"
            raise StateError(msg) from None
        if h.get("v") != 1:
            msg = f"state record version {h.get('v')!r} is not 1; upgrade pueflow to read it"
            raise StateError(msg)
        return cls(h["topic"], int(h["partition"]), int(h["offset"]), list(h["sites"]), state,
                   int(h.get("written_ns", 0)))


def state_key(group: str, topic: str, partition: int) -> bytes:
    """Return the state-topic key of one source partition: ``b"group/topic/partition"``."""
    return f"{group}/{topic}/{partition}".encode()


class StateStore:
    """Checkpoints in a (compacted) topic, one key per (group, source topic, partition).

    The record for a key always goes to the same state partition (crc32 of the key), so a
    restore reads one partition, backwards from its end until every wanted key is found.
    Any record found is a valid restart point (sinks were flushed before it was written), so
    a lagging end offset at worst costs some re-reading, never correctness.
    """

    def __init__(self, kc: KafkaConfig, producer: KafkaProducer, group: str):
        self.kc = kc
        self.topic = kc.state_topic
        self.group = group
        self.producer = producer
        self._reader: KafkaConsumer | None = None
        self._n_parts: int | None = None
        self._futures: list[Any] = []

    def _partitions(self) -> int:
        if self._n_parts is None:
            self._n_parts = len(partitions_for(self._get_reader(), self.topic))
        return self._n_parts

    def _get_reader(self) -> KafkaConsumer:
        if self._reader is None:
            self._reader = build_consumer(self.kc, group_id=None, enable_auto_commit=False,
                                          max_poll_records=500, fetch_max_wait_ms=50)
        return self._reader

    def _part_of(self, key: bytes) -> int:
        return zlib.crc32(key) % self._partitions()

    def write(self, rec: StateRecord) -> None:
        """Send a checkpoint (stamping ``written_ns``); :meth:`flush` makes it durable.

        Raises :class:`StateError` if the producer refuses it at once (e.g. too large).
        """
        key = state_key(self.group, rec.topic, rec.partition)
        rec.written_ns = time.time_ns()
        value = rec.encode(self.group)
        try:
            fut = self.producer.send(self.topic, key=key, value=value,
                                     partition=self._part_of(key))
        except Exception as exc:  # noqa: BLE001 - kafka-python raises several kinds here
            msg = (f"cannot write the checkpoint of {rec.topic}/{rec.partition} "
                   f"({len(value)} bytes) to {self.topic!r}: {exc}; if it is too large, raise "
                   "the topic's max.message.bytes or use fewer sites per partition")
            raise StateError(msg) from None
        self._futures.append(fut)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every written record is acknowledged; raise StateError if one failed.

        ``timeout_s`` [s] bounds the producer flush; a write not acknowledged by then failed.
        """
        self.producer.flush(timeout=timeout_s)
        futures, self._futures = self._futures, []
        bad = [f for f in futures if not f.is_done or f.failed()]
        if bad:
            exc = bad[0].exception if bad[0].is_done else "timeout"
            msg = f"state topic {self.topic!r}: {len(bad)} checkpoint write(s) failed ({exc})"
            raise StateError(msg)

    def read(self, tps: Iterable[tuple[str, int]], timeout_s: float = 30.0
             ) -> dict[tuple[str, int], StateRecord]:
        """Return the latest checkpoint of each (topic, partition) that has one.

        Pairs without one are absent from the result. Raises :class:`StateError` if a scan
        takes longer than ``timeout_s`` [s] or a record is corrupt.
        """
        from kafka import TopicPartition

        wanted: dict[int, dict[bytes, tuple[str, int]]] = {}
        for t, p in tps:
            key = state_key(self.group, t, p)
            wanted.setdefault(self._part_of(key), {})[key] = (t, p)
        reader = self._get_reader()
        found: dict[tuple[str, int], StateRecord] = {}
        for sp, keys in wanted.items():
            tp = TopicPartition(self.topic, sp)
            reader.assign([tp])
            end = self._end_offset(reader, tp, timeout_s)
            lo, span = end, 64
            while keys and lo > 0:
                start = max(lo - span, 0)
                got = self._scan(reader, tp, start, lo, keys, timeout_s)
                for key, value in got.items():
                    found[keys.pop(key)] = StateRecord.decode(value)
                lo, span = start, span * 4
        return found

    @staticmethod
    def _end_offset(reader: KafkaConsumer, tp: Any, timeout_s: float) -> int:
        """Return the partition's end offset, from a fetch response's high watermark.

        Brokers' reported end offsets can lag; reading forward to the real end settles it.
        """
        reader.seek_to_end(tp)
        end = reader.position(tp, timeout_ms=int(timeout_s * 1000)) or 0
        deadline = time.monotonic() + timeout_s
        reader.seek(tp, max(end - 1, 0))
        while time.monotonic() < deadline:
            recs = reader.poll(timeout_ms=200).get(tp, [])
            if recs:
                end = max(end, recs[-1].offset + 1)
                continue
            hw = reader.highwater(tp)
            if hw is not None and reader.position(tp) >= hw:
                return max(end, hw)
            if hw is None and end == 0:
                return 0
        return end

    @staticmethod
    def _scan(reader: KafkaConsumer, tp: Any, start: int, stop: int, keys: dict,
              timeout_s: float) -> dict[bytes, bytes]:
        """Last value of each wanted key among offsets [start, stop)."""
        reader.seek(tp, start)
        got: dict[bytes, bytes] = {}
        deadline = time.monotonic() + timeout_s
        pos = start
        while pos < stop:
            if time.monotonic() > deadline:
                msg = (f"state topic {tp.topic!r} partition {tp.partition}: could not read "
                       f"offsets {pos}..{stop} within {timeout_s:.0f} s")
                raise StateError(msg)
            for r in reader.poll(timeout_ms=200).get(tp, []):
                if r.offset >= stop:
                    pos = stop
                    break
                if r.key in keys:
                    got[r.key] = r.value
                pos = r.offset + 1
            # a compacted topic has holes: the fetch position jumps over them
            pos = max(pos, reader.position(tp) or 0)
        return got

    def close(self) -> None:
        """Close the reader consumer, if one was opened (the producer is the caller's)."""
        if self._reader is not None:
            self._reader.close(autocommit=False)
            self._reader = None
