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
from typing import TYPE_CHECKING, Any

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


class TopicWriter(DeadLetters):
    """Write rows to a topic with the dead letters' delivery rules (:meth:`flush` = durable).

    The consume service publishes closed site windows to the KPI topic with it, inside the
    checkpoint: the topic is flushed before the state records are written.
    """

    def send_value(self, value: bytes, key: bytes | None = None) -> None:
        """Send one record (asynchronous until :meth:`flush`)."""
        self._send((value, key, []))
        self.count += 1
