"""PollColumns: a poll of blocks and records as per-message columns and one payload buffer."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.structs import TopicPartition

from pueflow.connectors.kafka_poll import PollColumns
from pueflow.connectors.record_batches import RecordBlock, scan_records

Rec = namedtuple("Rec", "topic partition offset key value")


def block(topic, partition, base, values):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(i, timestamp=1, key=b"k%d" % i, value=v, headers=[])
    buf = bytearray(b.build())
    buf[0:8] = base.to_bytes(8, "big")
    arr = np.frombuffer(bytes(buf), np.uint8)
    return RecordBlock(topic, partition, arr, scan_records(arr))


def test_columns_payloads_and_messages():
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    blk = block("t", 0, 10, [b"aa", None, b"ccc"]).select(slice(1, None))  # offsets 11, 12
    recs = [Rec("t", 0, 13, None, b"dd"), Rec("t", 0, 14, b"x", b"")]
    polled = {a: [blk, *recs], b: [block("t", 1, 5, [b"e", b"ff"])]}
    # what a per-message loop over the same messages gives, by hand
    want = [(0, 11, None, b"k1"), (0, 12, b"ccc", b"k2"), (0, 13, b"dd", None), (0, 14, b"", b"x"),
            (1, 5, b"e", b"k0"), (1, 6, b"ff", b"k1")]
    poll = PollColumns(polled, [a, b])
    assert len(poll) == 6
    assert poll.tp.tolist() == [w[0] for w in want]
    assert poll.offset.tolist() == [w[1] for w in want]
    assert poll.value_len.tolist() == [-1 if w[2] is None else len(w[2]) for w in want]
    assert poll.counts.tolist() == [4, 2]
    assert poll.last_offsets().tolist() == [14, 6]
    for i, w in enumerate(want):
        m = poll.message(i)
        assert (m.partition, m.offset, m.value, m.key) == w
    keep = poll.value_len >= 0
    buf, ends = poll.payloads(keep)
    vals = [w[2] for w in want if w[2] is not None]
    assert buf.tobytes() == b"".join(vals)
    assert ends.tolist() == np.cumsum([len(v) for v in vals]).tolist()


def test_only_some_partitions_and_empty():
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    polled = {a: [Rec("t", 0, 3, None, b"v")], b: [block("t", 1, 0, [b"w"])]}
    poll = PollColumns(polled, [b])
    assert poll.offset.tolist() == [0]
    assert poll.payloads()[0].tobytes() == b"w"
    empty = PollColumns({}, [])
    assert len(empty) == 0
    assert empty.payloads()[0].size == 0
