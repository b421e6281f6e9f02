"""The one rule for time: every timestamp is an instant, stored and compared in UTC.

A *naive* timestamp (no time zone) means UTC, everywhere: in sources, in spines, in feature
function output and in arguments such as ``materialize(start=...)``. Aware timestamps in any zone
are converted to UTC. Dates, strings and integers are not timestamps and are rejected with the
column's name and dtype, because guessing their meaning is how point-in-time bugs start.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa

from featurekit.errors import SchemaError

TIMESTAMP = pa.timestamp("us", tz="UTC")


def utc(value: datetime | date | str, what: str) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive = UTC; ISO strings are parsed)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise SchemaError(
                f"{what} {value!r} is not an ISO-8601 timestamp (e.g. 2026-03-01 or 2026-03-01T12:00:00Z)"
            ) from exc
    elif not isinstance(value, datetime):
        if isinstance(value, date):
            value = datetime(value.year, value.month, value.day)
        else:
            raise SchemaError(f"{what} must be a datetime, got {type(value).__name__} {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def check_timestamp_type(dtype: pa.DataType, column: str, where: str) -> None:
    """Raise :class:`SchemaError` unless ``dtype`` is an Arrow timestamp."""
    if not pa.types.is_timestamp(dtype):
        hint = ""
        if pa.types.is_date(dtype):
            hint = "; cast the date to a timestamp (e.g. pl.col(c).cast(pl.Datetime)) and decide its time of day"
        elif pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
            hint = "; parse it first (e.g. pl.col(c).str.to_datetime() or CAST(c AS TIMESTAMPTZ) in SQL)"
        elif pa.types.is_integer(dtype):
            hint = "; convert the epoch number first (e.g. pl.from_epoch(c, time_unit='s'))"
        raise SchemaError(f"column {column!r} of {where} must be a timestamp, got {dtype}{hint}")


def to_utc_column(array: pa.ChunkedArray | pa.Array, column: str, where: str) -> pa.ChunkedArray:
    """Cast a timestamp column to ``timestamp[us, UTC]`` (naive values are taken as UTC)."""
    check_timestamp_type(array.type, column, where)
    if isinstance(array, pa.Array):
        array = pa.chunked_array([array])
    dtype: pa.TimestampType = array.type
    if dtype.tz is None:
        array = array.cast(pa.timestamp(dtype.unit, tz="UTC"))
    elif dtype.tz != "UTC":
        # The stored values are UTC instants already; only the display zone changes.
        array = array.cast(pa.timestamp(dtype.unit, tz="UTC"))
    if array.type.unit != "us":
        array = array.cast(TIMESTAMP, safe=False) if array.type.unit == "ns" else array.cast(TIMESTAMP)
    return array


def normalize_timestamps(table: pa.Table, columns: list[str], where: str) -> pa.Table:
    """Return ``table`` with each of ``columns`` as ``timestamp[us, UTC]``."""
    for column in columns:
        index = table.schema.get_field_index(column)
        table = table.set_column(index, column, to_utc_column(table.column(index), column, where))
    return table


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    """The aware UTC datetime of microseconds since the epoch."""
    return datetime.fromtimestamp(value // 1_000_000, tz=UTC).replace(microsecond=value % 1_000_000)
