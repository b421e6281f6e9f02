"""The join plan follows the statistics a materialization recorded; every plan gives the same rows."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest

import featurekit as fk
from featurekit.offline.duckdb_engine import DuckDBEngine
from tests.conftest import trips_table, ts


def dense_rows(drivers: int, per_driver: int, tie: bool = False) -> list[tuple]:
    rows = [(d, ts(0, i / 10), ts(0, i / 10), 1, 2, float(i)) for d in range(drivers) for i in range(per_driver)]
    if tie:  # a second row at an existing (driver, event time), written later: it wins the tie
        rows.append((0, ts(0, 0.5), ts(0, 0.5) + timedelta(seconds=1), 1, 1, 99.0))
    return rows


def spine(drivers: int, per_driver: int) -> pa.Table:
    times = [ts(0, i / 7) for _ in range(drivers) for i in range(per_driver)]
    return pa.table(
        {
            "driver_id": [d for d in range(drivers) for _ in range(per_driver)],
            "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        }
    )


def plans(training_set) -> str:
    return training_set.description.splitlines()[0]


ONE_THREAD = "offline:\n  threads: 1\n"  # DuckDB in one thread: the plans do not depend on it


def test_plans_follow_the_recorded_statistics_and_agree(make_repo, open_store):
    store = open_store(make_repo(data={"data/trips.parquet": trips_table(dense_rows(5, 40))}, config=ONE_THREAD))
    store.apply()
    store.materialize(ts(0), ts(2))
    stats = store.registry.last_materialization(1)
    assert (stats.entities, stats.unique_times) == (5, None)  # ties are not measured
    many = spine(5, 20)  # 20 spine rows per entity: ASOF, in memory
    untied = store.training_set(many, ["driver_stats"])
    assert "driver_stats: asof_sorted" in plans(untied)
    few = spine(5, 2)  # 2 spine rows per entity: the range join
    ranged = store.training_set(few, ["driver_stats"])
    assert "driver_stats: range" in plans(ranged)
    # The same values whatever the plan: the range plan's rows are the first two of each driver's ASOF rows.
    asof_values = untied.to_arrow().column("avg_trip_km").to_pylist()
    first_two = [asof_values[d * 20 + i] for d in range(5) for i in range(2)]
    assert ranged.to_arrow().column("avg_trip_km").to_pylist() == first_two
    store.push("driver_stats", trips_table([(0, ts(1), ts(1), 1, 1, 7.0)]), to="online_and_offline")
    pushed = store.training_set(many, ["driver_stats"])  # a push may tie with committed rows
    assert "driver_stats: asof_sorted" in plans(pushed)
    expected = untied.to_arrow().column("avg_trip_km").to_pylist()
    assert pushed.to_arrow().column("avg_trip_km").to_pylist()[:20] == expected[:20]
    # Each ASOF plan an engine is told to take gives the same rows; two threads choose as one does.
    for engine, plan in (
        (DuckDBEngine(store.root, asof_plan="asof"), "asof"),
        (DuckDBEngine(store.root, threads=2), "asof_sorted"),
        (DuckDBEngine(store.root, threads=2, asof_plan="asof_numpy"), "asof_numpy"),
        (DuckDBEngine(store.root, memory_limit="1GB"), "asof"),  # DuckDB spills within a limit
        (DuckDBEngine(store.root, memory_limit="1GB", asof_plan="asof_sorted"), "asof_sorted"),
    ):
        with fk.FeatureStore(store.root, progress=False, engine=engine) as other:
            again = other.training_set(many, ["driver_stats"])
            assert f"driver_stats: {plan} " in plans(again) + " "
            assert again.to_arrow().equals(pushed.to_arrow())


def test_a_window_with_ties_records_it_and_the_tie_is_broken(make_repo, open_store):
    store = open_store(
        make_repo(data={"data/trips.parquet": trips_table(dense_rows(3, 30, tie=True))}, config=ONE_THREAD)
    )
    store.apply()
    store.materialize(ts(0), ts(2))
    assert store.registry.last_materialization(1).entities == 3
    got = store.training_set(spine(3, 10), ["driver_stats"])
    assert "driver_stats: asof_sorted" in plans(got)
    table = got.to_arrow()
    at_tie = [
        v
        for d, t, v in zip(
            table.column("driver_id").to_pylist(),
            table.column("event_timestamp").to_pylist(),
            table.column("avg_trip_km").to_pylist(),
            strict=True,
        )
        if d == 0 and t == ts(0, 4 / 7)
    ]
    assert at_tie == [99.0]  # 0.57 h: the newest row is the tied one at 0.5 h, the later-created wins


def test_an_unknown_asof_plan_is_refused(tmp_path):
    with pytest.raises(fk.ConfigError, match=r"'asof_fast'\) names no ASOF plan; use one of asof, asof_numpy"):
        DuckDBEngine(tmp_path, asof_plan="asof_fast")


def test_values_read_late_in_small_batches_give_the_rows_of_every_other_plan(make_repo, open_store, monkeypatch):
    # asof_sorted with one integer key searches the keys and times alone, then reads the values of
    # the rows taken in a second, streamed scan. Batches of 7 rows put batch edges everywhere; the
    # rows come from three files and a push, with a tie; the asof plan (SQL only) is the reference.
    from featurekit.offline import duckdb_join

    monkeypatch.setattr(duckdb_join, "_LATE_BATCH_ROWS", 7)
    store = open_store(make_repo(data={"data/trips.parquet": trips_table(dense_rows(6, 50, tie=True))}))
    store.apply()
    for start, end in ((0, 2), (2, 3.5), (3.5, 24)):  # three files of rows (hours of day 0)
        store.materialize(ts(0, start), ts(0, end))
    store.push("driver_stats", trips_table([(0, ts(0, 0.5), ts(1), 1, 1, 7.0)]), to="online_and_offline")
    many = spine(6, 30)
    reads: list[pa.Table | None] = []
    second_read = duckdb_join.DuckDBJoin._rows_at
    monkeypatch.setattr(duckdb_join.DuckDBJoin, "_rows_at", lambda *a: reads.append(second_read(*a)) or reads[-1])
    late = store.training_set(many, ["driver_stats"])
    assert "driver_stats: asof_sorted" in plans(late)
    late_rows = late.to_arrow()
    assert len(reads) == 1
    assert reads[0] is not None  # the second scan lined up with the first
    with fk.FeatureStore(store.root, progress=False, engine=DuckDBEngine(store.root, asof_plan="asof")) as other:
        reference = other.training_set(many, ["driver_stats"]).to_arrow()
    assert late_rows.equals(reference)
    assert reference.column("avg_trip_km").null_count < reference.num_rows // 2
    # A second scan that did not line up with the first (rows read in another order) is not used:
    # the rows are then read with their values at once, and they are the same.
    monkeypatch.setattr(duckdb_join.DuckDBJoin, "_rows_at", lambda *args: None)
    assert store.training_set(many, ["driver_stats"]).to_arrow().equals(reference)
