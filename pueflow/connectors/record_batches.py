"""Numba scan of Kafka record batches (message format v2), and the block of records it yields.

kafka-python parses every record of a fetch in Python (varints, a ``ConsumerRecord`` each):
~6 us a message, most of a bare consumer's time. :func:`scan_records` reads all records of
a ``DefaultRecordBatch`` in one numba pass into arrays (offset, timestamp, key and value
spans, header count), a compressed batch once its records are decompressed;
:class:`RecordBlock` carries them with the buffer they index, so the consume service
decodes payloads straight from the fetched (or decompressed) bytes.

Layout (KIP-98): a 61-byte header (baseOffset i64, batchLength i32, partitionLeaderEpoch
i32, magic i8, crc u32, attributes i16, lastOffsetDelta i32, baseTimestamp i64,
maxTimestamp i64, producerId i64, producerEpoch i16, baseSequence i32, recordCount i32,
big-endian), then per record zigzag varints: length, attributes, timestampDelta,
offsetDelta, keyLength, key, valueLength, value, headerCount, headers (key length, key,
value length, value). A negative key or value length is null, as in Kafka's Java client.
The record attributes are read as a varint, as kafka-python reads them (Kafka writes one
byte, always 0), so both parsers agree on every input.

Malformed bytes (a varint past the end or over 10 bytes, a length past the end of its
record, a record whose fields do not fill its length, bytes left after the last record)
or a header key that is not UTF-8 (kafka-python decodes it) give an error code and position,
never a read outside the buffer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from pueflow.connectors.lp_numbers import utf8_ok
from pueflow.jit import njit

#: struct layout of the 61-byte batch header (kafka-python's DefaultRecordBase.HEADER_STRUCT)
HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size
#: batch attribute bits
CODEC_MASK = 0x07
LOG_APPEND_TIME = 0x08
TRANSACTIONAL = 0x10
CONTROL = 0x20

OK = 0
#: scan error codes -> what they mean (the position is where the scan stopped)
ERRORS = {
    1: "varint runs past the end of its record",
    2: "varint longer than 10 bytes",
    3: "record length is negative or runs past the end of the batch",
    4: "key, value or header runs past the end of its record",
    5: "negative header count",
    6: "negative header key length",
    7: "record fields do not fill the record's length",
    8: "bytes left after the last record",
    9: "record count is negative or larger than the batch",
    10: "header key is not UTF-8",
}


class RecordBatchError(ValueError):
    """A record batch whose bytes are not a valid message-format-v2 batch."""


@njit
def _varint(buf, pos, end):
    """Zigzag varint at ``pos``: (value, next position); position -1/-2 if past ``end``/too long."""
    result = np.uint64(0)
    shift = np.uint64(0)
    while True:
        if pos >= end:
            return np.int64(0), -1
        b = buf[pos]
        pos += 1
        result |= np.uint64(b & 0x7F) << shift
        if b < 0x80:
            break
        shift += np.uint64(7)
        if shift >= np.uint64(64):
            return np.int64(0), -2
    half = np.int64(result >> np.uint64(1))
    if result & np.uint64(1):
        return -half - 1, pos
    return half, pos


@njit
def _span(buf, p, end):
    """Read the nullable byte string at ``p``: (start, length or -1, next position or < 0)."""
    n, p = _varint(buf, p, end)
    if p < 0:
        return 0, -1, p
    if n < 0:
        return p, -1, p
    if n > end - p:
        return p, -1, -4
    return p, n, p + n


@njit
def _scan(buf, start, count, base_offset, base_ts, log_append, max_ts):
    end = len(buf)
    n = max(count, 0)
    if count < 0 or count > (end - start) // 7:  # a record takes at least 7 bytes
        n = 0
    offs = np.empty(n, np.int64)
    ts = np.empty(n, np.int64)
    k0 = np.empty(n, np.int64)
    kn = np.empty(n, np.int64)
    v0 = np.empty(n, np.int64)
    vn = np.empty(n, np.int64)
    hc = np.empty(n, np.int32)
    size = 0
    if n != count:
        return offs, ts, k0, kn, v0, vn, hc, size, 9, start
    p = start
    for r in range(n):
        length, q = _varint(buf, p, end)
        if q < 0:
            return offs, ts, k0, kn, v0, vn, hc, size, -q, p
        if length < 0 or length > end - q:
            return offs, ts, k0, kn, v0, vn, hc, size, 3, p
        p = q
        rend = p + length
        _, p = _varint(buf, p, rend)  # attributes
        if p < 0:
            return offs, ts, k0, kn, v0, vn, hc, size, -p, rend
        dt, p = _varint(buf, p, rend)
        if p < 0:
            return offs, ts, k0, kn, v0, vn, hc, size, -p, rend
        do, p = _varint(buf, p, rend)
        if p < 0:
            return offs, ts, k0, kn, v0, vn, hc, size, -p, rend
        k0[r], kn[r], p = _span(buf, p, rend)
        if p < 0:
            return offs, ts, k0, kn, v0, vn, hc, size, -p, rend
        v0[r], vn[r], p = _span(buf, p, rend)
        if p < 0:
            return offs, ts, k0, kn, v0, vn, hc, size, -p, rend
        nh, p = _varint(buf, p, rend)
        if p < 0:
            return offs, ts, k0, kn, v0, vn, hc, size, -p, rend
        if nh < 0:
            return offs, ts, k0, kn, v0, vn, hc, size, 5, p
        for _ in range(nh):
            hk, p = _varint(buf, p, rend)
            if p < 0:
                return offs, ts, k0, kn, v0, vn, hc, size, -p, rend
            if hk < 0:
                return offs, ts, k0, kn, v0, vn, hc, size, 6, p
            if hk > rend - p:
                return offs, ts, k0, kn, v0, vn, hc, size, 4, p
            if not utf8_ok(buf, p, p + hk):
                return offs, ts, k0, kn, v0, vn, hc, size, 10, p
            _, _, p = _span(buf, p + hk, rend)
            if p < 0:
                return offs, ts, k0, kn, v0, vn, hc, size, -p, rend
        if p != rend:
            return offs, ts, k0, kn, v0, vn, hc, size, 7, p
        offs[r] = base_offset + do
        ts[r] = max_ts if log_append else base_ts + dt
        hc[r] = nh
        size += length
    if p != end:
        return offs, ts, k0, kn, v0, vn, hc, size, 8, p
    return offs, ts, k0, kn, v0, vn, hc, size, 0, p


@dataclass(slots=True)
class Records:
    """The records of one batch, as arrays (offsets [-], timestamps [ms], byte spans).

    Attributes
    ----------
    offsets, timestamps : array [int64]
        Offset and timestamp [ms since 1970] of each record.
    key_start, key_len, value_start, value_len : array [int64]
        Byte spans in the batch buffer; length -1 is a null key or value.
    header_count : array [int32]
        Headers of each record.
    size : int
        Sum of the records' lengths [bytes] (kafka-python's ``bytes_read``).
    """

    offsets: np.ndarray
    timestamps: np.ndarray
    key_start: np.ndarray
    key_len: np.ndarray
    value_start: np.ndarray
    value_len: np.ndarray
    header_count: np.ndarray
    size: int


def scan_records(buf: np.ndarray, body: np.ndarray | None = None) -> Records:
    """Parse every record of one v2 batch (header included in ``buf``).

    Parameters
    ----------
    buf : array [uint8]
        Exactly one batch: its 61-byte header, then its records (compressed or not).
    body : array [uint8], optional
        A compressed batch's records, decompressed (what follows the header once the
        batch's codec has been undone); required when the header names a codec, and then
        the spans index into it rather than into ``buf``.

    Returns
    -------
    Records
        The records in batch order.

    Raises
    ------
    RecordBatchError
        If the bytes are not a complete v2 batch (or a compressed one comes without its
        ``body``); the message says what and at which byte.
    """
    if len(buf) < HEADER_SIZE:
        msg = f"record batch of {len(buf)} bytes is shorter than the {HEADER_SIZE}-byte header"
        raise RecordBatchError(msg)
    h = HEADER.unpack(buf[:HEADER_SIZE].tobytes())
    base, length, magic, attrs, base_ts, max_ts, count = h[0], h[1], h[3], h[5], h[7], h[8], h[12]
    codec = attrs & CODEC_MASK
    if magic != 2 or (codec and body is None) or length + 12 != len(buf):
        msg = (f"record batch at offset {base}: magic {magic}, codec {codec}, length {length} "
               f"+ 12 vs {len(buf)} bytes; only v2 batches are scanned, a compressed one "
               f"with its decompressed records")
        raise RecordBatchError(msg)
    data, start = (body, 0) if codec and body is not None else (buf, HEADER_SIZE)
    offs, ts, k0, kn, v0, vn, hc, size, err, pos = _scan(
        data, start, count, base, base_ts, bool(attrs & LOG_APPEND_TIME), max_ts)
    if err:
        where = "decompressed records" if codec else "batch"
        msg = (f"record batch at offset {base}: {ERRORS[err]} (byte {pos} of {len(data)} of "
               f"the {where})")
        raise RecordBatchError(msg)
    return Records(offs, ts, k0, kn, v0, vn, hc, int(size))


@njit
def gather(out, pos, buf, starts, lens):
    """Copy ``buf[starts[i]:starts[i] + lens[i]]`` back to back into ``out`` from ``pos``.

    Returns the position after the last byte written.
    """
    for i in range(len(starts)):
        s = starts[i]
        for j in range(lens[i]):
            out[pos + j] = buf[s + j]
        pos += lens[i]
    return pos


class RecordBlock:
    """Consecutive records of one partition from one batch, in place of ConsumerRecords.

    Parameters
    ----------
    topic : str
    partition : int
    buf : array [uint8]
        The batch's bytes (spans index into it).
    records : Records
        The records (a slice of a batch's when split).
    """

    __slots__ = ("buf", "partition", "records", "topic")

    def __init__(self, topic: str, partition: int, buf: np.ndarray, records: Records):
        self.topic = topic
        self.partition = partition
        self.buf = buf
        self.records = records

    def __len__(self) -> int:
        return len(self.records.offsets)

    def __repr__(self) -> str:
        return (f"RecordBlock({self.topic}/{self.partition}, offsets {self.offset}.."
                f"{self.last_offset}, {len(self)} records)")

    @property
    def offset(self) -> int:
        """Offset of the first record."""
        return int(self.records.offsets[0])

    @property
    def last_offset(self) -> int:
        """Offset of the last record."""
        return int(self.records.offsets[-1])

    def value(self, i: int) -> bytes | None:
        """Value of record ``i`` (None if null)."""
        r = self.records
        n = int(r.value_len[i])
        return None if n < 0 else self.buf[r.value_start[i]:r.value_start[i] + n].tobytes()

    def key(self, i: int) -> bytes | None:
        """Key of record ``i`` (None if null)."""
        r = self.records
        n = int(r.key_len[i])
        return None if n < 0 else self.buf[r.key_start[i]:r.key_start[i] + n].tobytes()

    def select(self, sl: slice) -> RecordBlock:
        """Return the records ``sl`` of this block (array views; the buffer is shared)."""
        r = self.records
        part = Records(r.offsets[sl], r.timestamps[sl], r.key_start[sl], r.key_len[sl],
                       r.value_start[sl], r.value_len[sl], r.header_count[sl], 0)
        return RecordBlock(self.topic, self.partition, self.buf, part)
