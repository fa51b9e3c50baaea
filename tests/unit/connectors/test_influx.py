"""InfluxDB sink: line protocol, batching, retries honouring Retry-After, backpressure."""

from __future__ import annotations

import math
import time

import polars as pl
import pytest

from pueflow.config.models import Sink
from pueflow.connectors.influx import InfluxSink, _Retry, _retry_after, _Skip, to_lines
from pueflow.exceptions import SinkBackpressure, SinkError

T0 = 1_714_564_800 * 10**9


def kpi_frame(n: int = 3) -> pl.DataFrame:
    return pl.DataFrame({
        "time": [T0 + i * 60 * 10**9 for i in range(n)],
        "site": ["tetouan 1,a=b"] + ["s"] * (n - 1),
        "window": ["1m"] * n, "category": ["2"] * n, "run": [""] * n,
        "pue": [1.25] + [None] * (n - 1),
        "it_kwh": [1000.0, math.nan, 1e20] + [1.0] * (n - 3),
        "gaps": [0, 2, None] + [0] * (n - 3),
    }).with_columns(pl.col("time").cast(pl.Datetime("ns", "UTC")))


def spec(**kw) -> Sink:
    return Sink(name="store", type="influx", url="http://127.0.0.1:1", org="o", bucket="b",
                jurisdiction="MA", **kw)


def test_line_protocol_escapes_tags_skips_nulls_and_empty_tags():
    lines = to_lines("kpi", kpi_frame())
    assert lines[0] == ("kpi,category=2,site=tetouan\\ 1\\,a\\=b,window=1m "
                        f"pue=1.25,it_kwh=1000.0,gaps=0i {T0}")
    assert lines[1] == f"kpi,category=2,site=s,window=1m gaps=2i {T0 + 60 * 10**9}"
    assert lines[2] == f"kpi,category=2,site=s,window=1m it_kwh=1e+20 {T0 + 120 * 10**9}"
    assert all(",run=" not in ln for ln in lines)


def test_line_protocol_strings_bools_extra_tags_and_all_null_rows():
    df = pl.DataFrame({"time": [T0, T0], "site": ["a", "a"], "kind": ["late", "late"],
                       "device": ["d", "d"], "point": ["p", "p"], "run": ["r1", "r1"],
                       "detail": ['say "hi"\\', None], "value": [None, None],
                       "flag": [True, None]}).with_columns(
        pl.col("time").cast(pl.Datetime("ns", "UTC")))
    (line,) = to_lines("quality", df)
    assert line == (f'quality,device=d,kind=late,point=p,run=r1,site=a '
                    f'detail="say \\"hi\\"\\\\",flag=true {T0}')
    no_run = df.drop("run")
    assert ",run=x," in to_lines("quality", no_run, {"run": "x"})[0]


def test_floats_round_trip_exactly():
    vals = [0.1 + 0.2, 1 / 3, 123456789.123456789, 5e-324, 1.7976931348623157e308]
    df = pl.DataFrame({"time": [T0] * len(vals), "site": [f"s{i}" for i in range(len(vals))],
                       "window": ["1m"] * len(vals), "pue": vals}).with_columns(
        pl.col("time").cast(pl.Datetime("ns", "UTC")))
    got = [float(ln.split("pue=")[1].split(" ")[0]) for ln in to_lines("kpi", df)]
    assert got == vals


class Post:
    """A fake write endpoint: raises the queued outcomes, then accepts."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.accepted: list[list[str]] = []

    def __call__(self, lines):
        if self.outcomes:
            exc = self.outcomes.pop(0)
            if exc is not None:
                raise exc
        self.accepted.append(list(lines))


def test_batches_of_batch_rows_and_flush_empties_the_buffer():
    post = Post()
    sink = InfluxSink(spec(batch_rows=2), post=post)
    sink.write("kpi", kpi_frame(5))
    assert sink.pending_rows == 5
    assert not post.accepted
    sink.flush()
    assert [len(c) for c in post.accepted] == [2, 2, 1]
    assert sink.pending_rows == 0
    assert sink.rows_written == 5
    sink.flush()
    assert len(post.accepted) == 3


def test_retry_honours_retry_after_then_succeeds():
    slept = []
    post = Post(_Retry("HTTP 429", 1.5), _Retry("HTTP 503", None))
    sink = InfluxSink(spec(), post=post, sleep=slept.append, max_retry_s=60)
    retried = []
    sink.on_retry = retried.append
    sink.write("kpi", kpi_frame())
    sink.flush()
    assert slept[0] >= 1.5
    assert len(slept) == 2
    assert retried == ["store", "store"]
    assert sink.retries == 2
    assert sink.rows_written == 3


def test_exhausted_retries_raise_backpressure_and_keep_the_rows():
    post = Post(*[_Retry("HTTP 503", 2.0)] * 3)
    sink = InfluxSink(spec(), post=post, sleep=lambda s: None, max_retry_s=3)
    sink.write("kpi", kpi_frame())
    with pytest.raises(SinkBackpressure) as ei:
        sink.flush()
    assert ei.value.retry_after >= 2.0
    assert sink.pending_rows == 3
    assert not post.accepted
    sink.flush()  # the store is back (post accepts after the queued failures)
    assert sink.pending_rows == 0
    assert sum(len(c) for c in post.accepted) == 3


def test_max_retries_bounds_attempts():
    post = Post(*[_Retry("timeout", None)] * 10)
    sink = InfluxSink(spec(max_retries=2), post=post, sleep=lambda s: None, max_retry_s=1e9)
    sink.write("kpi", kpi_frame())
    with pytest.raises(SinkBackpressure, match="after 3 attempt"):
        sink.flush()


def test_rejected_rows_are_skipped_and_counted():
    post = Post(_Skip(400, "unable to parse"))
    sink = InfluxSink(spec(batch_rows=2), post=post)
    sink.write("kpi", kpi_frame(3))
    sink.flush()
    assert sink.rejected_rows == 2
    assert sink.rows_written == 1


def test_http_status_mapping(monkeypatch):
    from influxdb_client.rest import ApiException

    class Api:
        def __init__(self, status, headers=None):
            self.status, self.headers = status, headers

        def write(self, **kw):
            exc = ApiException(status=self.status, reason="x")
            exc.headers = self.headers
            exc.body = "body"
            raise exc

    sink = InfluxSink(spec())
    sink._api = Api(429, {"Retry-After": "7"})
    with pytest.raises(_Retry) as ei:
        sink._http_post(["l"])
    assert ei.value.retry_after == 7.0
    sink._api = Api(422)
    with pytest.raises(_Skip):
        sink._http_post(["l"])
    sink._api = Api(401)
    with pytest.raises(SinkError, match="token"):
        sink._http_post(["l"])


def test_refused_connection_is_retried_then_backpressure():
    sink = InfluxSink(spec(timeout_s=0.5), max_retry_s=0.3, backoff_s=0.05)
    sink.write("kpi", kpi_frame())
    t0 = time.monotonic()
    with pytest.raises(SinkBackpressure):
        sink.flush()
    assert time.monotonic() - t0 < 5
    assert sink.retries >= 1
    assert sink.pending_rows == 3
    sink.close()


def test_retry_after_forms():
    assert _retry_after({"Retry-After": "3"}) == 3.0
    assert _retry_after({"retry-after": "-1"}) == 0.0
    assert _retry_after(None) is None
    assert _retry_after({"Retry-After": "soon"}) is None
    assert 0 <= _retry_after({"Retry-After": time.strftime(
        "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))}) <= 31
