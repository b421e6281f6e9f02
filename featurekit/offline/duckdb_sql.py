"""SQL fragments both DuckDB modules share: instants, the order of "newest", and read errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from featurekit.errors import DataError, StorageError
from featurekit.names import quote
from featurekit.offline.engine import ViewInput


def instant(column: str, dtype: pa.DataType) -> str:
    """SQL of ``column`` as a UTC instant in microseconds, truncated toward the past.

    ``CAST`` of a nanosecond timestamp rounds to the nearest microsecond, which could put an
    instant up to 500 ns after itself; the floor keeps "at or before" exact.
    """
    if pa.types.is_timestamp(dtype) and dtype.unit == "ns":
        ns = f"epoch_ns({column})"
        return f"make_timestamptz(({ns} - (({ns} % 1000) + 1000) % 1000) // 1000)"
    return f"CAST({column} AS TIMESTAMPTZ)"


def order_key(view: ViewInput, alias: str) -> list[str]:
    """Struct fields after the event time that decide "newest" on ties, then carry the values.

    Created time (null loses), then feature by feature: non-null beats null (DuckDB sorts a null
    field high, so without the flag a null would win), then the greater value.
    """
    created = (
        [f"__c := coalesce({alias}.{quote(view.created_field)}, TIMESTAMPTZ '-infinity')"] if view.created_field else []
    )
    values = []
    for i, (column, _) in enumerate(view.features):
        values += [f"{quote('n' + str(i))} := {alias}.{quote(column)} IS NOT NULL"]
        values += [f"{quote('v' + str(i))} := {alias}.{quote(column)}"]
    return created + values


@contextmanager
def reading_offline(spine_file: Path | None = None) -> Iterator[None]:
    """Turn DuckDB's failure to read stored files into a :class:`StorageError` (or a spine's DataError)."""
    try:
        yield
    except duckdb.Error as exc:
        if spine_file is not None and str(spine_file) in str(exc):
            raise DataError(
                f"the spine file {spine_file} could not be read: {first_line(exc)}; "
                "write it again (the feature data was not touched)"
            ) from exc
        raise StorageError(
            f"reading the offline data failed: {first_line(exc)}; run `featurekit verify` "
            "to find damaged files (other versions stay readable)"
        ) from exc


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
