"""The two wire formats Telegraf emits: its JSON serializer and InfluxDB line protocol.

Decoders turn a list of message payloads into one :class:`Decoded` (a columnar
:class:`~pueflow.schema.batch.Batch` plus, for each reading, the payload it came from and
a list of per-payload problems); encoders produce the same formats from the canonical long
form (time, site, device, point, value). This module gathers the public names; the work is
done in :mod:`.telegraf_json` (numba scan :mod:`.json_scan`, Python path :mod:`.json_python`),
:mod:`.line_protocol` (with its scan kernel :mod:`.lp_scan`), :mod:`.lp_escape` and
:mod:`.wire_base`; both scans map series by hash through :mod:`.lp_keys`.
"""

from __future__ import annotations

from pueflow.connectors.line_protocol import (
    decode_line,
    decode_line_buffer,
    decode_line_chunk,
    decode_line_text,
    encode_line,
    parse_line,
)
from pueflow.connectors.lp_escape import escape_key, escape_measurement
from pueflow.connectors.telegraf_json import decode_json, decode_json_buffer, encode_json
from pueflow.connectors.wire_base import (
    MAX_TIME_NS,
    MIN_TIME_NS,
    UNIT_NS,
    Decoded,
    unit_ns,
)
from pueflow.connectors.wire_encode import CANONICAL

__all__ = ["CANONICAL", "MAX_TIME_NS", "MIN_TIME_NS", "UNIT_NS", "Decoded", "decode_json",
           "decode_json_buffer", "decode_line", "decode_line_buffer", "decode_line_chunk",
           "decode_line_text", "encode_json", "encode_line", "escape_key",
           "escape_measurement", "parse_line", "unit_ns"]
