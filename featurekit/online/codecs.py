"""Values in and out of online stores, so that a lookup returns what the training set holds.

SQLite has no booleans, timestamps, decimals, unsigned 64-bit integers or NaN (it stores NaN as
NULL), and no nested values at all, so most Arrow types need an encoding on the way in and a
decoding on the way out. A codec is chosen once per column from the view's registered Arrow type:

- integers, floats, strings and binaries pass unchanged (the lookup hot path: no work at all
  beyond NaN, which is stored as the text ``"NaN"``); uint64 is stored as the signed integer
  with the same bits, since SQLite integers stop at 2^63-1;
- booleans as 0/1, dates as ISO text, decimals as their exact text, microsecond timestamps as
  microseconds since the epoch;
- everything else (lists, structs, maps, nested combinations, times, durations, other units) as
  one Arrow IPC record batch message per value, read back with the registered type: lossless by
  construction, whatever the nesting.

Decoders work on a whole column of stored values (``None`` for a missing or null value) and
return the Python values ``pyarrow`` gives for the registered type, the ones a training set's
``to_pylist()`` holds.
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

Decoder = Callable[[list[Any]], list[Any]]

NAN = "NaN"  # how a float NaN is stored (SQLite would store NaN as NULL)
_TWO_64 = 2**64
_INT64_MAX = 2**63 - 1


def python_values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """The column's values as Python objects (numbers without nulls through numpy, which is faster)."""
    dtype = column.type
    if (pa.types.is_integer(dtype) or pa.types.is_floating(dtype)) and column.null_count == 0:
        values: list[Any] = column.to_numpy().tolist()
        return values
    values = column.to_pylist()
    return values


def _plain(dtype: pa.DataType) -> bool:
    """Types whose Python values every store keeps as they are."""
    return bool(
        (pa.types.is_integer(dtype) and dtype != pa.uint64())
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_binary(dtype)
        or pa.types.is_large_binary(dtype)
        or pa.types.is_fixed_size_binary(dtype)
        or pa.types.is_null(dtype)
    )


def is_float(dtype: pa.DataType) -> bool:
    """float32 and float64: stored as they are, NaN as :data:`NAN`."""
    return dtype in (pa.float32(), pa.float64())


def _micros(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(dtype) and dtype.unit == "us")


def _flat(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def encode_column(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """A column as the Python values a store keeps."""
    dtype = column.type
    if pa.types.is_dictionary(dtype):  # stored (and looked up) as its values
        return encode_column(_flat(column).dictionary_decode())
    if _plain(dtype):
        return python_values(column)
    if is_float(dtype):
        values = python_values(column)
        if len(column) and pc.any(pc.is_nan(column)).as_py():
            return [NAN if v is not None and math.isnan(v) else v for v in values]
        return values
    if dtype == pa.uint64():
        return [v if v is None or v <= _INT64_MAX else v - _TWO_64 for v in python_values(column)]
    if pa.types.is_boolean(dtype):
        return [None if v is None else int(v) for v in column.to_pylist()]
    if pa.types.is_date32(dtype):
        return [None if v is None else v.isoformat() for v in column.to_pylist()]
    if pa.types.is_decimal(dtype):
        return [None if v is None else str(v) for v in column.to_pylist()]
    if _micros(dtype):
        return [None if v is None else to_micros(v if v.tzinfo else v.replace(tzinfo=UTC)) for v in column.to_pylist()]
    return _encode_ipc(_flat(column))


def _small(dtype: pa.DataType) -> pa.DataType:
    """``dtype`` with 32-bit offsets throughout: the same values, and the same Python values.

    pyarrow 26 serializes a one-row slice of a large_list<large_string> with truncated offset
    buffers (the message does not read back), so values are stored with small offsets; their
    Python values are those of the registered type.
    """
    if pa.types.is_large_string(dtype):
        return pa.string()
    if pa.types.is_large_binary(dtype):
        return pa.binary()
    if pa.types.is_large_list(dtype) or pa.types.is_list(dtype):
        return pa.list_(dtype.value_field.with_type(_small(dtype.value_type)))
    if pa.types.is_fixed_size_list(dtype):
        return pa.list_(dtype.value_field.with_type(_small(dtype.value_type)), dtype.list_size)
    if pa.types.is_map(dtype):
        return pa.map_(
            dtype.key_field.with_type(_small(dtype.key_type)),
            dtype.item_field.with_type(_small(dtype.item_type)),
            keys_sorted=dtype.keys_sorted,
        )
    if pa.types.is_struct(dtype):
        return pa.struct([dtype.field(i).with_type(_small(dtype.field(i).type)) for i in range(dtype.num_fields)])
    return dtype


def _encode_ipc(array: pa.Array) -> list[Any]:
    small = _small(array.type)
    if small != array.type:
        array = array.cast(small)
    schema = pa.schema([pa.field("v", small)])
    valid = array.is_valid().to_pylist()
    return [
        pa.record_batch([array.slice(i, 1)], schema=schema).serialize().to_pybytes() if ok else None
        for i, ok in enumerate(valid)
    ]


def _decode_float(values: list[Any]) -> list[Any]:
    if NAN not in values:  # one C-level scan: the hot path of a numeric lookup
        return values
    return [math.nan if v == NAN else v for v in values]


def decoder(dtype: pa.DataType) -> Decoder | None:
    """How to turn a column of stored values back into the training set's Python values (``None``: as is)."""
    if pa.types.is_dictionary(dtype):
        return decoder(dtype.value_type)
    if _plain(dtype):
        return None
    if is_float(dtype):
        return _decode_float
    if dtype == pa.uint64():
        return lambda values: [v + _TWO_64 if v is not None and v < 0 else v for v in values]
    if pa.types.is_boolean(dtype):
        return lambda values: [None if v is None else bool(v) for v in values]
    if pa.types.is_date32(dtype):
        return lambda values: [None if v is None else date.fromisoformat(v) for v in values]
    if pa.types.is_decimal(dtype):
        return lambda values: [None if v is None else Decimal(v) for v in values]
    if _micros(dtype):
        zoned = dtype.tz is not None
        if zoned:
            return lambda values: [None if v is None else from_micros(v) for v in values]
        return lambda values: [None if v is None else from_micros(v).replace(tzinfo=None) for v in values]
    return _ipc_decoder(dtype)


def _ipc_decoder(dtype: pa.DataType) -> Decoder:
    small = _small(dtype)
    schema = pa.schema([pa.field("v", small)])
    missing = pa.nulls(1, small)

    def decode(values: list[Any]) -> list[Any]:
        arrays = []
        found = False
        for value in values:  # (one plain loop: lookups of one entity are the common case)
            if value is None:
                arrays.append(missing)
            elif type(value) is str:
                # Stored before values were kept as Arrow IPC: JSON, as close as it could get.
                return [json.loads(v) if isinstance(v, str) else _read_one(v, schema) for v in values]
            else:
                arrays.append(pa.ipc.read_record_batch(pa.py_buffer(value), schema).column(0))
                found = True
        if not found:
            return values
        decoded: list[Any] = (arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays)).to_pylist()
        return decoded

    return decode


def _read_one(value: bytes | None, schema: pa.Schema) -> Any:
    if value is None:
        return None
    return pa.ipc.read_record_batch(pa.py_buffer(value), schema).column(0)[0].as_py()


def check_servable(schema: pa.Schema, columns: list[str] | None = None) -> list[str]:
    """What in ``schema`` the online store cannot keep losslessly, one problem per column (empty: all fine).

    The codecs above keep every Arrow type except dictionary-encoded values nested inside other
    types (an IPC record batch message carries no dictionaries) and extension types (their meaning
    lives in Python classes the store cannot know). Apply calls this and refuses the view.
    """
    problems = []
    for field in schema:
        if columns is not None and field.name not in columns:
            continue
        problem = _unservable(field.type, top=True)
        if problem is not None:
            problems.append(
                f"column {field.name!r} has type {field.type}, which the online store cannot keep: {problem}"
            )
    return problems


def _unservable(dtype: pa.DataType, *, top: bool) -> str | None:
    if isinstance(dtype, pa.ExtensionType):
        return "extension types are not supported online; return the storage type instead"
    if pa.types.is_dictionary(dtype):
        if not top:
            return "cast the nested dictionary (categorical) values to their value type"
        return _unservable(dtype.value_type, top=True)
    for index in range(dtype.num_fields):
        problem = _unservable(dtype.field(index).type, top=False)
        if problem is not None:
            return problem
    return None


__all__ = ["NAN", "check_servable", "decoder", "encode_column", "is_float", "python_values"]
