"""FastPartitionRecords against kafka-python's own PartitionRecords on the same fetched bytes.

Fetch responses are built with kafka-python's batch builders (plain and gzip v2 batches,
legacy v1 message sets, transactional batches), both parsers read them from the same fetch
offset with the same ``take`` sizes, and every take must return the same messages and leave
the same ``next_fetch_offset``.
"""

from __future__ import annotations

import logging
import struct
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords
from kafka.structs import TopicPartition

from pueflow.connectors import kafka_batches
from pueflow.connectors.kafka_batches import FastPartitionRecords
from pueflow.connectors.record_batches import RecordBlock

TP = TopicPartition("t", 3)
value = st.one_of(st.none(), st.binary(max_size=40))
batch = st.tuples(st.sampled_from(["plain", "plain", "gzip", "legacy", "txn"]),
                  st.lists(st.tuples(st.one_of(st.none(), st.binary(max_size=5)), value),
                           min_size=1, max_size=12),
                  st.integers(0, 2))  # offset gap before the batch (compaction)


def fetch_bytes(batches) -> tuple[bytes, int]:
    out = bytearray()
    offset = 0
    for kind, recs, gap in batches:
        offset += gap
        if kind == "legacy":
            b = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
            for i, (k, v) in enumerate(recs):
                b.append(offset + i, timestamp=1000 + i, key=k, value=v)
            out += b.build()
        else:
            b = DefaultRecordBatchBuilder(
                magic=2, compression_type=1 if kind == "gzip" else 0,
                is_transactional=kind == "txn", producer_id=7 if kind == "txn" else -1,
                producer_epoch=0 if kind == "txn" else -1,
                base_sequence=0 if kind == "txn" else -1, batch_size=1 << 20)
            for i, (k, v) in enumerate(recs):
                b.append(i, timestamp=1000 + i, key=k, value=v, headers=[("h", b"x")] * (i % 2))
            buf = bytearray(b.build())
            struct.pack_into(">q", buf, 0, offset)
            out += buf
        offset += len(recs)
    return bytes(out), offset


def flat(items) -> list[tuple]:
    out = []
    for it in items:
        if isinstance(it, RecordBlock):
            r = it.records
            assert (it.topic, it.partition) == (TP.topic, TP.partition)
            out += [(int(r.offsets[i]), int(r.timestamps[i]), it.key(i), it.value(i))
                    for i in range(len(it))]
        else:
            out.append((it.offset, it.timestamp, it.key, it.value))
    return out


def run(cls, data: bytes, fetch_offset: int, takes: list[int], **kw):
    part = cls(fetch_offset, TP, MemoryRecords(data), **kw)
    seen = []
    for n in [*takes, None]:
        got = part.take(n) if part else []  # the fetcher takes only from an undrained part
        seen.append((flat(got), len(got), part.next_fetch_offset))
    return seen, part.records_read, bool(part)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(batch, min_size=1, max_size=5), st.data())
def test_same_messages_and_positions_as_kafka_python(batches, data):
    raw, end = fetch_bytes(batches)
    fetch_offset = data.draw(st.integers(0, end))
    takes = data.draw(st.lists(st.integers(1, 15), max_size=6))
    isolation = data.draw(st.sampled_from([0, 1]))
    lib = run(Fetcher.PartitionRecords, raw, fetch_offset, takes, isolation_level=isolation)
    fast = run(FastPartitionRecords, raw, fetch_offset, takes, isolation_level=isolation)
    assert [(m, p) for m, _, p in fast[0]] == [(m, p) for m, _, p in lib[0]]
    # the fetcher subtracts len(take) from the poll's budget: messages, not blocks
    assert [n for _, n, _ in fast[0][:-1]] == [len(m) for m, _, _ in lib[0][:-1]]
    assert fast[2] == lib[2]  # drained alike


@pytest.mark.parametrize("kind", ["plain", "gzip"])
def test_a_batch_is_one_block_and_a_take_cuts_it(kind):
    raw, _ = fetch_bytes([(kind, [(None, b"v%d" % i) for i in range(10)], 0)])
    assert raw[22] & 0x07 == (kind == "gzip")  # the builder kept the codec
    part = FastPartitionRecords(2, TP, MemoryRecords(raw))
    first = part.take(3)
    assert len(first) == 3
    assert [type(x) for x in first] == [RecordBlock]
    assert flat(first)[0][0] == 2
    assert part.next_fetch_offset == 5
    rest = part.take(100)
    assert [x[0] for x in flat(rest)] == list(range(5, 10))
    assert [x[3] for x in flat(rest)] == [b"v%d" % i for i in range(5, 10)]
    assert part.next_fetch_offset == 10
    assert part.records_read == 10
    assert not part


def test_bad_crc_raises_like_kafka_python():
    raw, _ = fetch_bytes([("plain", [(None, b"hello")], 0)])
    bad = bytearray(raw)
    bad[-2] ^= 0xFF
    for cls in (Fetcher.PartitionRecords, FastPartitionRecords):
        part = cls(0, TP, MemoryRecords(bytes(bad)), check_crcs=True)
        with pytest.raises(CorruptRecordError, match="failed crc check"):
            part.take(10)


def test_corrupt_batch_without_crc_check_goes_to_kafka_python(caplog):
    raw, _ = fetch_bytes([("plain", [(None, b"hello"), (None, b"world")], 0)])
    bad = bytearray(raw)
    bad[61] = 0x7F  # first record's length: far past the batch
    caplog.set_level(logging.WARNING)
    part = FastPartitionRecords(0, TP, MemoryRecords(bytes(bad)), check_crcs=False)
    with pytest.raises(CorruptRecordError):  # kafka-python's parser refuses this batch
        part.take(10)
    assert "kafka-python parses this batch" in caplog.text


def consumer(**config):
    """The parts of a KafkaConsumer that install() touches (no client, no network)."""
    return SimpleNamespace(_fetcher=SimpleNamespace(PartitionRecords=Fetcher.PartitionRecords),
                           config={"key_deserializer": None, "value_deserializer": None, **config})


def test_install_is_per_consumer_and_refuses_deserializers(caplog):
    a, b = consumer(), consumer(value_deserializer=bytes)
    assert kafka_batches.install(a)
    assert a._fetcher.PartitionRecords is FastPartitionRecords
    assert Fetcher.PartitionRecords is not FastPartitionRecords
    caplog.set_level(logging.WARNING)
    assert not kafka_batches.install(b)
    assert "deserializer" in caplog.text
    assert "fast_batches" in caplog.text
    assert b._fetcher.PartitionRecords is Fetcher.PartitionRecords


def test_install_refuses_another_kafka_python(monkeypatch, caplog):
    monkeypatch.setattr(kafka_batches.kafka, "__version__", "3.1.0")
    caplog.set_level(logging.WARNING)
    c = consumer()
    assert not kafka_batches.install(c)
    assert "3.1.0 is not the tested" in caplog.text
    assert c._fetcher.PartitionRecords is Fetcher.PartitionRecords
