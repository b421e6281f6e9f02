"""Values in and out of online stores, so that a lookup returns what the training set holds.

SQLite has no booleans, timestamps, lists or NaN (it stores NaN as NULL), so some Arrow types need
an encoding on the way in and a decoding on the way out. Numbers and strings pass unchanged; the
codecs are chosen once per column from the view's registered Arrow type.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, date
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from featurekit.timestamps import from_micros, to_micros

Decoder = Callable[[Any], Any]

_NAN = "NaN"


def _encode_float(values: list[Any]) -> list[Any]:
    return [_NAN if v is not None and math.isnan(v) else v for v in values]


def _decode_float(value: Any) -> Any:
    return math.nan if value == _NAN else value


def _encode_timestamp(values: list[Any]) -> list[Any]:
    return [None if v is None else to_micros(v if v.tzinfo else v.replace(tzinfo=UTC)) for v in values]


def _encode_json(values: list[Any]) -> list[Any]:
    return [None if v is None else json.dumps(v, default=str) for v in values]


def python_values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """The column's values as Python objects (numbers without nulls through numpy, which is faster)."""
    dtype = column.type
    if (pa.types.is_integer(dtype) or pa.types.is_floating(dtype)) and column.null_count == 0:
        values: list[Any] = column.to_numpy().tolist()
        return values
    values = column.to_pylist()
    return values


def encode_column(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """A column as the Python values a store keeps."""
    dtype = column.type
    values = python_values(column)
    if pa.types.is_floating(dtype):
        has_nan = len(column) > 0 and pc.any(pc.is_nan(column)).as_py()
        return _encode_float(values) if has_nan else values
    if pa.types.is_timestamp(dtype):
        return _encode_timestamp(values)
    if pa.types.is_date(dtype):
        return [None if v is None else v.isoformat() for v in values]
    if pa.types.is_decimal(dtype):
        return [None if v is None else str(v) for v in values]
    if pa.types.is_nested(dtype):
        return _encode_json(values)
    if pa.types.is_boolean(dtype):
        return [None if v is None else int(v) for v in values]
    return values


def decoder(dtype: pa.DataType) -> Decoder | None:
    """How to turn a stored value back into the training set's Python value (``None``: as is)."""
    if pa.types.is_floating(dtype):
        return _decode_float
    if pa.types.is_timestamp(dtype):
        zoned = dtype.tz is not None

        def timestamp(value: Any) -> Any:
            if value is None:
                return None
            moment = from_micros(value)
            return moment if zoned else moment.replace(tzinfo=None)

        return timestamp
    if pa.types.is_date(dtype):
        return lambda v: None if v is None else date.fromisoformat(v)
    if pa.types.is_decimal(dtype):
        return lambda v: None if v is None else Decimal(v)
    if pa.types.is_nested(dtype):
        return lambda v: None if v is None else json.loads(v)
    if pa.types.is_boolean(dtype):
        return lambda v: None if v is None else bool(v)
    return None


__all__ = ["decoder", "encode_column", "python_values"]
