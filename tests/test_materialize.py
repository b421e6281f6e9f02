"""Materialization: batching, atomicity, recovery from an unrecorded Delta commit, concurrency."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featurekit as fk
from featurekit.offline.engine import local_path
from tests.conftest import BASIC_FEATURES, RepoFactory, store_files, trips_table, ts

PER_ENTITY = """
import polars as pl
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource("data/trips.parquet", created_timestamp_field="created")

@fk.feature_view(entity=driver, source=trips)
def trip_rank(trips: pl.DataFrame) -> pl.DataFrame:
    # needs all of an entity's rows together: the n-th trip of the driver in the window
    return trips.sort("event_timestamp", "created").select(
        "driver_id", "event_timestamp", "created",
        nth_trip=pl.col("event_timestamp").cum_count().over("driver_id"),
    )
"""


def many_trips(n: int = 3000, drivers: int = 50) -> pa.Table:
    rng = np.random.default_rng(3)
    minutes = rng.choice(np.arange(0, 20 * 24 * 60), size=n, replace=False)
    rows = [
        (int(d), ts(0) + timedelta(minutes=int(m)), ts(0) + timedelta(minutes=int(m)), 1, 2, 1.0)
        for d, m in zip(rng.integers(0, drivers, n), minutes, strict=True)
    ]
    return trips_table(rows)


def test_batches_keep_an_entity_together_and_do_not_change_results(make_repo, open_store):
    data = {"data/trips.parquet": many_trips()}
    one_batch = open_store(make_repo(PER_ENTITY, data=data))
    many_batches = open_store(make_repo(PER_ENTITY, data=data, config="offline:\n  batch_rows: 250\n"))
    for store in (one_batch, many_batches):
        store.apply()
        (result,) = store.materialize(ts(0), ts(30))
        assert result.rows == 3000
    probe = pl.DataFrame({"driver_id": list(range(50)), "event_timestamp": [ts(25)] * 50}).with_columns(
        pl.col("event_timestamp").dt.cast_time_unit("us")
    )
    a = one_batch.training_set(probe, ["trip_rank"]).to_polars()
    b = many_batches.training_set(probe, ["trip_rank"]).to_polars()
    assert a.equals(b)
    counts = many_trips().to_pandas().groupby("driver_id").size()
    assert a.sort("driver_id")["nth_trip"].to_list() == [counts.get(d, None) for d in range(50)]


STRICT = BASIC_FEATURES.replace(
    "    return trips.select(",
    "    if (trips['offered'] == 0).any():\n"
    "        raise ValueError('offered must be positive')\n"
    "    return trips.select(",
)


def test_a_failing_function_commits_nothing(make_repo, open_store):
    data = many_trips(500)
    offered = data.column("offered").to_pylist()
    offered[-1] = 0  # one bad row, late in the data
    root = make_repo(STRICT, data={"data/trips.parquet": data.set_column(4, "offered", pa.array(offered))})
    store = open_store(root)
    store.apply()
    bad_day = data.column("event_timestamp")[-1].as_py()
    store.materialize(ts(0), bad_day)
    before_files = store_files(root)
    before_commits = store.registry.commits()
    probe = pl.DataFrame({"driver_id": [1, 2], "event_timestamp": [ts(9), ts(9)]})
    before = store.training_set(probe, ["driver_stats"]).to_arrow()
    with pytest.raises(fk.FeatureFunctionError, match=r"driver_stats.*offered must be positive.*features.py:\d+"):
        store.materialize(ts(0), ts(30))
    assert store.registry.commits() == before_commits
    assert store.training_set(probe, ["driver_stats"]).to_arrow().equals(before)
    assert set(before_files) <= set(store_files(root))


def test_an_unrecorded_delta_commit_is_invisible_and_undone(make_repo, open_store):
    """A writer killed between its Delta commit and the registry record leaves no trace."""
    root = make_repo(data={"data/trips.parquet": many_trips(500)})
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(10))
    probe = pl.DataFrame({"driver_id": list(range(50)), "event_timestamp": [ts(15)] * 50})
    before = store.training_set(probe, ["driver_stats"]).to_arrow()
    table_path = store.tables.path("driver_stats", 1)
    stray = store.training_set(probe, ["driver_stats"]).to_arrow()  # any rows with the table's schema
    version = store.registry.active()["driver_stats"].version
    rows = pa.table(
        {
            "driver_id": pa.array([1], pa.int64()),
            "event_timestamp": pa.array([ts(14)], pa.timestamp("us", tz="UTC")),
            "created": pa.array([ts(14)], pa.timestamp("us", tz="UTC")),
            "conv_rate": [999.0],
            "avg_trip_km": [999.0],
        }
    ).cast(version.schema)
    write_deltalake(str(table_path), rows, mode="append")  # the "killed" writer's commit
    assert stray.num_rows == 50
    assert store.training_set(probe, ["driver_stats"]).to_arrow().equals(before)  # invisible
    store.materialize(ts(20), ts(21))  # the next write undoes it first
    assert store.training_set(probe, ["driver_stats"]).to_arrow().equals(before)
    latest = DeltaTable(str(table_path)).to_pyarrow_table()
    assert 999.0 not in latest.column("conv_rate").to_pylist()


def _materialize_in_process(root: str, start_day: int, end_day: int, queue: multiprocessing.Queue) -> None:
    try:
        with fk.FeatureStore(root, progress=False) as store:
            store.materialize(ts(start_day), ts(end_day))
        queue.put("ok")
    except fk.ConflictError as exc:
        queue.put(f"conflict: {exc}")


@pytest.mark.slow
def test_concurrent_materializations_commit_or_conflict(make_repo, open_store):
    root = make_repo(data={"data/trips.parquet": many_trips(3000)})
    store = open_store(root)
    store.apply()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_materialize_in_process, args=(str(root), 0, 15 + i, queue)) for i in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    outcomes = [queue.get(timeout=5) for _ in workers]
    successes = [o for o in outcomes if o == "ok"]
    assert all(o == "ok" or ("driver_stats" in o and o.startswith("conflict")) for o in outcomes)
    commits = [c for c in store.registry.commits() if c.kind == "materialize"]
    assert len(commits) == len(successes) >= 1
    versions = [m.data_version for m in store.registry.materializations()]
    assert versions == sorted(set(versions))


def test_materialize_to_a_clean_store_writes_only_inside_the_store(make_repo, open_store, tmp_path: Path):
    root = make_repo(BASIC_FEATURES, data={"data/trips.parquet": many_trips(100)})
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(30))
    outside = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert all(p.startswith((".featurekit/", "data/", "features.py", "__pycache__/")) for p in outside)


def committed_rows(store: fk.FeatureStore) -> list[tuple]:
    """The rows of the head data version of driver_stats, as (driver, event, created, km), sorted."""
    version = store.registry.active()["driver_stats"].version
    head = store.registry.last_materialization(version.id)
    assert head is not None
    files = store.tables.files("driver_stats", version.version, head.data_version)
    columns = ["driver_id", "event_timestamp", "created", "avg_trip_km"]
    table = pa.concat_tables(pq.read_table(local_path(f), columns=columns) for f in files)
    return sorted(tuple(r.values()) for r in table.to_pylist())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(windows=st.lists(st.tuples(st.integers(0, 9), st.integers(1, 5)), min_size=1, max_size=5))
def test_any_sequence_of_windows_commits_each_source_row_once(tmp_path_factory, windows):
    # Windows that cover all committed rows overwrite the table, windows after them append, the
    # others replace by predicate: whichever was chosen, the table holds each materialized source
    # row exactly once.
    rows = [
        (d, ts(day, hour), ts(day, hour), 1, 2, float(day * 100 + hour + d))
        for day in range(12)
        for hour in (3, 15)
        for d in (1, 2)
    ]
    root = RepoFactory(tmp_path_factory.mktemp("windows"))(BASIC_FEATURES, {"data/trips.parquet": trips_table(rows)})
    covered: set[int] = set()
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        for first, days in windows:
            store.materialize(ts(first), ts(first + days))
            covered |= set(range(first, first + days))
            expected = sorted((d, e, c, km) for d, e, c, _, _, km in rows if (e - ts(0)).days in covered)
            assert committed_rows(store) == expected
