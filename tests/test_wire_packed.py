"""The packed float columns of the wire: every float (NaN's bits, -0.0, infinities) and None come back as sent."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurekit.errors import SchemaError
from featurekit.wire import PACK_ROWS, pack_floats, unpack_floats


def bits(values: list[float | None]) -> list[bytes | None]:
    return [None if v is None else struct.pack("<d", v) for v in values]


@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), min_size=PACK_ROWS, max_size=60))
def test_packed_floats_round_trip_bit_for_bit(values: list[float | None]) -> None:
    packed = pack_floats(values)
    assert packed is not None
    out = unpack_floats(packed, "column 'x'")
    assert bits(out) == bits(values)
    assert [type(v) for v in out] == [type(v) for v in values]


def test_the_bytes_are_little_endian_doubles_and_nulls_are_rows() -> None:
    packed = pack_floats([0.5, None, -0.0, math.inf] * 2)
    four = "".join(["000000000000e03f", "0000000000000000", "0000000000000080", "000000000000f07f"])
    assert packed == {"f64": four * 2, "nulls": [1, 5]}


@pytest.mark.parametrize("odd", [2, True, "1.0"])
def test_a_column_with_a_value_that_is_not_a_float_is_not_packed(odd: object) -> None:
    # (it then goes as typed JSON, so the client gets the very value the store returned)
    assert pack_floats([1.0] * PACK_ROWS + [odd]) is None


def test_a_short_column_is_not_packed() -> None:
    assert pack_floats([1.0] * (PACK_ROWS - 1)) is None


@pytest.mark.parametrize(
    "packed",
    [
        {"f64": "00000000", "nulls": []},  # not a whole double
        {"f64": "not hex!", "nulls": []},
        {"f64": "000000000000e03f", "nulls": [1]},  # a null past the end
        {"f64": "000000000000e03f", "nulls": [-1]},
        {"f64": "000000000000e03f"},
        [0.5],
    ],
)
def test_a_malformed_packed_column_is_a_schema_error(packed: object) -> None:
    with pytest.raises(SchemaError, match="column 'x' is not a packed float column"):
        unpack_floats(packed, "column 'x'")
