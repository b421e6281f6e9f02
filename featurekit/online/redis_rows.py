"""The bytes of one entity's row in the Redis online store: exact, compact, no pickle.

A row is one Redis string::

    event_us  int64, big-endian        } the first 16 bytes: the age the write script compares
    created_us int64, big-endian       }
    count     uint16                     how many values follow
    tags      count bytes                one per value, saying its type
    payload                              the values in the table's feature order

Tags: ``d`` float64 (8 bytes, so every float comes back bit for bit: infinities, -0.0, NaN),
``q`` int64 (8 bytes), ``n`` None (nothing), ``s`` str (uint32 length + UTF-8), ``b`` bytes
(uint32 length + the bytes), ``i`` an int outside int64 (uint32 length + its decimal digits).
Those are the values :mod:`featurekit.online.codecs` hands to stores (the NaN marker is a str);
booleans are stored as the integers they are (as SQLite does).

The big-endian age sorts as two 32-bit halves (signed high, unsigned low), which is how the Lua
write script compares it without the precision Lua numbers (doubles) lose above 2**53.

:func:`pack_rows` encodes a write's rows and keys ahead of the write (:class:`PackedRows`): it
needs no connection, so a materialization runs it beside its offline write.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurekit.online.base import NO_CREATED, Key, OnlineRows

HEAD = struct.Struct(">qqH")
_LENGTH = struct.Struct(">I")
_FLOAT = struct.Struct(">d")
_INT = struct.Struct(">q")
_INT64 = (-(2**63), 2**63 - 1)
_FIXED = {ord("d"): "d", ord("q"): "q"}
_CACHED_LAYOUTS = 4096  # distinct tag strings whose decoders are kept (a decoder is a few hundred bytes)

Reader = Callable[[bytes, int], tuple[Any, ...]]


def _encode_value(value: Any, tags: bytearray, parts: list[bytes]) -> None:
    kind = type(value)
    if kind is float:
        tags.append(100)  # d
        parts.append(_FLOAT.pack(value))
    elif value is None:
        tags.append(110)  # n
    elif kind is str:
        data = value.encode()
        tags.append(115)  # s
        parts += (_LENGTH.pack(len(data)), data)
    elif isinstance(value, int):  # int, and bool as the integer it is
        if _INT64[0] <= value <= _INT64[1]:
            tags.append(113)  # q
            parts.append(_INT.pack(value))
        else:
            digits = str(int(value)).encode()
            tags.append(105)  # i
            parts += (_LENGTH.pack(len(digits)), digits)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        tags.append(98)  # b
        parts += (_LENGTH.pack(len(data)), data)
    else:
        raise TypeError(f"the Redis online store cannot keep a {kind.__name__} ({value!r}); encode it first")


def encode_row(event_us: int, created_us: int, values: Sequence[Any]) -> bytes:
    """One row as stored (any mix of the value types above)."""
    tags = bytearray()
    parts: list[bytes] = []
    for value in values:
        _encode_value(value, tags, parts)
    return HEAD.pack(event_us, created_us, len(values)) + bytes(tags) + b"".join(parts)


def _uniform_code(column: Sequence[Any]) -> str | None:
    """``d`` or ``q`` when every value of the column is a float, or an int within int64; else None."""
    kinds = set(map(type, column))
    if kinds == {float}:
        return "d"
    if kinds == {int} and _INT64[0] <= min(column) and max(column) <= _INT64[1]:
        return "q"
    return None


def encode_rows(event_us: Sequence[int], created_us: Sequence[int], columns: Sequence[Sequence[Any]]) -> list[bytes]:
    """Every row of a write, by one precompiled struct when each column holds one fixed-size type.

    That is the common case (numeric features without nulls): one C call per row instead of a
    Python loop over its values.
    """
    codes = [_uniform_code(column) for column in columns] if len(event_us) else []
    if columns and all(codes):
        tags = "".join(c for c in codes if c).encode()
        packer = struct.Struct(f">qqH{len(tags)}s{tags.decode()}")
        count = len(columns)
        return [
            packer.pack(event, created, count, tags, *values)
            for event, created, *values in zip(event_us, created_us, *columns, strict=True)
        ]
    return [
        encode_row(event, created, values)
        for event, created, *values in zip(event_us, created_us, *columns, strict=True)
    ]


def _fixed_reader(tags: bytes) -> Reader:
    """Values of a row whose tags are only ``d``, ``q`` and ``n``: one struct unpack."""
    unpacker = struct.Struct(">" + "".join(_FIXED.get(t, "") for t in tags))
    nulls = [i for i, t in enumerate(tags) if t == ord("n")]
    if not nulls:
        return unpacker.unpack_from

    def read(blob: bytes, offset: int) -> tuple[Any, ...]:
        values = list(unpacker.unpack_from(blob, offset))
        for position in nulls:
            values.insert(position, None)
        return tuple(values)

    return read


def _reader(tags: bytes) -> Reader:
    if all(t in _FIXED or t == ord("n") for t in tags):
        return _fixed_reader(tags)

    def read(blob: bytes, offset: int) -> tuple[Any, ...]:
        values: list[Any] = []
        for tag in tags:
            if tag == 100:
                values.append(_FLOAT.unpack_from(blob, offset)[0])
                offset += 8
            elif tag == 113:
                values.append(_INT.unpack_from(blob, offset)[0])
                offset += 8
            elif tag == 110:
                values.append(None)
            else:
                (length,) = _LENGTH.unpack_from(blob, offset)
                data = blob[offset + 4 : offset + 4 + length]
                offset += 4 + length
                values.append(data.decode() if tag == 115 else bytes(data) if tag == 98 else int(data))
        return tuple(values)

    return read


_readers: dict[bytes, Reader] = {}


def decode_row(blob: bytes) -> tuple[int, int, tuple[Any, ...]]:
    """``(event_us, created_us, values)`` of a stored row."""
    event, created, count = HEAD.unpack_from(blob)
    end = HEAD.size + count
    tags = blob[HEAD.size : end]
    reader = _readers.get(tags)
    if reader is None:
        reader = _reader(tags)
        if len(_readers) < _CACHED_LAYOUTS:  # rows with many null patterns: decode without caching
            _readers[tags] = reader
    return event, created, reader(blob, end)


def encode_redis_key(key: Key) -> str:
    """The canonical text of an entity key: ``i1`` for the integer 1, ``s1`` for the string "1"."""
    if isinstance(key, int):  # booleans too, as the integers they equal (as in SQLite)
        return f"i{int(key)}"
    return f"s{key}"


@dataclass(frozen=True)
class PackedRows:
    """Rows of a write as the Redis store keeps them: each key's index member and each row's bytes."""

    features: tuple[str, ...]  # the order of the values in each row
    members: list[bytes]
    blobs: list[bytes]


def pack_rows(rows: OnlineRows, features: Sequence[str]) -> PackedRows:
    """Encode ``rows`` for a table whose feature list is ``features`` (the :data:`~featurekit.online.base.Packer`
    of the Redis store)."""
    blobs = encode_rows(rows.event_us, rows.created_us, [rows.columns[f] for f in features])
    return PackedRows(tuple(features), _members(rows.keys), blobs)


def _members(keys: Sequence[Key]) -> list[bytes]:
    # (integer keys inline: the common case)
    return [b"i%d" % k if type(k) is int else encode_redis_key(k).encode() for k in keys]


def _numpy_type(column: pa.ChunkedArray) -> str | None:
    """The row format's code of a column whose stored values are all one fixed-size type, else None.

    Exactly the columns for which :func:`encode_rows` would find one code: no nulls, floats without
    NaN (stored as the text "NaN"), integers that are their own stored value and fit int64 (not
    uint64), booleans (stored as 0 and 1).
    """
    dtype = column.type
    if column.null_count or not len(column):
        return None
    if dtype in (pa.float32(), pa.float64()):
        return None if pc.any(pc.is_nan(column)).as_py() else "d"
    if pa.types.is_boolean(dtype) or (pa.types.is_integer(dtype) and dtype != pa.uint64()):
        return "q"
    return None


def _column_blobs(newest: pa.Table, features: Sequence[str]) -> list[bytes] | None:
    """Every row's bytes from the Arrow columns at once (one numpy record per row), when each feature
    column holds one fixed-size type; the bytes :func:`encode_rows` makes of the same rows."""
    codes = [_numpy_type(newest.column(f)) for f in features]
    times = [newest.column("__fk_event").type, newest.column("__fk_created").type]
    if not features or not all(codes) or not all(t == pa.int64() for t in times) or newest["__fk_event"].null_count:
        return None
    tags = "".join(c for c in codes if c)
    layout = [("event", ">i8"), ("created", ">i8"), ("count", ">u2"), ("tags", f"S{len(tags)}")]
    layout += [(f"v{i}", ">f8" if code == "d" else ">i8") for i, code in enumerate(tags)]
    records = np.empty(newest.num_rows, dtype=np.dtype(layout))  # packed: no padding between fields
    records["event"] = newest.column("__fk_event").to_numpy()
    records["created"] = pc.fill_null(newest.column("__fk_created"), NO_CREATED).to_numpy()
    records["count"] = len(tags)
    records["tags"] = tags.encode()
    for i, (feature, code) in enumerate(zip(features, tags, strict=True)):
        column = newest.column(feature)
        records[f"v{i}"] = column.cast(pa.int64()).to_numpy() if code == "q" else column.to_numpy()
    data, size = records.tobytes(), records.dtype.itemsize
    return [data[start : start + size] for start in range(0, len(data), size)]


def pack_newest(newest: pa.Table, rows: OnlineRows, features: Sequence[str]) -> PackedRows:
    """:func:`pack_rows`, from the engine's Arrow table where its columns allow (the Redis store's
    :data:`~featurekit.online.base.Packer`): numeric features without nulls, whole columns at once."""
    blobs = _column_blobs(newest, features)
    if blobs is None or len(blobs) != len(rows):
        return pack_rows(rows, features)
    return PackedRows(tuple(features), _members(rows.keys), blobs)


def packed_parts(rows: OnlineRows, features: Sequence[str]) -> tuple[list[bytes], list[bytes]] | None:
    """The members and row bytes of ``rows.packed``, when every part was packed for ``features``."""
    parts = rows.packed
    wanted = tuple(features)
    if not parts or not all(isinstance(p, PackedRows) and p.features == wanted for p in parts):
        return None
    members = [m for p in parts if isinstance(p, PackedRows) for m in p.members]
    blobs = [b for p in parts if isinstance(p, PackedRows) for b in p.blobs]
    if len(members) != len(rows) or len(blobs) != len(rows):
        return None
    return members, blobs
