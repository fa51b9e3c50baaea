"""Telegraf JSON serializer outputs decode exactly, in every timestamp unit and batch form.

The payloads are Telegraf's own serializer test expectations (plugins/serializers/json,
TestSerialize_TimestampUnits and TestSerializeBatch: a metric at 1525478795.123456789 s),
with the ``site`` tag pueflow needs added; the expected times are that instant truncated
to each unit by hand.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pueflow.config.load import load_config
from pueflow.connectors.files import iter_file
from pueflow.connectors.telegraf_json import decode_json
from pueflow.connectors.wire_base import unit_ns
from pueflow.exceptions import ConfigError
from pueflow.schema.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
NS = 1525478795_123456789


@pytest.fixture
def reg():
    return Registry(load_config(ROOT / "config" / "tetouan-7.5mw.toml"))


def telegraf(ts: str, tags: str = '{"site":"s1"}') -> bytes:
    return f'{{"fields":{{"value":42}},"name":"cpu","tags":{tags},"timestamp":{ts}}}\n'.encode()


@pytest.mark.parametrize(("unit", "ts", "want_ns"), [
    ("1s", "1525478795", 1525478795 * 10**9),            # Telegraf's default
    ("s", "1525478795", 1525478795 * 10**9),
    ("1ns", "1525478795123456789", NS),
    ("1ms", "1525478795123", 1525478795123 * 10**6),
    ("10ms", "152547879512", 152547879512 * 10**7),
    ("15ms", "152547879512", 152547879512 * 10**7),      # Telegraf truncates 15ms to 10ms
    ("65ms", "152547879512", 152547879512 * 10**7),
    ("1us", "1525478795123456", 1525478795123456 * 10**3),
    ("1µs", "1525478795123456", 1525478795123456 * 10**3),
    ("s", '"2018-05-05T00:06:35Z"', 1525478795 * 10**9),  # json_timestamp_format RFC 3339
    ("s", '"2018-05-05T02:06:35.123456789+02:00"', NS),
])
def test_serializer_outputs_in_every_unit(reg, unit, ts, want_ns):
    dec = decode_json([telegraf(ts)], reg, unit)
    assert dec.errors == []
    assert dec.batch.time_ns.tolist() == [want_ns]
    assert [reg.keys[s] for s in dec.batch.series] == [("s1", "cpu", "value")]
    assert dec.batch.value.tolist() == [42.0]


def test_batch_form_and_telegraf_tags_without_site(reg):
    batch = (b'{"metrics":[{"fields":{"value":42},"name":"cpu","tags":{},"timestamp":0},'
             b'{"fields":{"value":42},"name":"cpu","tags":{"site":"s1"},"timestamp":1525478795}]}')
    dec = decode_json([batch, telegraf("0", "{}")], reg, "1s")
    assert dec.batch.time_ns.tolist() == [1525478795 * 10**9]
    assert dec.origin.tolist() == [0]
    assert [(i, "missing tag 'site'" in w) for i, w in dec.errors] == [(0, True), (1, True)]


def test_times_outside_1970_to_2260_are_refused_with_a_reason(reg):
    dec = decode_json([telegraf("-1"), telegraf("9200000000"), telegraf('"1969-12-31T23:59:59Z"'),
                       telegraf('"yesterday"'), telegraf("1616161616")], reg, "s")
    assert dec.batch.time_ns.tolist() == [1616161616 * 10**9]
    why = dict(dec.errors)
    assert "before 1970" in why[0]
    assert "after 2260" in why[1]
    assert "before 1970" in why[2]
    assert "not an RFC 3339 time" in why[3]


def test_unit_names():
    assert [unit_ns(u) for u in ("s", "1s", "10ms", "15ms", "100us", "1µs", "ns", "1m")] == [
        10**9, 10**9, 10**7, 10**7, 10**5, 10**3, 1, 10**10]
    for bad in ("minutes", "0s", "", "1.5s"):
        with pytest.raises(ValueError, match="timestamp unit"):
            unit_ns(bad)


def test_replayed_file_uses_the_json_unit(tmp_path, reg):
    """Telegraf's default seconds in a JSON-lines file read as 2021, not 1970."""
    f = tmp_path / "telegraf.jsonl"
    f.write_bytes(orjson.dumps({"fields": {"value": 1.5}, "name": "cpu", "tags": {"site": "s1"},
                                "timestamp": 1616161616}) + b"\n")
    (chunk,) = iter_file(f, reg, json_timestamp_unit="s")
    assert chunk.batch.time_ns.tolist() == [1616161616 * 10**9]
    assert chunk.errors == []


def _config_with_unit(tmp_path: Path, unit: str) -> Path:
    path = tmp_path / "site.toml"
    text = (ROOT / "config" / "tetouan-7.5mw.toml").read_text()
    path.write_text(f'{text}\n[kafka]\ntimestamp_unit = "{unit}"\n')
    return path


def test_config_takes_any_telegraf_unit(tmp_path, reg):
    """``timestamp_unit = "10ms"`` in the config file decodes Telegraf's 10ms output."""
    cfg = load_config(_config_with_unit(tmp_path, "10ms"))
    assert cfg.kafka.timestamp_unit == "10ms"
    dec = decode_json([telegraf("152547879512")], reg, cfg.kafka.timestamp_unit)
    assert dec.batch.time_ns.tolist() == [152547879512 * 10**7]


@pytest.mark.parametrize("bad", ["minutes", "0ms", "1.5s"])
def test_config_refuses_a_unit_the_decoder_refuses(tmp_path, bad):
    with pytest.raises(ConfigError) as info:
        load_config(_config_with_unit(tmp_path, bad))
    text = str(info.value)
    assert f"kafka.timestamp_unit = {bad!r}" in text
    assert "'10ms'" in text  # the fix
