"""Property: the newest rows that feed online stores equal a brute-force oracle.

From committed files (with and without a window) and from a materialization's output batches.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurekit.offline.duckdb_engine import DuckDBEngine
from featurekit.offline.engine import ViewInput
from featurekit.offline.newest import NewestRows

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCHEMA = pa.schema(
    [
        ("driver_id", pa.int64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("created", pa.timestamp("us", tz="UTC")),
        ("km", pa.float64()),
    ]
)

row = st.tuples(
    st.one_of(st.none(), st.integers(min_value=1, max_value=5)),  # driver (null keys are never served)
    st.integers(min_value=0, max_value=20),  # event hour
    st.one_of(st.none(), st.integers(min_value=0, max_value=3)),  # created: hours after the event, or null
    st.integers(min_value=0, max_value=4),  # value (ties on time and created are broken by value)
)


def _oracle(rows: list[tuple], window: tuple[int, int] | None) -> dict[int, tuple]:
    """Per driver, the max of (event, created with null lowest, value), for drivers with a row in the window."""
    newest: dict[int, tuple] = {}
    for driver, hour, created, value in rows:
        if driver is None:
            continue
        key = (hour, -1 if created is None else hour + created, value)
        newest[driver] = max(newest.get(driver, key), key)
    if window is not None:
        touched = {d for d, hour, _, _ in rows if d is not None and window[0] <= hour < window[1]}
        newest = {d: v for d, v in newest.items() if d in touched}
    return newest


def _at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


def _assert_served(got: list[dict], expected: dict[int, tuple]) -> None:
    for served in got:
        hour, created, value = expected[served["driver_id"]]
        assert served["__fk_event"] == int(_at(hour).timestamp() * 1_000_000)
        assert served["__fk_created"] == (None if created == -1 else int(_at(created).timestamp() * 1_000_000))
        assert served["km"] == float(value)


def _table(rows: list[tuple]) -> pa.Table:
    return pa.table(
        {
            "driver_id": [d for d, _, _, _ in rows],
            "event_timestamp": [_at(h) for _, h, _, _ in rows],
            "created": [None if c is None else _at(h + c) for _, h, c, _ in rows],
            "km": [float(v) for _, _, _, v in rows],
        },
        schema=SCHEMA,
    )


VIEW = ViewInput(
    name="driver_stats",
    files=[],
    schema=SCHEMA,
    join_keys=["driver_id"],
    timestamp_field="event_timestamp",
    created_field="created",
    ttl=None,
    features=[("km", "km")],
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    files=st.lists(st.lists(row, max_size=12), min_size=1, max_size=3),
    window=st.one_of(st.none(), st.tuples(st.integers(0, 21), st.integers(1, 8))),
)
def test_newest_rows_match_the_oracle(tmp_path_factory, files, window):
    folder = tmp_path_factory.mktemp("latest")
    paths = []
    for index, rows in enumerate(files):
        table = _table(rows)
        path = folder / f"part-{index}.parquet"
        pq.write_table(table, path, row_group_size=4)  # several row groups: statistics can skip some
        paths.append(str(path))
    view = dataclasses.replace(VIEW, files=paths)
    hours = None if window is None else (window[0], window[0] + window[1])
    scope = None if hours is None else (_at(hours[0]), _at(hours[1]))
    engine = DuckDBEngine(folder)
    got = engine.newest_rows(view, scope).to_pylist()
    engine.close()
    expected = _oracle([r for rows in files for r in rows], hours)
    assert [r["driver_id"] for r in got] == sorted(expected)  # ordered by key
    _assert_served(got, expected)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(row.filter(lambda r: r[0] is not None), min_size=1, max_size=30), batches=st.integers(1, 4))
def test_newest_rows_of_entity_partitioned_batches_match_the_oracle(rows, batches):
    # As materialize hands them over: every row of a driver in the same batch.
    newest = NewestRows(DuckDBEngine(Path(".")), VIEW)
    try:
        for index in range(batches):
            newest.add(_table([r for r in rows if r[0] % batches == index]))
        got = newest.result()
    finally:
        newest.close()
    assert got is not None
    expected = _oracle(rows, None)
    assert sorted(got.column("driver_id").to_pylist()) == sorted(expected)
    _assert_served(got.to_pylist(), expected)


def test_newest_rows_refuse_an_entity_split_across_batches():
    # A view function that moves rows between entities can do this; the caller then reads the files.
    newest = NewestRows(DuckDBEngine(Path(".")), VIEW)
    try:
        newest.add(_table([(1, 1, None, 1), (2, 1, None, 1)]))
        newest.add(_table([(1, 2, None, 2)]))
        assert newest.result() is None
    finally:
        newest.close()


def test_newest_rows_that_fail_leave_the_caller_to_read_the_files():
    # A failure in the worker must not fail the materialization: result() says "read the files".
    newest = NewestRows(DuckDBEngine(Path(".")), VIEW)
    try:
        newest.add(_table([(1, 1, None, 1)]))
        newest.add(_table([(2, 1, None, 1)]).drop_columns(["event_timestamp"]))  # fails in DuckDB
        newest.add(_table([(3, 1, None, 1)]))  # not even started after a failure
        assert newest.result() is None
    finally:
        newest.close()


# -- the in-memory shortcut (plain integers first, the struct only for ties) against the struct rule --

WIDE = pa.schema(
    [
        ("driver_id", pa.int64()),
        ("city", pa.string()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("created", pa.timestamp("us", tz="UTC")),
        ("km", pa.float64()),
        ("rating", pa.float32()),
        ("label", pa.string()),
        ("trips", pa.int32()),
    ]
)
# -0.0 is left out: the engine compares it equal to 0.0, so two rows differing only by it are an
# exact tie whose winner the struct rule leaves to the scan order (either answer is right).
FLOATS = st.sampled_from([None, float("nan"), float("inf"), float("-inf"), 0.0, 1.5, -2.0])
wide_row = st.tuples(
    st.one_of(st.none(), st.sampled_from([1, 2, 3, -(2**40), 2**40])),  # sparse keys: hashed codes
    st.one_of(st.none(), st.sampled_from(["a", "b", "ü"])),
    st.integers(min_value=0, max_value=3),  # event hour: many exact ties
    st.one_of(st.none(), st.integers(min_value=0, max_value=1)),  # created: hours after, or null
    FLOATS,
    FLOATS,
    st.one_of(st.none(), st.sampled_from(["", "x", "y"])),
    st.one_of(st.none(), st.integers(min_value=-1, max_value=1)),
)


def _wide_table(rows: list[tuple], dense: bool) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in WIDE.names]
    data = {name: list(values) for name, values in zip(WIDE.names, columns, strict=True)}
    if dense:  # keys near each other: the key itself is the code
        data["driver_id"] = [None if k is None else k % 7 for k in data["driver_id"]]
    data["event_timestamp"] = [_at(h) for h in data["event_timestamp"]]
    times = zip(data["event_timestamp"], data["created"], strict=True)
    data["created"] = [None if c is None else _at(h.hour + c) for h, c in times]
    return pa.table(data, schema=WIDE)


def _bits(table: pa.Table) -> list[tuple]:
    """Rows with floats as their bits: NaN equals NaN, -0.0 differs from 0.0."""
    import struct

    def exact(value: object) -> object:
        return ("f", struct.pack(">d", value)) if isinstance(value, float) else value

    return [tuple(exact(v) for v in row.values()) for row in table.to_pylist()]


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(wide_row, min_size=1, max_size=40),
    keys=st.sampled_from([["driver_id"], ["city"], ["driver_id", "city"]]),
    created=st.booleans(),
    dense=st.booleans(),
    units=st.sampled_from([("us", "us"), ("ms", "s"), ("s", "ms")]),
    chunks=st.integers(1, 3),
)
def test_newest_rows_of_a_batch_equal_the_struct_rule(rows, keys, created, dense, units, chunks):
    table = _wide_table(rows, dense)
    for index, unit in zip((2, 3), units, strict=True):
        table = table.set_column(index, WIDE.names[index], table.column(index).cast(pa.timestamp(unit, tz="UTC")))
    if chunks > 1:  # as batches arrive: several chunks
        size = -(-len(rows) // chunks)
        table = pa.concat_tables([table.slice(start, size) for start in range(0, len(rows), size)])
    features = [(c, c) for c in ["km", "rating", "label", "trips", "driver_id", "city"] if c not in keys]
    view = ViewInput(
        name="wide", files=[], schema=table.schema, join_keys=keys, timestamp_field="event_timestamp",
        created_field="created" if created else None, ttl=None, features=features,
    )  # fmt: skip
    engine = DuckDBEngine(Path("."))
    try:
        got = engine.newest_rows(view, rows=table)  # the shortcut
        with mock.patch("featurekit.offline.duckdb_engine.newest_candidates", return_value=None):
            expected = engine.newest_rows(view, rows=table)  # the struct over every row
    finally:
        engine.close()
    assert got.schema == expected.schema
    assert _bits(got) == _bits(expected)


def test_the_shortcut_takes_the_usual_columns_and_leaves_the_others_to_the_struct() -> None:
    from featurekit.offline.newest_candidates import candidate_rows

    table = _wide_table([(1, "a", 1, None, 1.0, 1.0, "x", 1), (1, "a", 1, None, 2.0, 1.0, "x", 1)], dense=False)
    found = candidate_rows(table, ["driver_id", "city"], "event_timestamp", "created")
    assert found is not None
    assert found.single.tolist() == []
    assert found.tied.tolist() == [0, 1]  # a tie
    assert candidate_rows(table, ["km"], "event_timestamp", None) is None  # float keys: -0.0 == 0.0
    nanos = table.set_column(3, "created", table.column("created").cast(pa.timestamp("ns", tz="UTC")))
    assert candidate_rows(nanos, ["driver_id"], "event_timestamp", "created") is None  # rounded by the engine
    nanos = table.set_column(2, "event_timestamp", table.column(2).cast(pa.timestamp("ns", tz="UTC")))
    assert candidate_rows(nanos, ["driver_id"], "event_timestamp", None) is not None  # compared as it is
