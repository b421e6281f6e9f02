"""Engine contract: the point-in-time join against a brute-force pure-Python oracle.

Random small event logs with many ties (event time and created time drawn from a few minutes),
null created times, null feature values, null key parts, TTL edges, spines in several time
zones and spines with sub-microsecond offsets (nanosecond timestamps, truncated toward the past).
The oracle states the rule directly; every engine, with each of its join plans, must agree on
every row, in spine order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from featurekit.offline.engine import SPINE_INSTANT, ViewInput, matched_created, matched_event
from featurekit.offline.spine import prepare_spine
from featurekit.offline.training import TrainingSet
from tests.engines import ENGINES, PLANS, make_engine

BASE = datetime(2026, 3, 1, tzinfo=UTC)
# The spine's timestamp column in several representations of the same instants (None = naive UTC).
ZONES = ["UTC", "Asia/Kolkata", "America/Los_Angeles", None]

minute = st.integers(min_value=0, max_value=8)
key = st.one_of(st.none(), st.integers(min_value=0, max_value=1))
feature_row = st.tuples(
    key,  # a
    st.sampled_from(["x", "y"]),  # b (second key part)
    minute,  # event minute
    st.one_of(st.none(), minute),  # created minute
    st.one_of(st.none(), st.integers(min_value=-5, max_value=5)),  # value
)
# Nanoseconds after the minute: a spine row 1-999 ns before an event must not see it.
offset_ns = st.sampled_from([0, -1, -500, -999, -1000, 1, 500])
spine_row = st.tuples(key, st.sampled_from(["x", "y"]), minute, st.sampled_from(range(len(ZONES))), offset_ns)
ttl = st.one_of(st.none(), st.integers(min_value=0, max_value=4))


def at(m: int) -> datetime:
    return BASE + timedelta(minutes=m)


def spine_times(minutes: list[int], offsets: list[int], zone: str | None) -> pa.Array:
    """The spine's instants; with any sub-microsecond offset the column is nanoseconds."""
    nanos = [int(at(m).timestamp()) * 1_000_000_000 + o for m, o in zip(minutes, offsets, strict=True)]
    unit = "ns" if any(o % 1000 for o in offsets) else "us"
    values = nanos if unit == "ns" else [n // 1000 for n in nanos]
    utc = pa.array(values, pa.timestamp(unit, tz="UTC"))
    if zone is None:
        return utc.cast(pa.timestamp(unit))
    return utc.cast(pa.timestamp(unit, tz=zone))


def spine_micros(m: int, offset_ns: int) -> float:
    """The spine instant in minutes, truncated toward the past to a whole microsecond."""
    return m + (offset_ns // 1000) / 60_000_000


def oracle(features: list[tuple[Any, ...]], spine: list[tuple[Any, ...]], ttl_minutes: int | None) -> list[Any]:
    """For each spine row: the value of the newest eligible row, by the documented rule."""
    return [None if row is None else row[4] for row in oracle_rows(features, spine, ttl_minutes)]


def oracle_rows(features: list[tuple[Any, ...]], spine: list[tuple[Any, ...]], ttl_minutes: int | None) -> list[Any]:
    """For each spine row: the newest eligible feature row itself (None: no row)."""

    def rank(row: tuple[Any, ...]) -> tuple[Any, ...]:
        _, _, event, created, value = row
        # created: null loses; then the value: a null loses to any value, then the greater value wins
        return (event, -1 if created is None else created, (0, 0) if value is None else (1, value))

    out = []
    for a, b, m, _zone, offset in spine:
        t = spine_micros(m, offset)
        if a is None:
            out.append(None)
            continue
        eligible = [
            r
            for r in features
            if r[0] == a and r[1] == b and r[2] <= t and (ttl_minutes is None or r[2] >= t - ttl_minutes)
        ]
        out.append(max(eligible, key=rank) if eligible else None)
    return out


def untied(features: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The first row of each (keys, event time): data the asof_rows plan is chosen for."""
    seen: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in features:
        seen.setdefault(row[:3], row)
    return list(seen.values())


def run_join(
    tmp: Path,
    features: list[tuple[Any, ...]],
    spine: list[tuple[Any, ...]],
    ttl_minutes: int | None,
    known_at: int | None = None,
    engine_name: str = "duckdb",
    plan: str = "asof",
    matched: bool = False,
):
    schema = pa.schema(
        [
            ("a", pa.int64()),
            ("b", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            ("created", pa.timestamp("us", tz="UTC")),
            ("value", pa.int64()),
        ]
    )
    table = pa.table(
        {
            "a": [r[0] for r in features],
            "b": [r[1] for r in features],
            "event_timestamp": [at(r[2]) for r in features],
            "created": [None if r[3] is None else at(r[3]) for r in features],
            "value": [r[4] for r in features],
        },
        schema=schema,
    )
    files = []
    # Several files, like several committed windows.
    for i in range(0, max(len(features), 1), 7):
        path = tmp / f"part{i}.parquet"
        pq.write_table(table.slice(i, 7), path)
        files.append(str(path))
    engine = make_engine(engine_name, tmp, plan)
    spine_table = pa.table(
        {
            "a": pa.array([r[0] for r in spine], pa.int64()),
            "b": [r[1] for r in spine],
            # An Arrow column has one zone: the first row's draw picks it for the whole spine.
            "event_timestamp": spine_times([r[2] for r in spine], [r[4] for r in spine], ZONES[spine[0][3]]),
            "row_label": list(range(len(spine))),
        }
    )
    prepared = prepare_spine(spine_table, "event_timestamp", {"a": pa.int64(), "b": pa.string()})
    view = ViewInput(
        name="v",
        files=files if features else [],
        schema=schema,
        join_keys=["a", "b"],
        timestamp_field="event_timestamp",
        created_field="created",
        ttl=None if ttl_minutes is None else timedelta(minutes=ttl_minutes),
        features=[("value", "value")],
        known_at=None if known_at is None else at(known_at),
        entities=PLANS[plan][0],
        unique_times=PLANS[plan][1],
    )
    try:
        return TrainingSet(engine.point_in_time(prepared.spine, [view], matched=matched)).to_arrow()
    finally:
        engine.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(features=[(0, "x", 0, None, 1)], spine=[(0, "x", 3, 0, 0)], ttl_minutes=3)  # t - ttl is inside
@example(features=[(0, "x", 3, None, 1)], spine=[(0, "x", 3, 3, 0)], ttl_minutes=0)  # e == t is inside
@example(features=[(0, "x", 3, None, 1)], spine=[(0, "x", 3, 0, -500)], ttl_minutes=None)  # 500 ns before: unseen
@example(
    features=[(0, "x", 1, 2, 1), (0, "x", 1, None, 2), (0, "x", 1, 1, 3)], spine=[(0, "x", 1, 1, 0)], ttl_minutes=None
)
@example(features=[(0, "x", 1, 1, 4), (0, "x", 1, 1, None)], spine=[(0, "x", 1, 0, 0)], ttl_minutes=None)  # null loses
@given(
    features=st.lists(feature_row, max_size=25),
    spine=st.lists(spine_row, min_size=1, max_size=15),
    ttl_minutes=ttl,
)
@pytest.mark.parametrize(("engine_name", "plan"), [(e, p) for e in ENGINES if e == "duckdb" for p in PLANS])
def test_join_matches_oracle(tmp_path_factory: pytest.TempPathFactory, engine_name, plan, features, spine, ttl_minutes):
    check_join(tmp_path_factory, engine_name, plan, features, spine, ttl_minutes)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(features=[(0, "x", 0, None, 1)], spine=[(0, "x", 3, 0, 0)], ttl_minutes=3)
@example(features=[(0, "x", 3, None, 1)], spine=[(0, "x", 3, 0, -500)], ttl_minutes=None)
@example(
    features=[(0, "x", 1, 2, 1), (0, "x", 1, None, 2), (0, "x", 1, 1, 3)], spine=[(0, "x", 1, 1, 0)], ttl_minutes=None
)
@example(features=[(0, "x", 1, 1, 4), (0, "x", 1, 1, None)], spine=[(0, "x", 1, 0, 0)], ttl_minutes=None)
@given(
    features=st.lists(feature_row, max_size=25),
    spine=st.lists(spine_row, min_size=1, max_size=15),
    ttl_minutes=ttl,
)
@pytest.mark.slow
@pytest.mark.parametrize("engine_name", [e for e in ENGINES if e != "duckdb"])
def test_join_matches_oracle_on_other_engines(
    tmp_path_factory, engine_started, engine_name, features, spine, ttl_minutes
):
    """Engines with one plan, fewer examples: each query costs a Spark job."""
    check_join(tmp_path_factory, engine_name, "asof", features, spine, ttl_minutes)


@pytest.fixture
def engine_started(engine_name: str, tmp_path: Path) -> None:
    """Start the engine before hypothesis runs (pyspark changes the recursion limit when it starts)."""
    make_engine(engine_name, tmp_path).close()


def check_join(tmp_path_factory: pytest.TempPathFactory, engine_name, plan, features, spine, ttl_minutes) -> None:
    tmp = tmp_path_factory.mktemp("pit")
    features = untied(features) if PLANS[plan][1] else features
    result = run_join(tmp, features, spine, ttl_minutes, engine_name=engine_name, plan=plan)
    assert result.column("row_label").to_pylist() == list(range(len(spine)))  # whole, in order
    assert result.column("value").to_pylist() == oracle(features, spine, ttl_minutes)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(features=st.lists(feature_row, max_size=25), spine=st.lists(spine_row, min_size=1, max_size=12), ttl_minutes=ttl)
# The plans are DuckDB's; another engine ignores them (make_engine), so it runs with one.
@pytest.mark.parametrize(
    ("engine_name", "plan"), [(e, p) for e in ENGINES for p in (PLANS if e == "duckdb" else ["asof"])]
)
def test_matched_times_are_the_oracle_rows(
    tmp_path_factory: pytest.TempPathFactory, engine_started, engine_name, plan, features, spine, ttl_minutes
):
    """``matched=True`` returns each spine row's instant and the event and created time of the row it took."""
    tmp = tmp_path_factory.mktemp("matched")
    features = untied(features) if PLANS[plan][1] else features
    result = run_join(tmp, features, spine, ttl_minutes, engine_name=engine_name, plan=plan, matched=True)
    assert result.column("value").to_pylist() == oracle(features, spine, ttl_minutes)
    expected = oracle_rows(features, spine, ttl_minutes)
    instants = [at(m) + timedelta(microseconds=offset // 1000) for _, _, m, _, offset in spine]
    assert result.column(SPINE_INSTANT).to_pylist() == instants
    assert result.column(matched_event(0)).to_pylist() == [None if r is None else at(r[2]) for r in expected]
    created = [None if r is None or r[3] is None else at(r[3]) for r in expected]
    assert result.column(matched_created(0)).to_pylist() == created


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(features=st.lists(feature_row, min_size=1, max_size=25), spine=st.lists(spine_row, min_size=1, max_size=10))
def test_no_value_from_the_future(tmp_path_factory: pytest.TempPathFactory, features, spine):
    """Whatever the data, a returned value comes from a row at or before the spine time."""
    tmp = tmp_path_factory.mktemp("future")
    tagged = [(a, b, m, c, m) for a, b, m, c, _ in features]  # value = its own event minute
    result = run_join(tmp, tagged, spine, None)
    for (_, _, m, _, offset), value in zip(spine, result.column("value").to_pylist(), strict=True):
        assert value is None or value <= spine_micros(m, offset)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    features=st.lists(feature_row, max_size=25),
    spine=st.lists(spine_row, min_size=1, max_size=10),
    ttl_minutes=ttl,
    known_at=minute,
)
@pytest.mark.parametrize("plan", list(PLANS))
def test_known_at_matches_oracle_on_rows_known_then(
    tmp_path_factory: pytest.TempPathFactory, plan, features, spine, ttl_minutes, known_at
):
    """A bitemporal read equals the plain join over only the rows created at or before known_at."""
    tmp = tmp_path_factory.mktemp("known")
    features = untied(features) if PLANS[plan][1] else features
    result = run_join(tmp, features, spine, ttl_minutes, known_at, plan=plan)
    known = [r for r in features if r[3] is not None and r[3] <= known_at]
    assert result.column("value").to_pylist() == oracle(known, spine, ttl_minutes)
