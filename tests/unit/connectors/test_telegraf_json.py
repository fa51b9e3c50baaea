"""Telegraf JSON serializer outputs decode exactly, in every timestamp unit and batch form.

The payloads are Telegraf's own serializer test expectations (plugins/serializers/json,
TestSerialize_TimestampUnits and TestSerializeBatch: a metric at 1525478795.123456789 s),
with the ``site`` tag pueflow needs added; the expected times are that instant truncated
to each unit by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pueflow.config.load import load_config
from pueflow.connectors import json_scan
from pueflow.connectors.files import iter_file
from pueflow.connectors.json_python import decode_python
from pueflow.connectors.telegraf_json import decode_json
from pueflow.connectors.wire_base import MAX_TIME_NS, MIN_TIME_NS, finish, unit_ns
from pueflow.exceptions import ConfigError
from pueflow.schema.registry import Registry

ROOT = Path(__file__).resolve().parents[3]
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


# ------------------------------------------------------- the numba scan against orjson
_PLAIN = st.sampled_from(["power_kw", "p", "é", "a b", "t\u00e9st", "device", "pdu-1"])
_ODD = st.sampled_from(['q"t', "x\\y", "", "\u2028", "site", "name", "fields", "metrics"])
_NAMES = st.one_of(_PLAIN, _PLAIN, _PLAIN, _ODD)
_NUMS = st.one_of(st.integers(-(2**65), 2**65), st.floats(allow_nan=False, allow_infinity=False),
                  st.floats(1e-30, 1e30), st.sampled_from([0, -0.0, 1e308, 5e-324, 2**53 + 1]))
_VALUES = st.one_of(*[_NUMS] * 8, st.booleans(), st.none(), _NAMES)
_METRIC = st.fixed_dictionaries(
    {"fields": st.dictionaries(_NAMES, _VALUES, max_size=4),
     "tags": st.dictionaries(_NAMES, st.one_of(_NAMES, _NAMES, st.integers(0, 3)), max_size=3)
     .map(lambda d: {"site": "tetouan-1", **d}),
     "name": st.one_of(_NAMES, _NAMES, _NAMES, st.integers(0, 2)),
     "timestamp": st.one_of(st.integers(1_500_000_000, 1_800_000_000),
                            st.integers(1_500_000_000, 1_800_000_000),
                            st.integers(-5, 2**64), st.floats(1.5e9, 1.8e9),
                            st.just("2024-05-01T00:00:00Z"))},
    optional={"extra": _VALUES})
#: what Telegraf writes (most of a real poll)
_CLEAN = st.fixed_dictionaries(
    {"fields": st.dictionaries(_PLAIN, _NUMS, min_size=1, max_size=4),
     "tags": st.dictionaries(st.sampled_from(["device", "host", "site"]), _PLAIN, max_size=2)
     .map(lambda d: {**d, "site": "tetouan-1"}),
     "name": _PLAIN,
     "timestamp": st.one_of(st.integers(1_500_000_000, 1_800_000_000),
                            st.integers(6_000_000_000, 7_000_000_000).map(lambda t: t / 4))})


@st.composite
def _payload(draw) -> bytes:
    hostile = _METRIC.map(lambda m: {k: v for k, v in m.items()
                                     if draw(st.integers(0, 19)) or k == "tags"})
    metrics = draw(st.lists(st.one_of(_CLEAN, _CLEAN, _CLEAN, hostile), min_size=1, max_size=3))
    shape = draw(st.sampled_from(["one", "batch", "list"]))
    doc = metrics[0] if shape == "one" else {"metrics": metrics} if shape == "batch" else metrics
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()), separators=(",", ":"))
    if draw(st.booleans()):  # JSON white space where JSON allows it
        text = text.replace(":", draw(st.sampled_from([": ", " :\t", ":\n"]))).replace(",", ", ")
    if draw(st.integers(0, 7)) == 0:  # damage: a cut, a stray byte
        k = draw(st.integers(0, len(text)))
        text = text[:k] + draw(st.sampled_from(["", "}", ",", "x", "\\"])) + text[k + 1:]
    return text.encode()


def _rows(dec, reg) -> list:
    b = dec.batch
    return [(int(o), int(t), reg.keys[s], float(v)) for o, t, s, v in
            zip(dec.origin, b.time_ns, b.series, b.value, strict=True)]


@settings(max_examples=300, deadline=None)
@given(st.lists(_payload(), min_size=1, max_size=6), st.sampled_from(["s", "ms", "10ms"]))
def test_scan_decodes_exactly_as_orjson_and_python(payloads, unit):
    """The whole poll through the numba scan gives, payload by payload, what orjson and the
    Python decoder give each payload alone: same readings in the same order, same reasons."""
    reg = Registry(load_config(ROOT / "config" / "tetouan-7.5mw.toml"))
    got = decode_json(payloads, reg, unit)
    want_rows, want_errors = [], []
    for i, p in enumerate(payloads):
        one = finish(1, *decode_python([p], reg, unit_ns(unit)), reg)
        want_rows += [(i, *r[1:]) for r in _rows(one, reg)]
        want_errors += [(i, why) for _, why in one.errors]
    assert _rows(got, reg) == want_rows
    assert got.errors == want_errors


def test_scan_takes_telegraf_output_and_leaves_the_rest():
    """Telegraf's own serializer output is decoded by the scan; escapes, string fields,
    RFC 3339 times and repeated keys are left to Python."""
    buf = b'{"fields":{"value":42,"v2":1.5e3},"name":"cpu","tags":{"site":"s1"},"timestamp":1525478795}'
    left = [b'{"fields":{"value":42},"name":"c\\"pu","tags":{"site":"s1"},"timestamp":1}',
            b'{"fields":{"value":"x"},"name":"cpu","tags":{"site":"s1"},"timestamp":1}',
            b'{"fields":{"value":1},"name":"cpu","tags":{"site":"s1"},"timestamp":"2018-05-05T00:06:35Z"}',
            b'{"fields":{"value":1,"value":2},"name":"cpu","tags":{"site":"s1"},"timestamp":1}']
    data = [buf, *left, b'{"metrics":[' + buf + b"," + buf + b"]}"]
    ends = np.cumsum([len(p) for p in data])
    ok, fld, _ = json_scan.scan(np.frombuffer(b"".join(data), np.uint8), ends, 10**9,
                                MIN_TIME_NS, MAX_TIME_NS)
    assert ok.tolist() == [True, False, False, False, False, True]
    assert fld[4].tolist() == [42.0, 1500.0] * 3
    assert fld[1].tolist() == [1525478795 * 10**9] * 6
