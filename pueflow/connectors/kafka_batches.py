"""Record batches as blocks: kafka-python's fetch parsing with the per-record Python taken out.

:func:`install` gives one consumer a :class:`FastPartitionRecords` (an instance attribute
of its fetcher, never a global patch). For a message-format-v2 data batch it yields one
:class:`~pueflow.connectors.record_batches.RecordBlock` per batch, its records parsed by
the numba scan (a compressed batch is first decompressed by kafka-python's own codecs:
gzip, snappy, lz4, zstd, one call a batch); every other batch (magic 0/1, control, any
batch of a producer id under ``read_committed``, or one the scan refuses) goes through
kafka-python's own ``PartitionRecords`` unchanged, and its ConsumerRecords come out in order between
the blocks. The fetch bookkeeping is kafka-python's: records before the fetch offset are
skipped (a block is cut), ``next_fetch_offset``, ``records_read``, ``bytes_read`` and
``leader_epoch`` are kept, the batch CRC is checked when ``check_crcs`` is on.

``max_poll_records`` counts messages: :meth:`FastPartitionRecords.take` cuts a block at the
limit (the rest is returned first by the next poll) and reports the messages it returned as
its length, which is what the fetcher subtracts from the poll's budget.

Only :meth:`KafkaConsumer.poll` sees blocks; a consumer with blocks must not be iterated.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import kafka
import numpy as np
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch

from pueflow.connectors.record_batches import (
    CODEC_MASK,
    CONTROL,
    RecordBatchError,
    RecordBlock,
    scan_records,
)

log = logging.getLogger(__name__)

#: the kafka-python minor whose fetcher internals this module was written and tested against
TESTED_VERSION = "3.0."
_Library = Fetcher.PartitionRecords
_INIT_ARGS = ["self", "fetch_offset", "tp", "records", "key_deserializer", "value_deserializer",
              "check_crcs", "isolation_level", "aborted_transactions", "metric_aggregator",
              "on_drain"]
_READ_COMMITTED = 1  # kafka.consumer.fetcher.IsolationLevel.READ_COMMITTED


class _Taken(list):
    """Items of one :meth:`FastPartitionRecords.take`; its length is their message count."""

    messages = 0

    def __len__(self) -> int:
        return self.messages


class _OneBatch:
    """A ``MemoryRecords`` stand-in holding one batch, for kafka-python's own parser."""

    def __init__(self, batch: Any):
        self._batch = batch

    def next_batch(self) -> Any:
        batch, self._batch = self._batch, None
        return batch


class FastPartitionRecords(Fetcher.PartitionRecords):
    """kafka-python's ``Fetcher.PartitionRecords`` yielding a block per plain v2 batch.

    Parameters are those of kafka-python's class.
    """

    def __init__(self, fetch_offset, tp, records, key_deserializer=None, value_deserializer=None,
                 **kwargs):
        self._tail: RecordBlock | None = None
        super().__init__(fetch_offset, tp, records, key_deserializer, value_deserializer, **kwargs)

    def drain(self):
        """Drop what is left (kafka-python's drain), a cut block's rest included."""
        self._tail = None
        super().drain()

    def take(self, n=None):
        """Return up to ``n`` messages: blocks (cut at the limit) and ConsumerRecords."""
        self._maybe_raise_next_inline_exception()
        out = _Taken()
        left = float("inf") if n is None else n
        it = self.record_iterator
        try:
            while left > 0:
                if self._tail is not None:
                    item, self._tail = self._tail, None
                elif it is None:
                    break
                else:
                    item = next(it, None)
                    if item is None:
                        break
                if isinstance(item, RecordBlock):
                    k = len(item)
                    if k > left:
                        self._tail = item.select(slice(int(left), None))
                        item = item.select(slice(0, int(left)))
                        k = len(item)
                    self.next_fetch_offset = item.last_offset + 1
                else:
                    k = 1
                out.append(item)
                out.messages += k
                left -= k
        except Exception as e:
            if not out:
                raise
            self._next_inline_exception = e  # raised by the next take, as kafka-python does
        return out

    def _unpack_records(self, tp, records, key_deserializer, value_deserializer):
        try:
            batch = records.next_batch()
            last_batch = None
            while batch is not None:
                last_batch = batch
                if self._plain(batch):
                    if self.check_crcs and not batch.validate_crc():
                        msg = (f"Record batch for partition {self.topic_partition} at offset "
                               f"{batch.base_offset} failed crc check")
                        raise CorruptRecordError(msg)
                    self.leader_epoch = batch.leader_epoch
                    block = self._block(tp, batch)
                    if block is not None:
                        if len(block):
                            yield block
                        batch = records.next_batch()
                        continue
                yield from self._library(tp, batch, key_deserializer, value_deserializer)
                batch = records.next_batch()
            if last_batch is not None and last_batch.magic == 2:
                self.next_fetch_offset = last_batch.next_offset
            self.drain()
        except StopIteration as e:  # as kafka-python: never end the generator silently
            msg = "StopIteration raised unpacking messageset"
            raise RuntimeError(msg) from e

    def _plain(self, batch) -> bool:
        if batch.magic != 2 or batch.attributes & CONTROL:
            return False
        return not (self.isolation_level == _READ_COMMITTED and batch.has_producer_id())

    def _block(self, tp, batch) -> RecordBlock | None:
        """Return the batch's records from the fetch offset on, or None if the scan refuses it."""
        buf = np.frombuffer(batch._buffer, np.uint8)
        body = None
        if batch.attributes & CODEC_MASK:
            # kafka-python's codecs, as its own iteration would call them (the CRC was
            # checked on the compressed bytes); a missing codec library raises its error
            batch._maybe_uncompress()
            body = np.frombuffer(batch._buffer, np.uint8)
        try:
            recs = scan_records(buf, body)
        except RecordBatchError as exc:
            log.warning("%s/%d: %s; kafka-python parses this batch", tp.topic, tp.partition, exc)
            return None
        n = len(recs.offsets)
        self.records_read += n
        self.bytes_read += recs.size
        block = RecordBlock(tp.topic, tp.partition, buf if body is None else body, recs)
        if n:
            self.next_fetch_offset = int(recs.offsets[-1]) + 1
            if recs.offsets[0] < self.fetch_offset:  # a fetch from inside the batch
                skip = int(np.count_nonzero(recs.offsets < self.fetch_offset))
                block = block.select(slice(skip, None))
        return block

    def _library(self, tp, batch, key_deserializer, value_deserializer):
        """Yield kafka-python's ConsumerRecords of one batch, its state carried over."""
        sub = _Library(self.fetch_offset, tp, _OneBatch(batch), key_deserializer,
                       value_deserializer, check_crcs=self.check_crcs,
                       isolation_level=self.isolation_level)
        sub.aborted_transactions = self.aborted_transactions  # shared: consumed in order
        sub.aborted_producer_ids = self.aborted_producer_ids
        sub.leader_epoch = self.leader_epoch
        sub.next_fetch_offset = self.next_fetch_offset
        try:
            for rec in sub.record_iterator:
                self.next_fetch_offset = sub.next_fetch_offset
                self.leader_epoch = sub.leader_epoch
                yield rec
        finally:
            self.next_fetch_offset = sub.next_fetch_offset
            self.leader_epoch = sub.leader_epoch
            self.records_read += sub.records_read
            self.bytes_read += sub.bytes_read


def install(consumer: Any) -> bool:
    """Give ``consumer`` the block-yielding fetch parser; False (one warning) if it cannot.

    It cannot when kafka-python is not the tested minor (:data:`TESTED_VERSION`), its fetcher
    lacks the expected internals, or the consumer has key/value deserializers.

    Parameters
    ----------
    consumer : kafka.KafkaConsumer
        Built, not yet polled; afterwards :meth:`poll` returns blocks and records mixed.

    Returns
    -------
    bool
        Whether blocks are now on.
    """
    why = _unsupported(consumer)
    if why:
        log.warning("kafka.fast_batches: %s; records are parsed by kafka-python instead "
                    "(slower; set [kafka] fast_batches = false to silence this)", why)
        return False
    consumer._fetcher.PartitionRecords = FastPartitionRecords
    return True


def _unsupported(consumer: Any) -> str | None:
    version = getattr(kafka, "__version__", "?")
    if not version.startswith(TESTED_VERSION):
        return f"kafka-python {version} is not the tested {TESTED_VERSION}x"
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or getattr(fetcher, "PartitionRecords", None) is not _Library:
        return "the consumer's fetcher is not kafka-python's Fetcher"
    try:
        args = list(inspect.signature(Fetcher.PartitionRecords.__init__).parameters)
    except (TypeError, ValueError):
        args = []
    needed = ("_unpack_records", "_maybe_raise_next_inline_exception", "_maybe_skip_record")
    if args != _INIT_ARGS or not all(hasattr(_Library, a) for a in needed):
        return "kafka-python's Fetcher.PartitionRecords has changed"
    if not all(hasattr(DefaultRecordBatch, a) for a in ("_maybe_uncompress", "_buffer")):
        return "kafka-python's DefaultRecordBatch has changed"
    cfg = getattr(consumer, "config", {})
    if cfg.get("key_deserializer") or cfg.get("value_deserializer"):
        return "the consumer has a key or value deserializer"
    return None


__all__ = ["FastPartitionRecords", "RecordBlock", "install"]
