"""Engine contract: what every OfflineEngine must do, run on each implementation in tests/engines.py.

The point-in-time rule itself is held to a brute-force oracle in test_point_in_time_property.py
and the newest-row rule in test_newest_rows_property.py; this suite covers the rest of the
protocol: sources (Parquet, CSV, SQL) with windows and entity-partitioned batches, the three
ways to take a join's result, statistics, empty inputs, and sharing one engine between threads.
"""

from __future__ import annotations

import statistics
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurekit.errors import SourceError, StorageError
from featurekit.offline.engine import (
    SPINE_INSTANT,
    OfflineEngine,
    SourceScan,
    Spine,
    ViewInput,
    as_uri,
    matched_created,
    matched_event,
)
from featurekit.offline.training import TrainingSet
from featurekit.windows import WindowFeature, WindowSpec
from tests.engines import ENGINES, make_engine

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCHEMA = pa.schema(
    [
        ("driver_id", pa.int64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("created", pa.timestamp("us", tz="UTC")),
        ("km", pa.float64()),
    ]
)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path):
    made = make_engine(request.param, tmp_path)
    yield made
    made.close()


def rows(n: int, drivers: int = 7) -> pa.Table:
    return pa.table(
        {
            "driver_id": [i % drivers for i in range(n)],
            "event_timestamp": [T0 + timedelta(minutes=i) for i in range(n)],
            "created": [T0 + timedelta(minutes=i, seconds=30) for i in range(n)],
            "km": [float(i) for i in range(n)],
        },
        schema=SCHEMA,
    )


def scan(kind: str, location: str) -> SourceScan:
    return SourceScan(kind, location, "event_timestamp", ("event_timestamp", "created"), f"test source {kind}")  # type: ignore[arg-type]


@pytest.fixture(params=["parquet", "csv", "sql"])
def source(request: pytest.FixtureRequest, tmp_path: Path, engine: OfflineEngine) -> SourceScan:
    table = rows(100)
    if request.param == "csv":
        pcsv.write_csv(table, tmp_path / "rows.csv")
        return scan("csv", str(tmp_path / "rows.csv"))
    pq.write_table(table, tmp_path / "rows.parquet")
    if request.param == "sql":  # in the engine's own SQL
        if engine.name == "spark":
            return scan("sql", f"SELECT * FROM parquet.`{tmp_path / 'rows.parquet'}`")
        return scan("sql", f"SELECT * FROM read_parquet('{tmp_path / 'rows.parquet'}')")
    return scan("parquet", str(tmp_path / "rows.parquet"))


def test_a_source_is_counted_windowed_and_batched(engine: OfflineEngine, source: SourceScan):
    schema = engine.source_schema(source)
    assert schema.names == SCHEMA.names
    assert engine.source_count(source, None) == 100
    window = (T0 + timedelta(minutes=10), T0 + timedelta(minutes=50))
    assert engine.source_count(source, window) == 40
    assert engine.source_min_time(source) == T0
    assert engine.source_null_times(source, 3)[0] == 0
    batches = list(engine.source_batches(source, window, 3, ["driver_id"]))
    got = pa.concat_tables(batches)
    assert got.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert sorted(got.column("km").to_pylist()) == [float(i) for i in range(10, 50)]
    seen: dict[int, int] = {}
    for index, batch in enumerate(batches):
        for driver in set(batch.column("driver_id").to_pylist()):
            assert seen.setdefault(driver, index) == index, "a driver's rows were split across batches"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 300), drivers=st.integers(1, 40), partitions=st.integers(1, 9))
def test_batches_hold_every_row_once_and_each_entity_together(tmp_path_factory, n, drivers, partitions):
    folder = tmp_path_factory.mktemp("batches")
    pq.write_table(rows(n, drivers), folder / "rows.parquet")
    for name in ENGINES:
        engine = make_engine(name, folder)
        try:
            source = scan("parquet", str(folder / "rows.parquet"))
            batches = list(engine.source_batches(source, (T0, T0 + timedelta(days=1)), partitions, ["driver_id"]))
        finally:
            engine.close()
        got = sorted(v for b in batches for v in b.column("km").to_pylist())
        assert got == [float(i) for i in range(n)]
        owners = [set(b.column("driver_id").to_pylist()) for b in batches]
        assert sum(len(o) for o in owners) == len(set().union(*owners))  # no driver in two batches


def test_null_event_times_are_counted_with_a_sample(engine: OfflineEngine, tmp_path: Path):
    table = rows(10)
    times = pa.array([None, *table.column(1).to_pylist()[1:]], SCHEMA.field(1).type)
    table = table.set_column(1, "event_timestamp", times)
    pq.write_table(table, tmp_path / "nulls.parquet")
    count, sample = engine.source_null_times(scan("parquet", str(tmp_path / "nulls.parquet")), 3)
    assert count == 1
    assert sample.column("km").to_pylist() == [0.0]


def test_an_unreadable_source_is_a_source_error_naming_it(engine: OfflineEngine, tmp_path: Path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(SourceError, match="test source parquet"):
        engine.source_schema(scan("parquet", str(tmp_path / "bad.parquet")))
    with pytest.raises(SourceError, match="test source sql"):
        engine.source_count(scan("sql", "SELECT * FROM no_such_table"), None)


def view(files: list[str], ttl: timedelta | None = timedelta(hours=1)) -> ViewInput:
    return ViewInput(
        name="v",
        files=files,
        schema=SCHEMA,
        join_keys=["driver_id"],
        timestamp_field="event_timestamp",
        created_field="created",
        ttl=ttl,
        features=[("km", "km")],
    )


def spine(n: int) -> Spine:
    table = pa.table(
        {
            "driver_id": [i % 9 for i in range(n)],
            "event_timestamp": pa.array([T0 + timedelta(minutes=3 * i) for i in range(n)], SCHEMA.field(1).type),
            "label": list(range(n)),
        }
    )
    return Spine(schema=table.schema, timestamp_field="event_timestamp", rows=n, table=table)


def test_a_join_gives_the_same_rows_as_arrow_batches_and_parquet(engine: OfflineEngine, tmp_path: Path):
    pq.write_table(rows(200), tmp_path / "a.parquet")
    pq.write_table(rows(200).slice(50), tmp_path / "b.parquet")
    views = [view([as_uri(tmp_path / "a.parquet")]), view([as_uri(tmp_path / "b.parquet")], ttl=None)]
    views[1] = ViewInput(**{**views[1].__dict__, "features": [("km", "km_b")]})
    join = engine.point_in_time(spine(150), views, [(1, 0), (0, 0)])
    try:
        arrow = join.to_arrow()
        assert arrow.column_names == ["driver_id", "event_timestamp", "label", "km_b", "km"]
        assert arrow.column("label").to_pylist() == list(range(150))
        assert pa.Table.from_batches(list(join.to_batches(7))).equals(arrow)
        join.to_parquet(tmp_path / "out.parquet", {"k": "v"})
        written = pq.read_table(tmp_path / "out.parquet")
        assert written.replace_schema_metadata(None).equals(arrow)
        assert pq.read_metadata(tmp_path / "out.parquet").metadata[b"k"] == b"v"
        assert join.description
    finally:
        join.close()
        join.close()  # idempotent


def test_a_view_without_files_joins_as_nulls(engine: OfflineEngine):
    join = engine.point_in_time(spine(5), [view([])])
    try:
        assert join.to_arrow().column("km").to_pylist() == [None] * 5
    finally:
        join.close()
    assert engine.newest_rows(view([])).num_rows == 0


def test_a_damaged_data_file_is_a_storage_error(engine: OfflineEngine, tmp_path: Path):
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 nothing")
    join = engine.point_in_time(spine(3), [view([as_uri(tmp_path / "broken.parquet")])])
    try:
        with pytest.raises(StorageError, match="featurekit verify"):
            join.to_arrow()
    finally:
        join.close()


def test_summaries_match_the_data(engine: OfflineEngine, tmp_path: Path):
    table = rows(101)
    table = table.set_column(3, "km", pa.array([None if i % 10 == 0 else float(i) for i in range(101)]))
    pq.write_table(table.slice(0, 60), tmp_path / "a.parquet")
    pq.write_table(table.slice(60), tmp_path / "b.parquet")
    files = [as_uri(tmp_path / "a.parquet"), as_uri(tmp_path / "b.parquet")]
    summary = {r["column"]: r for r in engine.summarize(files, ["km", "driver_id", "event_timestamp"]).to_pylist()}
    values = [v for v in table.column("km").to_pylist() if v is not None]
    km = summary["km"]
    assert (km["rows"], km["nulls"], km["min"], km["max"]) == (101, 11, min(values), max(values))
    assert km["mean"] == pytest.approx(statistics.mean(values))
    assert km["std"] == pytest.approx(statistics.stdev(values))
    assert summary["driver_id"]["distinct"] == 7
    assert summary["event_timestamp"]["mean"] is None
    assert engine.summarize([], ["km"]).to_pylist()[0]["rows"] == 0


def test_one_engine_serves_many_threads_at_once(engine: OfflineEngine, tmp_path: Path):
    pq.write_table(rows(500), tmp_path / "a.parquet")
    files = [as_uri(tmp_path / "a.parquet")]
    expected = TrainingSet(engine.point_in_time(spine(100), [view(files)])).to_arrow()
    newest = engine.newest_rows(view(files))

    def work(i: int) -> None:
        if i % 2:
            got = TrainingSet(engine.point_in_time(spine(100), [view(files)])).to_arrow()
            assert got.equals(expected)
        else:  # registered rows on the engine: every call must see only its own
            assert engine.newest_rows(view([]), rows=rows(500)).equals(newest)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(64)))


# -- window views ---------------------------------------------------------------------------------

MINUTE = 60_000_000


def window_view(files: list[str]) -> ViewInput:
    spec = WindowSpec(
        delay_us=MINUTE,
        features=(
            WindowFeature("count_10m", "count", None, 10 * MINUTE),
            WindowFeature("km_sum_10m", "sum", "km", 10 * MINUTE),
            WindowFeature("km_max_1h", "max", "km", 60 * MINUTE),
            WindowFeature("km_last_n_1h", "last_n", "km", 60 * MINUTE, 2),
        ),
    )
    return ViewInput(**{**view(files).__dict__, "ttl": None, "window": spec, "features": [
        (f.name, f.name) for f in spec.features
    ]})  # fmt: skip


def test_window_features_follow_the_window_rule(engine: OfflineEngine, tmp_path: Path):
    pq.write_table(rows(100), tmp_path / "a.parquet")  # driver i % 7 at minute i, km = i
    at = [T0 + timedelta(minutes=m) for m in (0, 8, 15, 30, 200)]
    table = pa.table(
        {"driver_id": [1] * 5, "event_timestamp": pa.array(at, SCHEMA.field(1).type)},
    )
    spine_ = Spine(schema=table.schema, timestamp_field="event_timestamp", rows=5, table=table)
    join = engine.point_in_time(spine_, [window_view([as_uri(tmp_path / "a.parquet")])])
    try:
        got = join.to_arrow().to_pydict()
    finally:
        join.close()
    # Driver 1's events are at minutes 1, 8, 15, 22, ...; a spine row at t sees [t - 11m, t - 1m).
    assert got["count_10m"] == [0, 1, 1, 1, 0]  # t=8: {1}; t=15: {8}; t=30: {22}
    assert got["km_sum_10m"] == [0.0, 1.0, 8.0, 22.0, 0.0]
    assert got["km_max_1h"] == [None, 1.0, 8.0, 22.0, None]  # t=200: nothing in [139m, 199m)
    assert got["km_last_n_1h"] == [None, [1.0], [8.0, 1.0], [22.0, 15.0], None]


def test_a_matched_join_returns_the_spine_instants_and_the_matched_rows_times(engine: OfflineEngine, tmp_path: Path):
    """The same join with ``matched=True``: the same feature values, then the times of the rows they came from."""
    table = rows(100)  # driver i % 7 at minute i, created 30 s later, km = i
    table = table.set_column(2, "created", pa.array([None if i == 57 else c for i, c in enumerate(
        table.column("created").to_pylist())], SCHEMA.field(2).type))  # fmt: skip
    pq.write_table(table, tmp_path / "a.parquet")
    files = [as_uri(tmp_path / "a.parquet")]
    views = [view(files), window_view(files)]
    plain = engine.point_in_time(spine(60), views)
    join = engine.point_in_time(spine(60), views, matched=True)
    try:
        got = join.to_arrow()
        assert got.select(plain.to_arrow().column_names).equals(plain.to_arrow())  # nothing else changes
        assert pa.Table.from_batches(list(join.to_batches(7))).equals(got)
        assert [s.view for s in join.strategies] == ["v", "v"]
        assert join.strategies[1].name.startswith("window(")
        assert matched_event(1) not in got.column_names  # a window view matches no single row
    finally:
        plain.close()
        join.close()
    by_minute = {row["km"]: row for row in table.to_pylist()}  # km is the row's minute
    for i, out in enumerate(got.to_pylist()):
        assert out[SPINE_INSTANT] == T0 + timedelta(minutes=3 * i)
        row = by_minute.get(out["km"])
        assert out[matched_event(0)] == (None if row is None else row["event_timestamp"])
        assert out[matched_created(0)] == (None if row is None else row["created"])
    assert any(out["km"] == 57.0 for out in got.to_pylist())  # the row with a null created time matched


def test_window_events_give_touched_entities_their_recent_rows(engine: OfflineEngine, tmp_path: Path):
    pq.write_table(rows(100), tmp_path / "a.parquet")
    pq.write_table(rows(100).filter(pc.not_equal(rows(100).column("driver_id"), 3)), tmp_path / "b.parquet")
    window = (T0 + timedelta(minutes=90), T0 + timedelta(minutes=100))  # drivers 90..99 % 7: all but none
    since = T0 + timedelta(minutes=80)
    events = engine.window_events(
        window_view([as_uri(tmp_path / "b.parquet")]), window, since, [as_uri(tmp_path / "a.parquet")]
    )
    by_driver: dict[int, list[int | None]] = {}
    before: dict[int, int | None] = {}
    for row in events.to_pylist():
        by_driver.setdefault(row["driver_id"], []).append(row["__fk_o"])
        before[row["driver_id"]] = row["__fk_before"]
    assert sorted(by_driver) == list(range(7))  # driver 3 was touched in the replaced version
    assert by_driver[3] == [None]  # and has no event left: one row with null times
    start = int(T0.timestamp() * 1_000_000)
    assert sorted(by_driver[0]) == [start + m * MINUTE for m in (84, 91, 98)]
    assert before[0] == start + 77 * MINUTE
    assert set(events.column_names) >= {"__fk_o", "__fk_c", "km", "__fk_before"}
