"""The state topic: one compacted record per source partition, the restart point of consume.

Everything here is I/O; no arithmetic.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from pueflow.connectors.kafka import build_consumer, partitions_for
from pueflow.exceptions import StateError

if TYPE_CHECKING:
    from kafka import KafkaConsumer, KafkaProducer

    from pueflow.config.models import KafkaConfig

log = logging.getLogger(__name__)

#: Largest checkpoint record; the state topic is created to accept it.
STATE_MAX_BYTES = 16 * 1024 * 1024
STATE_TOPIC_CONFIG = {"cleanup.policy": "compact", "max.message.bytes": str(STATE_MAX_BYTES)}


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
    dispatch: bytes = b""      # the dispatcher's state of these sites (empty: none)

    def encode(self, group: str) -> bytes:
        """Encode as a JSON header line, then the state zlib-compressed (mostly zeros: ~25x).

        The dispatch state, when there is one, follows the core's state in the compressed
        part; the header's ``d`` says how many of its bytes it takes.
        """
        h = {"v": 1, "group": group, "topic": self.topic, "partition": self.partition,
             "offset": self.offset, "sites": self.sites, "written_ns": self.written_ns, "z": "zlib"}
        if self.dispatch:
            h["d"] = len(self.dispatch)
        return orjson.dumps(h) + b"\n" + zlib.compress(self.state + self.dispatch, 1)

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
        d = int(h.get("d", 0))
        if d < 0 or d > len(state):
            msg = f"state record names {d} bytes of dispatch state in {len(state)}; delete it to start fresh"
            raise StateError(msg)
        core, dispatch = (state[:-d], state[-d:]) if d else (state, b"")
        return cls(h["topic"], int(h["partition"]), int(h["offset"]), list(h["sites"]), core,
                   int(h.get("written_ns", 0)), dispatch)


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
