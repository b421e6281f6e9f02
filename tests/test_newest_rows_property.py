"""Property: the newest rows that feed online stores equal a brute-force oracle.

From committed files (with and without a window) and from a materialization's output batches.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
