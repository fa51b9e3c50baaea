"""InfluxDB v2 write API sink: synchronous, own batching, retries that honour Retry-After.

Rows are turned into line-protocol strings with polars expressions (one pass per frame,
~4x faster than ``Point`` objects) and buffered by :meth:`InfluxSink.write`. Only
:meth:`InfluxSink.flush` talks to the server: it posts the buffer in chunks of
``batch_rows`` and returns once every chunk is accepted. Transient failures (429, 5xx,
timeouts, refused connections) are retried with exponential backoff for a bounded time; if
the store is still unavailable it raises :class:`~pueflow.exceptions.SinkBackpressure` with
``retry_after`` and *keeps* the unwritten lines, so the caller pauses its input, waits and
calls ``flush`` again. Nothing is dropped and nothing is acknowledged early.

Rejections that can never succeed (400 bad lines, 422 outside retention) are logged,
counted in ``rejected_rows`` and skipped, so one poison row cannot stall a service.
Identity is (measurement, tags, time): re-writing a row overwrites it. Empty tag values are
omitted (line protocol has no empty tags); null and non-finite fields are omitted, and a row
with no field left is not written. Escaping is :mod:`pueflow.connectors.lp_escape`'s (the
decoder's); a tag value line protocol cannot carry (a newline) gets U+FFFD in its place.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from pueflow.connectors.lp_escape import (
    escape_key,
    escape_key_expr,
    escape_measurement,
    escape_string_expr,
)
from pueflow.exceptions import SinkBackpressure, SinkError
from pueflow.schema import rows as rw

if TYPE_CHECKING:
    from pueflow.config.models import Sink

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
SKIP_STATUS = frozenset({400, 413, 422})


# --------------------------------------------------------------------------- line protocol


def _field_expr(name: str, dtype: pl.DataType) -> pl.Expr | None:
    col = pl.col(name)
    key = escape_key(name) + "="
    if dtype.is_float():
        ok = col.is_not_null() & col.is_finite()
        return pl.when(ok).then(pl.lit(key) + col.cast(pl.Float64).cast(pl.Utf8))
    if dtype.is_integer():
        return pl.when(col.is_not_null()).then(pl.lit(key) + col.cast(pl.Utf8) + pl.lit("i"))
    if dtype == pl.Boolean:
        return pl.when(col.is_not_null()).then(
            pl.lit(key) + pl.when(col).then(pl.lit("true")).otherwise(pl.lit("false")))
    if dtype in (pl.Utf8, pl.Categorical):
        s = escape_string_expr(col.cast(pl.Utf8))
        return pl.when(col.is_not_null()).then(pl.lit(key + '"') + s + pl.lit('"'))
    return None


def to_lines(measurement: str, df: pl.DataFrame, extra_tags: dict[str, str] | None = None
             ) -> list[str]:
    """Encode the rows of one measurement as line-protocol strings (see the module doc).

    Tags are the measurement's tag columns (:mod:`pueflow.schema.rows`) present in ``df``;
    every other column except ``time`` is a field. Timestamps are ns since the epoch.
    """
    if df.height == 0:
        return []
    exprs = _line_exprs(measurement, tuple(df.schema.items()),
                        tuple(sorted(extra_tags.items())) if extra_tags else ())
    if exprs is None:
        return []
    out = df.select(*exprs).filter(
        pl.col("f").is_not_null() & (pl.col("f") != "") & pl.col("t").is_not_null())
    return out.select(pl.concat_str([pl.col("h"), pl.col("f"), pl.col("t")], separator=" ")
                      ).to_series().to_list()


@functools.lru_cache(maxsize=256)
def _line_exprs(measurement: str, schema: tuple, extra: tuple) -> tuple[pl.Expr, ...] | None:
    """Head (measurement and tags), fields and time expressions of :func:`to_lines`.

    Built once per (measurement, column names and types, fixed tags): a service writes
    frames of the same few schemas every window, and building ~40 expressions cost more
    than evaluating them.
    """
    extra_tags = dict(extra)
    columns = dict(schema)
    tags = [c for c in rw.tag_columns(measurement) if c in columns]
    head: list[pl.Expr] = [pl.lit(escape_measurement(measurement))]
    for t in sorted(set(tags) | set(extra_tags)):
        if t in extra_tags:
            fixed = extra_tags[t]
            if fixed:
                head.append(pl.lit(f",{escape_key(t)}=") + escape_key_expr(pl.lit(fixed)))
            continue
        v = pl.col(t).cast(pl.Utf8)
        head.append(pl.when(v.is_not_null() & (v != "")).then(
            pl.lit(f",{escape_key(t)}=") + escape_key_expr(v)).otherwise(pl.lit("")))
    fields = [e for c in rw.field_columns(measurement, pl.DataFrame(schema=columns)) if c not in extra_tags
              if (e := _field_expr(c, columns[c])) is not None]
    if not fields:
        return None
    ts = pl.col(rw.TIME).cast(pl.Datetime("ns", "UTC")).dt.epoch("ns").cast(pl.Utf8)
    return (pl.concat_str(head).alias("h"),
            pl.concat_str(fields, separator=",", ignore_nulls=True).alias("f"),
            ts.alias("t"))


# --------------------------------------------------------------------------- the sink


def _retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not headers:
        return None
    value = None
    for k, v in dict(headers).items():
        if str(k).lower() == "retry-after":
            value = str(v).strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


class InfluxSink:
    """Write rows to an InfluxDB v2 write API (InfluxDB 2.x/3.x, VictoriaMetrics).

    Parameters
    ----------
    spec : Sink
        ``url``, ``org``, ``bucket``, ``token_env``, ``batch_rows``, ``timeout_s`` and
        ``max_retries`` are used.
    run : str
        Value of the ``run`` tag written on rows that do not carry one.
    max_retry_s : float
        Longest time one :meth:`flush` spends retrying before it raises
        :class:`SinkBackpressure` [s].
    post : callable, optional
        ``post(lines: list[str]) -> None`` replacing the HTTP write (tests).
    """

    def __init__(self, spec: Sink, *, run: str = "", max_retry_s: float = 5.0,
                 backoff_s: float = 0.2, post: Callable[[list[str]], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.name = spec.name
        self.spec = spec
        self.run = run
        self.batch_rows = spec.batch_rows
        self.max_retries = spec.max_retries
        self.max_retry_s = max_retry_s
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._pending: deque[list[str]] = deque()
        self._n_pending = 0
        self.rows_written = 0
        self.rejected_rows = 0
        self.retries = 0
        self.on_retry: Callable[[str], None] | None = None
        self._client: Any = None
        self._api: Any = None
        self._post = post or self._http_post
        if post is None:
            # the client library loads and the client is built now, not inside the first
            # flush after a window closes (~0.1-0.2 s of imports on that flush's latency)
            self._write_api()

    # -- buffering
    def write(self, measurement: str, df: pl.DataFrame) -> None:
        """Buffer ``df``'s rows as line protocol (no I/O)."""
        extra = {"run": self.run} if "run" not in df.columns else None
        lines = to_lines(measurement, df, extra)
        for i in range(0, len(lines), self.batch_rows):
            self._pending.append(lines[i:i + self.batch_rows])
        self._n_pending += len(lines)

    @property
    def pending_rows(self) -> int:
        """Rows buffered by :meth:`write` and not yet accepted by the store."""
        return self._n_pending

    # -- I/O
    def flush(self) -> None:
        """Post every buffered row; return when all are accepted.

        Raises
        ------
        SinkBackpressure
            The store stayed unavailable for ``max_retry_s`` (or ``max_retries`` attempts);
            the rows are kept for the next call.
        """
        while self._pending:
            chunk = self._pending[0]
            self._post_with_retry(chunk)
            self._pending.popleft()
            self._n_pending -= len(chunk)

    def _post_with_retry(self, chunk: list[str]) -> None:
        t0 = time.monotonic()
        attempt = 0
        waited = 0.0
        while True:
            try:
                self._post(chunk)
            except _Skip as exc:
                self.rejected_rows += len(chunk)
                # an expected HTTP answer, not a fault of ours: the status and body say it all,
                # a traceback would only bury them
                log.error("sink %s rejected %d rows (HTTP %s): %s; skipping them",  # noqa: TRY400
                          self.name, len(chunk), exc.status, exc.body[:500])
                return
            except _Retry as exc:
                attempt += 1
                self.retries += 1
                if self.on_retry is not None:
                    self.on_retry(self.name)
                delay = min(self.backoff_s * 2 ** (attempt - 1), 5.0) * (0.75 + random.random() / 2)
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                spent = max(time.monotonic() - t0, waited)
                if attempt > self.max_retries or spent + delay > self.max_retry_s:
                    msg = (f"sink {self.name!r} ({self.spec.url}) unavailable after {attempt} "
                           f"attempt(s) in {spent:.1f} s: {exc}; {self._n_pending} rows kept, "
                           "pausing input")
                    raise SinkBackpressure(msg, retry_after=delay) from None
                log.warning("sink %s: %s; retry %d in %.2f s", self.name, exc, attempt, delay)
                self._sleep(delay)
                waited += delay
            else:
                self.rows_written += len(chunk)
                return

    def _http_post(self, lines: list[str]) -> None:
        from influxdb_client.rest import ApiException

        api = self._write_api()
        try:
            api.write(bucket=self.spec.bucket, org=self.spec.org, record=lines,
                      write_precision="ns")
        except ApiException as exc:
            status = int(exc.status or 0)
            body = str(exc.body or exc.reason or "")
            if status in RETRY_STATUS or status >= 500 or status == 0:
                why = f"HTTP {status} {exc.reason}"
                raise _Retry(why, _retry_after(exc.headers)) from None
            if status in SKIP_STATUS:
                raise _Skip(status, body) from None
            msg = (f"sink {self.name!r}: HTTP {status} {exc.reason}: {body[:300]}; check the "
                   "url, org, bucket and the token in ${self.spec.token_env}")
            raise SinkError(msg) from None
        except (OSError, _urllib3_errors()) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}"[:300], None) from None

    def _write_api(self) -> Any:
        if self._api is None:
            from influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS

            token = self.spec.token().get_secret_value() or "unset"
            # retries=False: ours honour Retry-After and bound the time; urllib3's do neither
            self._client = InfluxDBClient(url=self.spec.url, token=token, org=self.spec.org,
                                          timeout=int(self.spec.timeout_s * 1000), retries=False,
                                          enable_gzip=True)
            self._api = self._client.write_api(write_options=SYNCHRONOUS)
        return self._api

    def close(self) -> None:
        """Close the HTTP client; rows still buffered are logged as unwritten, not posted.

        Call :meth:`flush` first to write them. Closing twice is harmless.
        """
        if self._pending:
            log.warning("sink %s closed with %d unwritten rows (they were not committed)",
                        self.name, self._n_pending)
        if self._client is not None:
            self._client.close()
            self._client = self._api = None


class _Retry(Exception):  # noqa: N818 - internal control flow
    def __init__(self, message: str, retry_after: float | None):
        super().__init__(message)
        self.retry_after = retry_after


class _Skip(Exception):  # noqa: N818 - internal control flow
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}")
        self.status, self.body = status, body


def _urllib3_errors() -> type[Exception]:
    from urllib3.exceptions import HTTPError

    return HTTPError
