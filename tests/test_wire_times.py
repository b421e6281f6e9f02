"""The wire's instants: the client's cached parse of the server's form equals the full parse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurekit.wire import micros_of, rfc3339, rfc3339_micros

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOW = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
HIGH = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])
FULL_WIDTH_DIGITS = "".join(chr(0xFF11 + i) for i in range(6))  # str.isdigit() holds, int() reads them


@given(st.integers(LOW, HIGH))
def test_the_servers_form_reads_back_to_the_same_microsecond(micros: int) -> None:
    text = rfc3339_micros(micros)
    assert micros_of(text) == micros
    assert micros_of(text) == micros  # the second read comes from the cache of whole seconds


@given(st.datetimes(datetime(2, 1, 1), datetime(9998, 12, 31), timezones=ZONES))  # (both ends exist in UTC)
def test_other_forms_read_as_python_reads_them(value: datetime) -> None:
    expected = (value - EPOCH) // timedelta(microseconds=1)
    assert micros_of(value.isoformat()) == expected  # an offset, not Z
    assert micros_of(rfc3339(value)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-01T12:00+01.123456Z",  # an offset where the seconds are
        "2026-03-01T12:00:00.12345xZ",
        f"2026-03-01T12:00:00.{FULL_WIDTH_DIGITS}Z",
        "2026-13-01T12:00:00.000000Z",
    ],
)
def test_text_that_only_looks_like_the_servers_form_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"isoformat|month"):
        micros_of(text)
