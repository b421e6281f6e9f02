"""The typed JSON of the feature server and :class:`featurekit.Client`, in both directions.

JSON has numbers, strings, booleans, arrays, objects and null; the registered Arrow type of each
column (sent with every response) says how to read them back, so a value crosses the wire and comes
out as the Python value the in-process API returns:

- integers stay integers of any size (Python's ``json`` never goes through a float, so a 64-bit key
  round-trips exactly); floats are written with ``repr`` and read back bit for bit;
- NaN and infinities are not JSON: they are written as ``null``, and the response lists each one
  (column, row, path inside a nested value, and ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``) under
  ``not_finite``, from which the client restores them;
- timestamps are RFC 3339 in UTC with microseconds (``2026-03-01T12:00:00.000000Z``; a naive
  timestamp column means UTC), dates ISO (``2026-03-01``), times ``12:00:00.000000``, durations
  integer microseconds, decimals their exact text, binaries base64;
- lists are arrays, structs objects, maps arrays of ``[key, value]`` pairs, all nesting freely.

A lookup may ask for the packed form (:data:`PACKED`, by its ``Accept`` header; ``fk.Client`` does):
the same body, except that each float column of at least :data:`PACK_ROWS` values, all floats or
None, is an object
``{"f64": <hex of little-endian IEEE 754 doubles>, "nulls": [rows that are None]}`` (NaN and
infinities inside it are bits, not ``not_finite`` entries), event times are integer microseconds
(``event_us``) and so is the lookup time (``at_us``), and the per-entity statuses are left out
(``unknown`` where ``event_us`` is null, ``expired`` where it is older than ``at_us - ttl_us``, else
``found``). Parsing 800 floats from JSON text took a client ~0.25 ms of a 100-entity lookup;
unpacking the bytes takes microseconds, and writing them costs the server less than ``repr`` does.
(Hex, not base64: ``bytes.fromhex`` read 800 bytes in 1.2 us, ``base64.b64decode`` in 7 us.)

Request values go through the same decoders: a timestamp key may be sent as RFC 3339 text, a
date key as ISO text. Other values are handed on as JSON gave them, so the library's own type rule
decides (a float for an integer key is a ``SchemaError`` naming the key), never a silent cast here.
"""

from __future__ import annotations

import base64
import math
import sys
from array import array
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

from featurekit.errors import SchemaError

Encoder = Callable[[Any, list[Any], list[tuple[list[Any], str]]], Any]
Decoder = Callable[[Any], Any]

_INF = math.inf
PACKED = "application/vnd.featurekit.packed+json"  # the media type of the packed lookup body
PACK_ROWS = 8  # shorter float columns stay JSON text: parsing a few floats costs less than unpacking them
_SWAP = sys.byteorder == "big"  # packed floats are little-endian on the wire


def _non_finite(value: float) -> str | None:
    if math.isnan(value):
        return "NaN"
    if value == _INF:
        return "Infinity"
    if value == -_INF:
        return "-Infinity"
    return None


_SECONDS: dict[int, str] = {}  # whole seconds -> their RFC 3339 text (event times repeat across requests)
_EPOCH = datetime(1970, 1, 1)


def rfc3339_micros(micros: int) -> str:
    """Microseconds since the epoch as RFC 3339 UTC text with microseconds (the hot path of event times)."""
    seconds, fraction = divmod(micros, 1_000_000)
    text = _SECONDS.get(seconds)
    if text is None:
        if len(_SECONDS) > 100_000:
            _SECONDS.clear()
        text = _SECONDS[seconds] = (_EPOCH + timedelta(seconds=seconds)).isoformat()
    return f"{text}.{fraction:06d}Z"


def rfc3339(value: datetime) -> str:
    """A timestamp as RFC 3339 UTC with microseconds; naive means UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


_SECONDS_OF: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> seconds since the epoch (the reverse of _SECONDS)


def micros_of(text: str) -> int:
    """Microseconds since the epoch of RFC 3339 text (naive means UTC).

    The server's own form (``2026-03-01T12:00:00.123456Z``, :func:`rfc3339_micros`) takes a
    cached parse of its whole seconds: a response carries an event time per entity and view
    (100 entities: 0.3 ms of a client's time parsed in full, on the benchmark machine).
    """
    if len(text) == 27 and text[10] == "T" and text[16] == ":" and text[19] == "." and text[26] == "Z":
        fraction = text[20:26]
        if fraction.isascii() and fraction.isdigit():
            seconds = _SECONDS_OF.get(text[:19])
            if seconds is None:
                if len(_SECONDS_OF) > 100_000:
                    _SECONDS_OF.clear()
                seconds = _SECONDS_OF[text[:19]] = _micros_of(text[:19]) // 1_000_000
            return seconds * 1_000_000 + int(fraction)
    return _micros_of(text)


def _micros_of(text: str) -> int:
    value = datetime.fromisoformat(text)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _plain(dtype: pa.DataType) -> bool:
    """Types whose Python values JSON holds exactly as they are."""
    return bool(
        pa.types.is_integer(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_null(dtype)
    )


def _float(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_floating(dtype))


def value_encoder(dtype: pa.DataType) -> Encoder | None:
    """How to write one value of ``dtype`` as JSON (``None``: it is JSON as it is).

    An encoder takes the value, its path (row, then indexes and field names inside it) and a list
    collecting ``(path, "NaN")`` for each non-finite float it replaced by ``None``.
    """
    if pa.types.is_dictionary(dtype):
        return value_encoder(dtype.value_type)
    if _plain(dtype):
        return None
    if _float(dtype):

        def floating(value: Any, path: list[Any], bad: list[tuple[list[Any], str]]) -> Any:
            if value is None:
                return None
            reason = _non_finite(value)
            if reason is None:
                return value
            bad.append((path, reason))
            return None

        return floating
    if pa.types.is_timestamp(dtype):
        return lambda value, path, bad: None if value is None else rfc3339(value)
    if pa.types.is_date(dtype) or pa.types.is_time(dtype):
        return lambda value, path, bad: None if value is None else value.isoformat()
    if pa.types.is_duration(dtype):
        return lambda value, path, bad: None if value is None else _micros(value)
    if pa.types.is_decimal(dtype):
        return lambda value, path, bad: None if value is None else str(value)
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_fixed_size_binary(dtype):
        return lambda value, path, bad: None if value is None else base64.b64encode(value).decode("ascii")
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype):
        inner = value_encoder(dtype.value_type)
        if inner is None:
            return lambda value, path, bad: value
        item = inner

        def listed(value: Any, path: list[Any], bad: list[tuple[list[Any], str]]) -> Any:
            if value is None:
                return None
            return [item(v, [*path, i], bad) for i, v in enumerate(value)]

        return listed
    if pa.types.is_map(dtype):
        key = value_encoder(dtype.key_type) or _as_is
        val = value_encoder(dtype.item_type) or _as_is

        def mapped(value: Any, path: list[Any], bad: list[tuple[list[Any], str]]) -> Any:
            if value is None:
                return None
            return [[key(k, [*path, i, 0], bad), val(v, [*path, i, 1], bad)] for i, (k, v) in enumerate(value)]

        return mapped
    if pa.types.is_struct(dtype):
        fields = [(dtype.field(i).name, value_encoder(dtype.field(i).type) or _as_is) for i in range(dtype.num_fields)]

        def structured(value: Any, path: list[Any], bad: list[tuple[list[Any], str]]) -> Any:
            if value is None:
                return None
            return {name: enc(value.get(name), [*path, name], bad) for name, enc in fields}

        return structured
    return lambda value, path, bad: None if value is None else str(value)


def _as_is(value: Any, path: list[Any], bad: list[tuple[list[Any], str]]) -> Any:
    return value


def _micros(value: timedelta) -> int:
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds


def encode_column(name: str, values: list[Any], dtype: pa.DataType, not_finite: list[dict[str, Any]]) -> list[Any]:
    """A response column as JSON values; each non-finite float becomes null and an entry of ``not_finite``."""
    if _float(dtype):
        for value in values:  # the hot path: finite floats are JSON as they are
            if value is not None and not math.isfinite(value):
                break
        else:
            return values
    encode = value_encoder(dtype)
    if encode is None:
        return values
    bad: list[tuple[list[Any], str]] = []
    out = [encode(v, [row], bad) for row, v in enumerate(values)]
    for path, reason in bad:
        not_finite.append({"column": name, "row": path[0], "path": path[1:], "value": reason})
    return out


_FLOAT_ONLY = frozenset({float})
_FLOAT_OR_NONE = frozenset({float, type(None)})


def pack_floats(values: list[Any]) -> dict[str, Any] | None:
    """A float column in the packed form (``{"f64": hex, "nulls": [rows]}``, see :data:`PACKED`);
    None (the column then goes as typed JSON) when it has fewer than :data:`PACK_ROWS` values or a
    value is neither a float nor None."""
    if len(values) < PACK_ROWS:
        return None
    kinds = set(map(type, values))
    if kinds <= _FLOAT_ONLY:
        nulls: list[int] = []
        packed = array("d", values)
    elif kinds <= _FLOAT_OR_NONE:
        nulls = [row for row, value in enumerate(values) if value is None]
        packed = array("d", [0.0 if value is None else value for value in values])
    else:
        return None
    if _SWAP:
        packed.byteswap()
    return {"f64": packed.tobytes().hex(), "nulls": nulls}


def unpack_floats(packed: Any, what: str) -> list[Any]:
    """The Python floats (and None) of a packed float column; a malformed one is a :class:`SchemaError`."""
    try:
        values = array("d")
        values.frombytes(bytes.fromhex(packed["f64"]))
        if _SWAP:
            values.byteswap()
        out: list[Any] = values.tolist()
        nulls = packed["nulls"]
        if nulls and (min(nulls) < 0 or max(nulls) >= len(out)):
            raise ValueError("a null row is out of range")
        for row in nulls:
            out[row] = None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise SchemaError(f"{what} is not a packed float column ({type(exc).__name__}: {exc})") from None
    return out


# -- reading ---------------------------------------------------------------------------------


def _parse_timestamp(text: Any, naive: bool) -> datetime:
    if not isinstance(text, str):
        raise TypeError("a timestamp is RFC 3339 text, e.g. 2026-03-01T12:00:00Z")
    value = datetime.fromisoformat(text)
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(tzinfo=None) if naive else value


def _text(parse: Callable[[str], Any], what: str) -> Decoder:
    def decode(value: Any) -> Any:
        if not isinstance(value, str):
            raise TypeError(f"a {what} is text, e.g. {_EXAMPLES[what]}")
        return parse(value)

    return decode


_EXAMPLES = {"date": "2026-03-01", "time": "12:00:00", "decimal": '"12.50"', "binary": "base64 text"}


def value_decoder(dtype: pa.DataType) -> Decoder | None:
    """How to read one JSON value back as the Python value of ``dtype`` (``None``: as it is).

    A decoder raises ``TypeError`` or ``ValueError`` for a value that is not of the wire form.
    """
    if pa.types.is_dictionary(dtype):
        return value_decoder(dtype.value_type)
    if _plain(dtype) or _float(dtype):
        return None
    if pa.types.is_timestamp(dtype):
        naive = dtype.tz is None
        return lambda value: _parse_timestamp(value, naive)
    if pa.types.is_date(dtype):
        return _text(date.fromisoformat, "date")
    if pa.types.is_time(dtype):
        return _text(time.fromisoformat, "time")
    if pa.types.is_duration(dtype):
        return lambda value: timedelta(microseconds=value) if type(value) is int else _bad_duration(value)
    if pa.types.is_decimal(dtype):
        return _text(Decimal, "decimal")
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_fixed_size_binary(dtype):
        return _text(lambda v: base64.b64decode(v, validate=True), "binary")
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype):
        inner = value_decoder(dtype.value_type)
        if inner is None:
            return None
        item = inner
        return lambda value: [None if v is None else item(v) for v in value]
    if pa.types.is_map(dtype):
        key = value_decoder(dtype.key_type) or _same
        val = value_decoder(dtype.item_type) or _same
        return lambda value: [(key(k), None if v is None else val(v)) for k, v in value]
    if pa.types.is_struct(dtype):
        fields = [(dtype.field(i).name, value_decoder(dtype.field(i).type) or _same) for i in range(dtype.num_fields)]
        return lambda value: {n: None if value.get(n) is None else dec(value.get(n)) for n, dec in fields}
    return None


def _same(value: Any) -> Any:
    return value


def _bad_duration(value: Any) -> timedelta:
    raise TypeError("a duration is an integer number of microseconds")


def decode_values(values: list[Any], dtype: pa.DataType, what: str) -> list[Any]:
    """JSON values of one column as Python values of ``dtype``; a value of the wrong form is a
    :class:`SchemaError` naming ``what``, the row, the value and the form expected."""
    decode = value_decoder(dtype)
    if decode is None:
        return values
    out: list[Any] = []
    for row, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(decode(value))
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise SchemaError(f"{what} value {row} is {value!r}, which is not a {dtype}: {exc}") from None
    return out


def decode_request_values(values: list[Any], dtype: pa.DataType, what: str) -> list[Any]:
    """Request values (keys, pushed rows) of a registered type: text is read as the wire form of
    temporal, decimal and binary types; any other value is handed on as JSON gave it, for the
    library's type rule to accept or to name."""
    decode = value_decoder(dtype)
    if decode is None or pa.types.is_nested(dtype) or not any(isinstance(v, str) for v in values):
        return values
    out: list[Any] = []
    for row, value in enumerate(values):
        if not isinstance(value, str):
            out.append(value)
            continue
        try:
            out.append(decode(value))
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"{what} value {row} is {value!r}, which is not a {dtype}: {exc}") from None
    return out


def restore_not_finite(columns: dict[str, list[Any]], not_finite: list[dict[str, Any]]) -> None:
    """Put NaN and infinities back where the server wrote null (in the JSON values, before decoding)."""
    for entry in not_finite:
        value = {"NaN": math.nan, "Infinity": _INF, "-Infinity": -_INF}[entry["value"]]
        holder: Any = columns[entry["column"]]
        path = [entry["row"], *entry["path"]]
        for step in path[:-1]:
            holder = holder[step]
        holder[path[-1]] = value


__all__ = [
    "PACKED",
    "PACK_ROWS",
    "decode_request_values",
    "decode_values",
    "encode_column",
    "micros_of",
    "pack_floats",
    "restore_not_finite",
    "rfc3339",
    "rfc3339_micros",
    "unpack_floats",
    "value_decoder",
    "value_encoder",
]
