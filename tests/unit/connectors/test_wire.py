"""Telegraf JSON and line protocol: decoders, encoders, round trips, every error path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pueflow.config.load import load_config, parse_config
from pueflow.connectors.wire import (
    decode_json,
    decode_line,
    decode_line_text,
    encode_json,
    encode_line,
    escape_key,
)
from pueflow.connectors.wire_base import MAX_TIME_NS, MIN_TIME_NS
from pueflow.schema.registry import Registry

CONFIG = Path(__file__).resolve().parents[3] / "config" / "tetouan-7.5mw.toml"
T0 = 1_714_564_800 * 10**9  # 2024-05-01T12:00:00Z


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIG)


@pytest.fixture
def reg(cfg):
    return Registry(cfg)


def canonical(n_dev=3, points=("power_kw", "energy_kwh"), n_t=4, step_ns=10**9, site="tetouan-1"):
    rows = [(T0 + k * step_ns, site, f"pdu-{d}", p, float(k * 100 + d * 10 + j) + 0.25)
            for k in range(n_t) for d in range(n_dev) for j, p in enumerate(points)]
    t, s, dv, p, v = zip(*rows, strict=True)
    return pl.DataFrame({"time": pl.Series(t).cast(pl.Datetime("ns", "UTC")), "site": s,
                         "device": dv, "point": p, "value": v})


def readings(dec, reg):
    """Decoded readings as a sorted list of (time_ns, site, device, point, value)."""
    b = dec.batch
    return sorted((int(t), *reg.keys[s], float(v))
                  for t, s, v in zip(b.time_ns, b.series, b.value, strict=True))


def rows_of(df):
    return sorted((int(t), s, d, p, float(v)) for t, s, d, p, v in df.with_columns(
        pl.col("time").dt.epoch("ns")).iter_rows())


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("per_message", [1, 5])
def test_json_round_trip(reg, unit, per_message):
    df = canonical(step_ns=10**9 if unit == "s" else 1_500_000)
    msgs = encode_json(df, timestamp_unit=unit, per_message=per_message)
    dec = decode_json(msgs, reg, unit)
    assert dec.errors == []
    assert readings(dec, reg) == rows_of(df)
    assert len(dec.origin) == len(dec.batch)
    assert dec.origin.dtype == np.int32


def test_json_groups_snapshot_fields_into_one_metric(reg):
    df = canonical(n_dev=2, points=tuple(f"f{i}" for i in range(10)), n_t=1)
    msgs = encode_json(df)
    assert len(msgs) == 2
    m = orjson.loads(msgs[0])
    assert set(m) == {"name", "tags", "fields", "timestamp"}
    assert len(m["fields"]) == 10
    assert m["tags"] == {"site": "tetouan-1", "device": "pdu-0"}
    assert m["timestamp"] == T0 // 10**9
    assert isinstance(m["timestamp"], int)


def test_json_float_seconds_and_origin(reg):
    p = [orjson.dumps({"name": "x", "tags": {"site": "tetouan-1", "device": "pdu-1"},
                       "fields": {"power_kw": 1, "energy_kwh": 2.5}, "timestamp": 1.25}),
         orjson.dumps({"metrics": [{"name": "pdu-2", "tags": {"site": "tetouan-1"},
                                    "fields": {"power_kw": 3.0}, "timestamp": 2}]})]
    dec = decode_json(p, reg, "s")
    assert dec.errors == []
    assert dec.batch.time_ns.tolist() == [1_250_000_000, 1_250_000_000, 2 * 10**9]
    assert dec.origin.tolist() == [0, 0, 1]
    # no device tag: the measurement name is the device
    assert reg.keys[dec.batch.series[2]] == ("tetouan-1", "pdu-2", "power_kw")


def test_json_errors_name_the_problem(reg):
    good = {"name": "m", "tags": {"site": "tetouan-1", "device": "pdu-1"},
            "fields": {"power_kw": 1.0}, "timestamp": 5}
    payloads = [
        b'{"name": "m", "tags": {"site": ',                                   # 0 truncated
        orjson.dumps({**good, "tags": {"device": "pdu-1"}}),                  # 1 no site
        orjson.dumps({**good, "fields": {"power_kw": "high", "energy_kwh": 4}}),  # 2 partial
        orjson.dumps({**good, "fields": {"on": True}}),                        # 3 bool
        orjson.dumps({**good, "fields": {"x": None}}),                         # 4 null
        orjson.dumps({k: v for k, v in good.items() if k != "timestamp"}),     # 5 no time
        orjson.dumps({"metrics": [good, {**good, "fields": {}}]}),             # 6 partial batch
        b"",                                                                    # 7 empty
        orjson.dumps({"metrics": []}),                                         # 8 nothing
        orjson.dumps([1, 2]),                                                   # 9 not objects
        orjson.dumps({**good, "timestamp": "2024-05-01"}),                     # 10 str time
        orjson.dumps({**good, "timestamp": 2**62}),                             # 11 huge time
    ]
    dec = decode_json(payloads, reg, "s")
    why = dict(dec.errors)
    assert "invalid JSON at char 31" in why[0]
    assert "missing tag 'site'" in why[1]
    assert "field 'power_kw'" in why[2]
    assert "is a string" in why[2]
    assert "is a boolean" in why[3]
    assert "field 'x'" in why[4]
    assert "is null" in why[4]
    assert "missing 'timestamp'" in why[5]
    assert "metric 1: 'fields' is empty" in why[6]
    assert "empty" in why[7]
    assert "empty" in why[8]
    assert "expected a JSON object" in why[9]
    assert "'timestamp' is a string" in why[10]
    assert "out of range" in why[11]
    # partial payloads still yield their good readings; every payload is accounted for
    assert sorted(set(dec.origin.tolist())) == [2, 6]
    assert set(why) | set(dec.origin.tolist()) == set(range(len(payloads)))
    assert [e[0] for e in dec.errors] == sorted(e[0] for e in dec.errors)


def test_unknown_series_get_ids_and_flow_through(reg):
    p = [orjson.dumps({"name": "m", "tags": {"site": "nowhere", "device": "d"},
                       "fields": {"power_kw": -5.0}, "timestamp": 1})]
    dec = decode_json(p, reg, "s")
    assert dec.errors == []
    assert len(dec.batch) == 1
    assert reg.role[dec.batch.series[0]] == -1
    assert dec.batch.value[0] == -5.0


def test_scale_is_applied():
    cfg = parse_config({"sites": [{
        "id": "s1", "jurisdiction": "MA", "latitude": 0, "longitude": 0, "it_capacity_kw": 10,
        "meters": [{"device": "m-*", "point": "power_w", "kind": "power", "role": "it",
                    "scale": 0.001}]}]})
    reg = Registry(cfg)
    p = [orjson.dumps({"name": "x", "tags": {"site": "s1", "device": "m-1"},
                       "fields": {"power_w": 2500, "other": 7}, "timestamp": 1})]
    dec = decode_json(p, reg, "s")
    assert dec.batch.value.tolist() == [2.5, 7.0]
    dec = decode_line([b"x,site=s1,device=m-1 power_w=4000i 1"], reg)
    assert dec.batch.value.tolist() == [4.0]


def test_duplicates_are_carried(reg):
    df = pl.concat([canonical(n_dev=2, n_t=2)] * 2)
    assert len(encode_json(df)) == 8  # a repeated point starts a second metric
    for msgs, dec in ((encode_json(df, "s", per_message=3), lambda m: decode_json(m, reg, "s")),
                      (encode_line(df, 2), lambda m: decode_line(m, reg))):
        d = dec(msgs)
        assert d.errors == []
        assert readings(d, reg) == rows_of(df)


def test_json_nan_becomes_an_error_not_a_silent_drop(reg):
    df = canonical(n_dev=1, points=("power_kw", "energy_kwh"), n_t=1).with_columns(
        pl.when(pl.col("point") == "power_kw").then(float("nan")).otherwise(pl.col("value")).alias("value"))
    dec = decode_json(encode_json(df), reg, "s")
    assert len(dec.batch) == 1
    assert "is null" in dec.errors[0][1]


# --------------------------------------------------------------------------- line protocol


@pytest.mark.parametrize("per_message", [1, 3, 100])
def test_line_round_trip(reg, per_message):
    df = canonical()
    dec = decode_line(encode_line(df, lines_per_message=per_message), reg)
    assert dec.errors == []
    assert readings(dec, reg) == rows_of(df)


def test_line_values_and_errors(reg):
    payloads = [
        b"m,site=tetouan-1,device=pdu-1 power_kw=1.5,energy_kwh=12i,count=7u 100\n"
        b"m,site=tetouan-1 power_kw=-3e2 200",                        # 0: two lines
        b"m,site=tetouan-1,device=pdu-1 power_kw=1,ok=t,name=\"a b\" 300",  # 1: partial
        b"m,device=pdu-1 power_kw=1 400",                              # 2: no site
        b"m,site=tetouan-1,device=pdu-1 power_kw=1",                   # 3: no timestamp
        b"# a comment\n\n",                                             # 4: nothing
        b"m,site=tetouan-1,device=pdu-1 power_kw=abc 500",             # 5: bad value
        b"m,site=tetouan-1,device=pdu-1 power_kw=1 12:00",             # 6: bad time
        b"garbage",                                                     # 7
        b"m,site=tetouan-1,device=pdu-1 power_kw=1,energy_kwh 600",    # 8: no '='
        b"m,site=tetouan-1,device=pdu-1 power_kw=1 1 extra",           # 9: extra part
        b"\xff\xfe",                                                     # 10: not UTF-8
    ]
    dec = decode_line(payloads, reg)
    why: dict[int, list[str]] = {}
    for i, r in dec.errors:
        why.setdefault(i, []).append(r)
    got = readings(dec, reg)
    assert (100, "tetouan-1", "pdu-1", "energy_kwh", 12.0) in got
    assert (100, "tetouan-1", "pdu-1", "count", 7.0) in got
    assert (200, "tetouan-1", "m", "power_kw", -300.0) in got
    assert (300, "tetouan-1", "pdu-1", "power_kw", 1.0) in got
    # 8: InfluxDB refuses a line with any malformed field, so power_kw=1 goes with it
    assert dec.origin.tolist() == [0, 0, 0, 0, 1]
    assert sorted(why[1]) == ["field 'name' is a string", "field 'ok' is a boolean"]
    assert why[2] == ["missing tag 'site'"]
    assert "no timestamp" in why[3][0]
    assert "empty" in why[4][0]
    assert why[5] == ["field 'power_kw' has invalid value 'abc'"]
    assert "invalid timestamp '12:00'" in why[6][0]
    assert "cannot parse" in why[7][0]
    assert "cannot parse" in why[9][0]
    assert "not key=value" in why[8][0]
    assert "not UTF-8" in why[10][0]
    assert set(why) | set(dec.origin.tolist()) == set(range(len(payloads)))


def test_line_escapes(reg):
    line = b'my\\ meas,site=tetouan-1,device=pdu\\,\\ 1\\=x power\\ kw=2,s="x \\" y" 7'
    dec = decode_line([line], reg)
    assert readings(dec, reg) == [(7, "tetouan-1", "pdu, 1=x", "power kw", 2.0)]
    assert dec.errors == [(0, "field 's' is a string")]


def test_line_text_origin_is_line_number(reg):
    text = "m,site=tetouan-1 f=1 1\n\n# c\nbad\nm,site=tetouan-1 f=2 2\n"
    dec = decode_line_text(text, reg)
    assert dec.origin.tolist() == [0, 4]
    assert [e[0] for e in dec.errors] == [3]


# names line protocol can carry: no control characters, no trailing backslash (the
# reference decoder keeps a backslash before any byte it does not escape)
_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12
                ).filter(lambda s: not s.endswith("\\"))


@settings(max_examples=60, deadline=None)
@given(site=_text, device=_text, point=_text.filter(lambda s: s[0] != "#"),
       value=st.floats(allow_nan=False, allow_infinity=False, width=64),
       t=st.integers(MIN_TIME_NS, MAX_TIME_NS - 1))
def test_escaping_round_trip(cfg, site, device, point, value, t):
    reg = Registry(cfg)
    df = pl.DataFrame({"time": pl.Series([t]).cast(pl.Datetime("ns", "UTC")), "site": [site],
                       "device": [device], "point": [point], "value": [value]})
    dec = decode_line(encode_line(df), reg)
    assert dec.errors == []
    assert readings(dec, reg) == [(t, site, device, point, value)]
    t_ms = t // 10**6 * 10**6 + (t % 2) * 500_000  # exact in ms (JSON floats cannot hold ns)
    dec = decode_json(encode_json(df.with_columns(pl.lit(t_ms).cast(pl.Datetime("ns", "UTC"))
                                                  .alias("time")), "ms"), reg, "ms")
    assert dec.errors == []
    assert readings(dec, reg) == [(t_ms, site, device, point, value)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["pdu-1", "cdu-2", "x"]),
                          st.sampled_from(["power_kw", "a", "b"]),
                          st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(repr),
                                    st.integers(-10**6, 10**6).map(lambda i: f"{i}i"),
                                    st.integers(0, 10**6).map(lambda i: f"{i}u"),
                                    st.sampled_from(["t", "FALSE", "zz", "", "1e400", "1_0",
                                                     "18446744073709551616u", '"s"'])),
                          st.integers(0, 10**12)), min_size=1, max_size=8))
def test_lines_decode_to_what_they_were_built_from(cfg, items):
    """Each generated line's expected outcome comes from how it was built, not from a
    parser: numbers are readings, booleans/strings skipped with a reason, the rest refused."""
    lines = [f"m,site=tetouan-1,device={d} {p}={v} {t}" for d, p, v, t in items]
    reg = Registry(cfg)
    dec = decode_line_text("\n".join(lines), reg)
    want, want_err = [], []
    for i, (d, p, v, t) in enumerate(items):
        if v in ("t", "FALSE", '"s"'):
            want_err.append((i, f"field {p!r} is {'a string' if v == chr(34) + 's' + chr(34) else 'a boolean'}"))
        elif v in ("zz", "", "1e400", "1_0", "18446744073709551616u"):
            want_err.append((i, None))
        else:
            want.append((t, "tetouan-1", d, p, float(v.rstrip("iu"))))
    assert readings(dec, reg) == sorted(want)
    assert [e[0] for e in dec.errors] == [i for i, _ in want_err]
    for (_, got), (_, exp) in zip(dec.errors, want_err, strict=True):
        assert got == exp if exp else got


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "nul\x00", "ends\\", ""])
def test_escape_key_rejects_what_line_protocol_cannot_carry(name):
    with pytest.raises(ValueError, match="cannot carry"):
        escape_key(name)
    df = pl.DataFrame({"time": pl.Series([T0]).cast(pl.Datetime("ns", "UTC")), "site": ["s"],
                       "device": [name], "point": ["p"], "value": [1.0]})
    with pytest.raises(ValueError, match="cannot carry"):
        encode_line(df)


def test_encode_needs_canonical_columns():
    with pytest.raises(ValueError, match="missing"):
        encode_json(pl.DataFrame({"time": [1]}))


def test_bad_unit():
    with pytest.raises(ValueError, match="timestamp unit"):
        decode_json([], None, "minutes")  # type: ignore[arg-type]
