"""One poll's messages as columns: record blocks and ConsumerRecords alike.

:class:`PollColumns` flattens what ``KafkaConsumer.poll`` returned (per partition, a list of
:class:`~pueflow.connectors.record_batches.RecordBlock` objects and/or kafka-python
``ConsumerRecord`` objects) into per-message arrays (partition, offset, value length) and joins
the chosen payloads into one buffer for the decoders. Blocks cost Python per block, never
per message: offsets and lengths are their arrays, payloads are copied out of the batch
buffer by a numba gather. A ConsumerRecord (kafka-python's path: legacy-format or
transactional batches under read_committed, or ``fast_batches`` off) costs Python per message, as it did before.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np

from pueflow.connectors.record_batches import RecordBlock, gather

#: a message of a block, for the rare paths that need one (dead letters)
Message = namedtuple("Message", "topic partition offset key value")


class PollColumns:
    """The messages of one poll, in partition order then offset order.

    Parameters
    ----------
    records : dict
        ``TopicPartition -> list`` of blocks and records, as ``poll`` returns it.
    tps : list
        The partitions to take, in this order (others are left out).

    Attributes
    ----------
    tp : array [int32]
        Per message, its partition's index in ``tps``.
    offset : array [int64]
        Per message, its offset.
    value_len : array [int64]
        Per message, its value's length [bytes]; -1 for a null value.
    counts : array [int64]
        Messages per partition of ``tps``.
    """

    def __init__(self, records: dict, tps: list):
        self.tps = tps
        self._items: list[Any] = []  # a block, or a list of consecutive records
        tp_i: list[np.ndarray] = []
        offs: list[np.ndarray] = []
        lens: list[np.ndarray] = []
        counts: list[int] = []
        for j, tp in enumerate(tps):
            n = 0
            run: list[Any] = []
            for it in records[tp]:
                if isinstance(it, RecordBlock):
                    if run:
                        n += self._add_run(run, offs, lens)
                        run = []
                    self._items.append(it)
                    offs.append(it.records.offsets)
                    lens.append(it.records.value_len)
                    n += len(it)
                else:
                    run.append(it)
            if run:
                n += self._add_run(run, offs, lens)
            tp_i.append(np.full(n, j, np.int32))
            counts.append(n)
        self.counts = np.array(counts, np.int64)
        self.tp = np.concatenate(tp_i) if tp_i else np.empty(0, np.int32)
        self.offset = np.concatenate(offs) if offs else np.empty(0, np.int64)
        self.value_len = np.concatenate(lens) if lens else np.empty(0, np.int64)
        sizes = [len(it) for it in self._items]
        self._first = np.cumsum([0, *sizes])  # message index of each item's first message

    def __len__(self) -> int:
        return len(self.offset)

    def _add_run(self, run: list, offs: list, lens: list) -> int:
        self._items.append(run)
        offs.append(np.fromiter((r.offset for r in run), np.int64, count=len(run)))
        lens.append(np.fromiter((-1 if r.value is None else len(r.value) for r in run),
                                np.int64, count=len(run)))
        return len(run)

    def last_offsets(self) -> np.ndarray:
        """Offset of each partition's last message (-1 for a partition without any)."""
        out = np.full(len(self.counts), -1, np.int64)
        has = self.counts > 0
        out[has] = self.offset[(np.cumsum(self.counts) - 1)[has]]
        return out

    def message(self, i: int) -> Any:
        """Message ``i`` with ``topic, partition, offset, key, value`` (a record or a copy)."""
        k = int(np.searchsorted(self._first, i, side="right")) - 1
        it = self._items[k]
        sub = i - int(self._first[k])
        if isinstance(it, RecordBlock):
            return Message(it.topic, it.partition, int(it.records.offsets[sub]), it.key(sub),
                           it.value(sub))
        return it[sub]

    def payloads(self, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Join the values of the messages ``keep`` (all if None; none may be null).

        Returns
        -------
        buf : array [uint8]
            The values back to back.
        ends : array [int64]
            Exclusive end of each value in ``buf`` [bytes].
        """
        lens = self.value_len if keep is None else self.value_len[keep]
        ends = np.cumsum(lens)
        out = np.empty(int(ends[-1]) if len(ends) else 0, np.uint8)
        pos = 0
        for k, it in enumerate(self._items):
            a, b = int(self._first[k]), int(self._first[k + 1])
            sel = None if keep is None else keep[a:b]
            if isinstance(it, RecordBlock):
                r = it.records
                starts, vlen = r.value_start, r.value_len
                if sel is not None and not sel.all():
                    starts, vlen = starts[sel], vlen[sel]
                pos = gather(out, pos, it.buf, starts, vlen)
            else:
                vals = [r.value for r in it] if sel is None else [
                    r.value for r, s in zip(it, sel.tolist(), strict=True) if s]
                joined = b"".join(vals)
                out[pos:pos + len(joined)] = np.frombuffer(joined, np.uint8)
                pos += len(joined)
        return out, ends
