"""Telemetry files out: the canonical long form as Parquet, CSV, JSON-lines or line protocol.

The simulator and ``pueflow produce`` write through here; :mod:`pueflow.connectors.files`
reads the same formats back.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO, cast

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pueflow.connectors.files import (
    COLUMNS,
    FORMATS,
    KEY_COLUMNS,
    _missing_message,
    format_of,
)
from pueflow.connectors.wire import encode_json, encode_line, unit_ns
from pueflow.exceptions import InputFormatError

_DICT = pa.dictionary(pa.int32(), pa.string())
PARQUET_SCHEMA = pa.schema([("time", pa.timestamp("ns", "UTC")), ("site", _DICT),
                            ("device", _DICT), ("point", _DICT), ("value", pa.float64())])


def _canonical(df: pl.DataFrame, path: Path) -> pl.DataFrame:
    import polars as pl

    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputFormatError(str(path), _missing_message(missing, df.columns), column=missing[0])
    t = df.schema["time"]
    if not isinstance(t, pl.Datetime) or t.time_zone is None:
        msg = f"time column is {t}; write Datetime('ns', 'UTC') (time-zone aware event time)"
        raise InputFormatError(str(path), msg, column="time")
    return df.select(pl.col("time").dt.convert_time_zone("UTC").cast(pl.Datetime("ns", "UTC")),
                     *(pl.col(k).cast(pl.String) for k in KEY_COLUMNS),
                     pl.col("value").cast(pl.Float64))


class TelemetryWriter:
    """Append canonical long-form frames to one telemetry file, chunk by chunk.

    Parquet gets dictionary-encoded ids, zstd and row groups of ``row_group_rows`` (frames
    are buffered until a group is full); ``jsonl`` is Telegraf JSON with timestamps in
    ``timestamp_unit``; ``lp`` is line protocol. Text formats are gzipped if the name ends
    in ``.gz``. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | Path, format: str | None = None, *,  # noqa: A002
                 timestamp_unit: str = "ns", row_group_rows: int = 1_000_000):
        self.path = Path(path)
        self.format = format or format_of(self.path)
        if self.format not in FORMATS:
            msg = f"format {self.format!r} is not one of {FORMATS}"
            raise ValueError(msg)
        self.timestamp_unit = timestamp_unit
        unit_ns(timestamp_unit)
        self.row_group_rows = row_group_rows
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._pq: pq.ParquetWriter | None = None
        self._fh: IO[bytes] | None = None
        if self.format == "parquet":
            self._pq = pq.ParquetWriter(self.path, PARQUET_SCHEMA, compression="zstd",
                                        use_dictionary=list(KEY_COLUMNS), write_statistics=True)
        else:
            gz = self.path.suffix.lower() == ".gz"
            # typeshed types GzipFile as a BufferedIOBase only, though it is a full binary file
            # object (write, flush, close): cast it to the IO[bytes] polars' write_csv takes
            self._fh = (cast(IO[bytes], gzip.open(self.path, "wb", compresslevel=6)) if gz  # noqa: SIM115
                        else open(self.path, "wb"))  # noqa: SIM115

    def write(self, df: pl.DataFrame) -> None:
        """Append the rows of ``df`` (columns time, site, device, point, value)."""
        if df.height == 0:
            return
        df = _canonical(df, self.path)
        self.rows += df.height
        if self._pq is not None:
            t = df.to_arrow()
            t = pa.table([t.column("time").cast(PARQUET_SCHEMA.field("time").type),
                          *(pc.dictionary_encode(t.column(k).cast(pa.string())) for k in KEY_COLUMNS),
                          t.column("value")], schema=PARQUET_SCHEMA)
            self._pending.append(t)
            self._pending_rows += t.num_rows
            if self._pending_rows >= self.row_group_rows:
                self._write_groups(final=False)
            return
        assert self._fh is not None
        if self.format == "csv":
            df.write_csv(self._fh, include_header=self.rows == df.height)
        elif self.format == "jsonl":
            self._fh.write(b"\n".join(encode_json(df, self.timestamp_unit)) + b"\n")
        else:
            self._fh.write(b"\n".join(encode_line(df)) + b"\n")

    def _write_groups(self, final: bool) -> None:
        assert self._pq is not None
        table = pa.concat_tables(self._pending).unify_dictionaries()
        n = table.num_rows if final else table.num_rows - table.num_rows % self.row_group_rows
        if n:
            self._pq.write_table(table.slice(0, n), row_group_size=self.row_group_rows)
        rest = table.slice(n)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def close(self) -> None:
        """Write what is buffered and close the file (idempotent)."""
        if self._pq is not None:
            if self._pending:
                self._write_groups(final=True)
            self._pq.close()
            self._pq = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> TelemetryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_telemetry(df: pl.DataFrame, path: str | Path, format: str | None = None,  # noqa: A002
                    **kwargs: object) -> Path:
    """Write a canonical long-form frame to ``path`` as parquet, csv, jsonl or lp.

    The format defaults to the file extension; ``kwargs`` go to :class:`TelemetryWriter`.
    """
    with TelemetryWriter(path, format, **kwargs) as w:  # type: ignore[arg-type]
        w.write(df)
    return w.path

__all__ = ["PARQUET_SCHEMA", "TelemetryWriter", "write_telemetry"]
