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

from featurekit.online.base import Key, OnlineRows

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
    # (integer keys inline: the common case)
    members = [b"i%d" % k if type(k) is int else encode_redis_key(k).encode() for k in rows.keys]
    return PackedRows(tuple(features), members, blobs)


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
