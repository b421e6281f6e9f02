"""The rows ``unique_keys`` counts as repeated, against a brute-force oracle, on both of its paths."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurekit.quality import duplicates
from featurekit.quality.duplicates import repeated_rows, shared_tops

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STAMP = pa.timestamp("us", tz="UTC")
# (type, values): integral types take the numpy path, the rest (and any null) polars'
KINDS: dict[str, tuple[pa.DataType, Any]] = {
    "int64": (pa.int64(), st.integers(-3, 3)),
    "int32": (pa.int32(), st.integers(-(2**31), -(2**31) + 2) | st.integers(-2, 2)),
    "uint8": (pa.uint8(), st.integers(0, 3)),
    "timestamp": (STAMP, st.sampled_from([T0 + timedelta(microseconds=m) for m in (0, 1, 2**40)])),
    "date": (pa.date32(), st.sampled_from([T0.date(), (T0 + timedelta(days=1)).date()])),
    "string": (pa.string(), st.sampled_from(["a", "b", ""])),
}


def oracle(rows: list[tuple[Any, ...]]) -> tuple[int, list[bool]]:
    counts = Counter(rows)
    return len(rows) - len(counts), [counts[r] > 1 for r in rows]


@st.composite
def key_tables(draw: st.DrawFn) -> pa.Table:
    kinds = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=3))
    nulls = draw(st.booleans())
    rows = draw(st.integers(0, 60))
    columns = []
    for kind in kinds:
        dtype, values = KINDS[kind]
        cell = st.none() | values if nulls else values
        columns.append(pa.array(draw(st.lists(cell, min_size=rows, max_size=rows)), dtype))
    table = pa.table(columns, names=[f"k{i}" for i in range(len(columns))])
    cut = draw(st.integers(0, rows))  # chunked differently per column: the hash must follow rows, not chunks
    first = table.slice(0, cut)
    return pa.Table.from_arrays(
        [pa.chunked_array([*first.column(0).chunks, *table.slice(cut).column(0).chunks], table.schema[0].type),
         *[table.column(i).combine_chunks() for i in range(1, table.num_columns)]],
        schema=table.schema,
    )  # fmt: skip


def _constant_tops(keys: pa.Table) -> np.ndarray | None:
    """The numpy path's halves as if every row's hash were alike: every row a candidate."""
    tops = _hash_tops(keys)
    return None if tops is None else np.zeros_like(tops)


_hash_tops = duplicates._integer_tops


@settings(max_examples=150, deadline=None)
@given(table=key_tables(), weak=st.booleans())
def test_repeated_rows_equal_a_brute_force_oracle(table: pa.Table, weak: bool) -> None:
    # weak: all hashes collide, so the exact comparison of the candidates decides alone
    duplicates._integer_tops = _constant_tops if weak else _hash_tops  # type: ignore[assignment]
    try:
        extra, mask = repeated_rows(table)
    finally:
        duplicates._integer_tops = _hash_tops  # type: ignore[assignment]
    rows = list(zip(*[table.column(i).to_pylist() for i in range(table.num_columns)], strict=True))
    expected, flags = oracle(rows)
    assert extra == expected
    if expected:
        assert mask is not None
        assert mask.tolist() == flags
    else:
        assert mask is None


def test_integral_keys_are_hashed_without_polars_and_strings_or_nulls_with_it() -> None:
    ids = pa.array(np.arange(200_000) % 150_000, pa.int64())  # 50,000 repeats
    stamps = pa.array(np.zeros(200_000, dtype="datetime64[us]"), STAMP)
    assert duplicates._integer_tops(pa.table({"id": ids, "t": stamps})) is not None
    assert duplicates._integer_tops(pa.table({"id": ids.cast(pa.string()), "t": stamps})) is None
    with_null = pa.array([None, *range(1, 200_000)], pa.int64())
    assert duplicates._integer_tops(pa.table({"id": with_null, "t": stamps})) is None
    for keys in (pa.table({"id": ids, "t": stamps}), pa.table({"id": ids.cast(pa.string()), "t": stamps})):
        extra, mask = repeated_rows(keys)
        assert extra == 50_000
        assert mask is not None
        assert int(mask.sum()) == 100_000
        assert mask[:50_000].all()
        assert not mask[50_000:150_000].any()


def test_distinct_rows_of_a_million_find_no_repeat() -> None:
    rng = np.random.default_rng(7)
    keys = pa.table({
        "driver_id": pa.array(rng.integers(0, 100_000, 1_000_000)),
        "event_timestamp": pa.array(np.arange(1_000_000).astype("datetime64[us]"), STAMP),
    })  # fmt: skip
    assert repeated_rows(keys) == (0, None)


@pytest.mark.parametrize("rows", [2, 1_000, 200_000])
def test_shared_tops_finds_every_row_whose_half_repeats(rows: int) -> None:
    rng = np.random.default_rng(rows)
    tops = rng.integers(0, 2**32, rows, dtype=np.uint32)
    tops[rng.integers(0, rows, rows // 20)] = tops[rng.integers(0, rows, rows // 20)]  # repeats
    tops[-1] = tops[0]
    _, inverse, counts = np.unique(tops, return_inverse=True, return_counts=True)
    found = shared_tops(tops)
    assert found is not None
    assert np.array_equal(found, np.flatnonzero(counts[inverse] > 1))
    assert shared_tops(np.arange(rows, dtype=np.uint32)) is None
