"""An in-memory stand-in for the kafka-python clients the service uses (unit tests only).

One :class:`FakeBroker` holds topics as lists of records per partition; :class:`FakeConsumer`
and :class:`FakeProducer` implement just the calls :mod:`pueflow.connectors.kafka` and the
service make. A consumer with a group owns every partition of its topics and calls its
rebalance listener on the first poll and on close, as one group member would.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

Record = namedtuple("Record", "topic partition offset key value headers timestamp")


@dataclass
class FakeBroker:
    partitions: dict[str, int] = field(default_factory=dict)
    log: dict[TopicPartition, list[Record]] = field(default_factory=dict)
    committed: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)
    events: list[tuple] = field(default_factory=list)
    fail_sends: int = 0

    def create(self, topic: str, n: int) -> None:
        self.partitions.setdefault(topic, n)
        for p in range(self.partitions[topic]):
            self.log.setdefault(TopicPartition(topic, p), [])

    def append(self, topic: str, value: bytes | None, key: bytes | None = None,
               partition: int | None = None, headers=None) -> Record:
        if topic not in self.partitions:
            self.create(topic, 1)
        if partition is None:
            partition = (sum(key) if key else 0) % self.partitions[topic]
        tp = TopicPartition(topic, partition)
        rec = Record(topic, partition, len(self.log[tp]), key, value, headers or [], 0)
        self.log[tp].append(rec)
        return rec


class FakeFuture:
    def __init__(self, ok: bool, value: Any = None):
        self.is_done = True
        self._ok = ok
        self.value = value
        self.exception = None if ok else RuntimeError("broker refused")

    def failed(self) -> bool:
        return not self._ok


class FakeProducer:
    def __init__(self, broker: FakeBroker, **_: Any):
        self.broker = broker

    def send(self, topic, value=None, key=None, headers=None, partition=None):
        if self.broker.fail_sends > 0:
            self.broker.fail_sends -= 1
            return FakeFuture(False)
        rec = self.broker.append(topic, value, key, partition, headers)
        self.broker.events.append(("produce", topic))
        return FakeFuture(True, rec)

    def flush(self, timeout=None):
        return None

    def close(self, timeout=None):
        return None


class FakeConsumer:
    def __init__(self, broker: FakeBroker, group_id: str | None = None,
                 max_poll_records: int = 500, **_: Any):
        self.broker = broker
        self.group = group_id
        self.max_poll_records = max_poll_records
        self.listener = None
        self.topics: list[str] = []
        self.assigned: list[TopicPartition] = []
        self.pos: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self._joined = False

    # group membership
    def subscribe(self, topics, listener=None):
        self.topics, self.listener = list(topics), listener

    def poll(self, timeout_ms=0, max_records=None):
        if self.topics and not self._joined:
            self._joined = True
            self.assigned = [tp for tp in self.broker.log if tp.topic in self.topics]
            committed = self.broker.committed.get(self.group, {})
            self.pos = {tp: committed.get(tp, 0) for tp in self.assigned}
            if self.listener is not None:
                self.listener.on_partitions_assigned(set(self.assigned))
        out: dict[TopicPartition, list[Record]] = {}
        budget = max_records or self.max_poll_records
        for tp in self.assigned:
            if tp in self.paused or budget <= 0:
                continue
            recs = self.broker.log[tp][self.pos[tp]: self.pos[tp] + budget]
            if recs:
                out[tp] = recs
                self.pos[tp] += len(recs)
                budget -= len(recs)
        return out

    def assignment(self):
        return set(self.assigned)

    def assign(self, tps):
        self.assigned = list(tps)
        for tp in tps:
            self.pos.setdefault(tp, 0)

    def pause(self, *tps):
        self.paused |= set(tps)

    def resume(self, *tps):
        self.paused -= set(tps)

    def seek(self, tp, offset):
        self.pos[tp] = offset

    def seek_to_end(self, *tps):
        for tp in tps or self.assigned:
            self.pos[tp] = len(self.broker.log.get(tp, []))

    def position(self, tp, timeout_ms=None):
        return self.pos.get(tp)

    def highwater(self, tp):
        return len(self.broker.log.get(tp, []))

    def partitions_for_topic(self, topic):
        n = self.broker.partitions.get(topic)
        return set(range(n)) if n else None

    def commit(self, offsets):
        self.broker.events.append(("commit", dict(offsets)))
        c = self.broker.committed.setdefault(self.group, {})
        for tp, om in offsets.items():
            c[tp] = om.offset

    def committed(self, tp):
        return self.broker.committed.get(self.group, {}).get(tp)

    def close(self, autocommit=True):
        if self.listener is not None and self.assigned and self.topics:
            self.listener.on_partitions_revoked(set(self.assigned))
        self.assigned = []


def install(monkeypatch, broker: FakeBroker) -> None:
    """Route :mod:`pueflow.connectors.kafka`'s client builders to ``broker``."""
    from pueflow.connectors import kafka as kc
    from pueflow.connectors import kafka_state as ks

    def build_consumer(kcfg, **over):
        opts = kc.consumer_options(kcfg, **over)
        return FakeConsumer(broker, group_id=opts.get("group_id"),
                            max_poll_records=opts.get("max_poll_records", 500))

    def ensure_topics(kcfg, topics):
        for name, (n, _) in topics.items():
            broker.create(name, n)
        return list(topics)

    monkeypatch.setattr(kc, "build_consumer", build_consumer)
    monkeypatch.setattr(ks, "build_consumer", build_consumer)
    monkeypatch.setattr(kc, "build_producer", lambda kcfg, **over: FakeProducer(broker))
    monkeypatch.setattr(kc, "ensure_topics", ensure_topics)
