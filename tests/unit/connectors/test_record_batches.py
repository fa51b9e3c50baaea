"""The numba record-batch scan against kafka-python's own batch builder and parser.

kafka-python's ``DefaultRecordBatchBuilder`` writes the batches and its ``DefaultRecordBatch``
reads them back: that pure-Python parser is the independent reference the scan must agree
with on every input, valid or not.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from pueflow.connectors.record_batches import (
    RecordBatchError,
    RecordBlock,
    gather,
    scan_records,
)

blobs = st.one_of(st.none(), st.binary(max_size=300))
header = st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=20)))
record = st.tuples(blobs, blobs, st.lists(header, max_size=3),
                   st.integers(-2**40, 2**40), st.integers(0, 2**31 - 1))


def build(recs, base_offset=0, log_append=False, base_ts=None) -> bytes:
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 30)
    t0 = 1_700_000_000_000 if base_ts is None else base_ts
    for i, (key, value, headers, dt, _) in enumerate(recs):
        assert b.append(i, timestamp=t0 + dt if i else t0, key=key, value=value,
                        headers=headers) is not None
    buf = bytearray(b.build())
    struct.pack_into(">q", buf, 0, base_offset)  # set by the broker; outside the CRC
    if log_append:
        buf[22] |= 0x08  # attributes (low byte): timestamp type = LogAppendTime
    return bytes(buf)


def reference(buf: bytes) -> list[tuple]:
    return [(r.offset, r.timestamp, r.key, r.value, len(r.headers))
            for r in DefaultRecordBatch(buf)]


def scanned(buf: bytes) -> list[tuple]:
    arr = np.frombuffer(buf, np.uint8)
    r = scan_records(arr)
    block = RecordBlock("t", 0, arr, r)
    return [(int(r.offsets[i]), int(r.timestamps[i]), block.key(i), block.value(i),
             int(r.header_count[i])) for i in range(len(block))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record, min_size=1, max_size=40), st.integers(0, 2**62),
       st.booleans())
def test_scan_matches_kafka_python(recs, base_offset, log_append):
    buf = build(recs, base_offset, log_append)
    assert scanned(buf) == reference(buf)


def test_sizes_and_spans_by_hand():
    buf = build([(b"k", b"hello", [], 0, 0), (None, None, [("a", b"b")], 5, 0)], 100)
    r = scan_records(np.frombuffer(buf, np.uint8))
    assert r.offsets.tolist() == [100, 101]
    assert r.key_len.tolist() == [1, -1]
    assert r.value_len.tolist() == [5, -1]
    assert buf[r.value_start[0]:r.value_start[0] + 5] == b"hello"
    assert r.size == sum(rec.size_in_bytes for rec in DefaultRecordBatch(buf))


def _library(buf: bytes):
    try:
        return reference(buf)
    except CorruptRecordError:
        return "error"


def _ours(buf: bytes):
    try:
        return scanned(buf)
    except RecordBatchError:
        return "error"


def test_every_truncation_is_an_error():
    buf = build([(b"key", b"value" * 10, [("h", b"v")], i, 0) for i in range(4)])
    for n in range(len(buf)):
        cut = bytearray(buf[:n])
        with pytest.raises(RecordBatchError):
            scanned(bytes(cut))
        if n >= 61:  # with the header's length fixed, the record scan itself must stop
            struct.pack_into(">i", cut, 8, n - 12)
            with pytest.raises(RecordBatchError, match="record batch at offset 0"):
                scanned(bytes(cut))
            assert _library(bytes(cut)) == "error"


@settings(max_examples=400, deadline=None)
@given(st.lists(record, min_size=1, max_size=6), st.data())
def test_corrupt_bytes_agree_with_kafka_python(recs, data):
    buf = bytearray(build(recs))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(61, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    assert _ours(bytes(buf)) == _library(bytes(buf))


def test_bad_varints_and_counts():
    buf = bytearray(build([(b"k", b"v", [], 0, 0)]))
    bad = bytes(buf[:61]) + b"\xff" * 11
    cut = bytearray(bad)
    struct.pack_into(">i", cut, 8, len(cut) - 12)
    with pytest.raises(RecordBatchError, match="longer than 10 bytes"):
        scanned(bytes(cut))
    struct.pack_into(">i", buf, 57, 10**6)  # record count past the bytes
    with pytest.raises(RecordBatchError, match="record count"):
        scanned(bytes(buf))
    more = bytearray(build([(b"key", b"value" * 4, [], 0, 0)] * 2))
    struct.pack_into(">i", more, 57, 3)  # one record more than there is
    with pytest.raises(RecordBatchError, match="runs past"):
        scanned(bytes(more))
    struct.pack_into(">i", buf, 57, 0)  # the record is left over
    with pytest.raises(RecordBatchError, match="bytes left"):
        scanned(bytes(buf))


def build_gzip(recs, base_offset=0) -> bytes:
    b = DefaultRecordBatchBuilder(magic=2, compression_type=1, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 30)
    for i, (key, value, headers, dt, _) in enumerate(recs):
        assert b.append(i, timestamp=1_700_000_000_000 + dt, key=key, value=value,
                        headers=headers) is not None
    buf = bytearray(b.build())
    struct.pack_into(">q", buf, 0, base_offset)
    return bytes(buf)


def scanned_gzip(buf: bytes) -> list[tuple]:
    """The scan over the records as Python's own gzip module decompresses them.

    (kafka-python's builder writes a batch uncompressed when gzip would make it larger.)
    """
    if not buf[22] & 0x07:
        return scanned(buf)
    body = np.frombuffer(gzip.decompress(buf[61:]), np.uint8)
    r = scan_records(np.frombuffer(buf, np.uint8), body)
    block = RecordBlock("t", 0, body, r)
    return [(int(r.offsets[i]), int(r.timestamps[i]), block.key(i), block.value(i),
             int(r.header_count[i])) for i in range(len(block))]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record, min_size=1, max_size=40), st.integers(0, 2**62))
def test_compressed_scan_matches_kafka_python(recs, base_offset):
    # a compressible first record, so that the builder keeps gzip for the batch
    buf = build_gzip([(None, b"telemetry " * 30, [], 0, 0), *recs], base_offset)
    assert buf[22] & 0x07 == 1
    assert scanned_gzip(buf) == reference(buf)


def test_compressed_needs_its_records_and_names_them_in_errors():
    buf = build_gzip([(None, b"x" * 100, [], 0, 0), (b"k", b"y", [], 1, 0)])
    assert buf[22] & 0x07 == 1  # gzip
    with pytest.raises(RecordBatchError, match="codec 1"):
        scanned(buf)  # no decompressed records given
    body = gzip.decompress(buf[61:])
    with pytest.raises(RecordBatchError, match="decompressed records"):
        scan_records(np.frombuffer(buf, np.uint8), np.frombuffer(body[:-3], np.uint8))


def test_gather_and_select():
    buf = build([(None, b"ab", [], 0, 0), (None, None, [], 0, 0), (None, b"cde", [], 0, 0)], 7)
    arr = np.frombuffer(buf, np.uint8)
    block = RecordBlock("t", 3, arr, scan_records(arr))
    r = block.records
    keep = r.value_len >= 0
    out = np.zeros(10, np.uint8)
    end = gather(out, 1, arr, r.value_start[keep], r.value_len[keep])
    assert (end, out[1:end].tobytes()) == (6, b"abcde")
    tail = block.select(slice(1, None))
    assert (len(tail), tail.offset, tail.last_offset, tail.value(0), tail.value(1)) == (
        2, 8, 9, None, b"cde")
