"""Entity keys online: the values a lookup is given, checked against the view's key types, encoded.

The rule is the offline join's (``featurekit.frames.key_family``): a value of the key's family
is cast to the key's exact type when that loses nothing (an int64 value for an int32 key, a naive
datetime for a UTC timestamp key: naive means UTC); a value of another family, or one the cast
would change (2^63 for an int64 key), is a :class:`SchemaError` naming the key, the value and the
type expected.

One encoding serves loading and lookups (:func:`encode_keys`), from typed values, so a key
written by a materialization and the same key asked for by a lookup always meet. A single key is
its value for integers and strings, its text for dates, decimals and binaries (hex), its
microseconds for timestamps, JSON for the rest; several keys are a JSON array of those parts, so
(1, "23") and (12, "3") stay apart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from featurekit.errors import DataError, SchemaError
from featurekit.frames import key_family
from featurekit.online.base import Key

_TWO_64 = 2**64
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class KeyType:
    """One join key of a view: its name and registered Arrow type, with the fast path's bounds."""

    name: str
    dtype: pa.DataType
    bounds: tuple[int, int] | None  # integer keys: the values that fit
    text: bool  # string keys
    plain: bool  # a value of the type is its own key (ints but uint64, strings)

    @classmethod
    def of(cls, name: str, dtype: pa.DataType) -> KeyType:
        if pa.types.is_dictionary(dtype):
            dtype = dtype.value_type
        bounds = None
        if pa.types.is_integer(dtype):
            bits = dtype.bit_width
            signed = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
            bounds = (0, 2**bits - 1) if pa.types.is_unsigned_integer(dtype) else signed
        text = key_family(dtype) == "string"
        return cls(name, dtype, bounds, text, text or (bounds is not None and dtype != pa.uint64()))


def typed_values(key: KeyType, values: Sequence[Any]) -> list[Any]:
    """``values`` as Python values of the key's type, or an error naming the first that does not fit."""
    if key.bounds is not None:
        low, high = key.bounds
        for value in values:  # the hot path: ints of the right range need no conversion
            if type(value) is not int or not low <= value <= high:
                break
        else:
            return list(values)
    elif key.text:
        for value in values:
            if type(value) is not str:
                break
        else:
            return list(values)
    for index, value in enumerate(values):
        if value is None:
            raise DataError(f"entity {index} has a null {key.name!r}; every key part needs a value")
    cast: list[Any] = _cast(key, values).to_pylist()
    return cast


def _cast(key: KeyType, values: Sequence[Any]) -> pa.Array:
    """The slow path: through Arrow, value by value on failure so that the error can name the value."""
    try:
        return _cast_one(key, list(values))
    except SchemaError:
        for index, value in enumerate(values):
            try:
                _cast_one(key, [value])
            except SchemaError as exc:
                raise SchemaError(f"entity {index} {exc}") from None
        raise


def _cast_one(key: KeyType, values: list[Any]) -> pa.Array:
    first = values[0] if values else None
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise _mismatch(key, first, f"({exc})") from None
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    family = key_family(array.type)
    if family != key_family(key.dtype):
        raise _mismatch(key, first, "")
    if pa.types.is_timestamp(array.type) and array.type.tz is None and pa.types.is_timestamp(key.dtype):
        array = array.cast(pa.timestamp(array.type.unit, tz=key.dtype.tz or "UTC"))  # naive means UTC
    try:
        return array.cast(key.dtype, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _mismatch(key, first, f"(it does not fit: {str(exc).splitlines()[0]})") from None


def _mismatch(key: KeyType, value: Any, detail: str) -> SchemaError:
    kind = type(value).__name__
    return SchemaError(
        f"key {key.name!r} is {kind} {value!r}, but the view's key is {key.dtype}{' ' + detail if detail else ''}; "
        f"pass a value of type {key.dtype}"
    )


def _parts(column: pa.Array | pa.ChunkedArray | list[Any], dtype: pa.DataType, single: bool) -> list[Any]:
    """The key parts of one column: Python values every store can key on (and JSON can hold)."""
    if isinstance(column, list):
        array = None
        values = column
    else:
        array = column
        if pa.types.is_dictionary(array.type):
            array = (array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array).dictionary_decode()
        dtype = array.type
        values = []
    family = key_family(dtype)
    if pa.types.is_timestamp(dtype):
        if array is None:
            array = pa.array(values, dtype)
        micros: list[Any] = array.cast(pa.timestamp("us", tz=dtype.tz), safe=False).cast(pa.int64()).to_pylist()
        return micros
    if array is not None:
        if (pa.types.is_integer(dtype) or pa.types.is_floating(dtype)) and array.null_count == 0:
            values = array.to_numpy().tolist()
        else:
            values = array.to_pylist()
    if family in ("integer", "string"):
        if single and dtype == pa.uint64():  # SQLite integers stop at 2^63-1: keep the bits
            return [v - _TWO_64 if v > _INT64_MAX else v for v in values]
        return values
    if pa.types.is_floating(dtype) or pa.types.is_boolean(dtype):
        return values
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_fixed_size_binary(dtype):
        return [v.hex() for v in values]
    if pa.types.is_date(dtype) or pa.types.is_decimal(dtype):
        return [str(v) for v in values]
    return [json.dumps(v, default=str, sort_keys=True) for v in values]


def encode_keys(columns: Sequence[pa.Array | pa.ChunkedArray | list[Any]], dtypes: Sequence[pa.DataType]) -> list[Key]:
    """One key per entity, from its key columns (Arrow columns, or Python values of the key's type)."""
    if len(columns) == 1:
        parts = _parts(columns[0], dtypes[0], single=True)
        return [v if isinstance(v, (int, str)) else json.dumps(v) for v in parts]
    pieces = [_parts(c, d, single=False) for c, d in zip(columns, dtypes, strict=True)]
    return [json.dumps(list(p), separators=(",", ":"), ensure_ascii=False) for p in zip(*pieces, strict=True)]
