"""Spark's executors write a materialization's Parquet parts; featurekit alone commits them.

The parts are written by Spark (parquet-mr), every row goes through the checks before the one
Delta commit featurekit makes, and a check that fails, or a Spark job killed mid-way, leaves the
registry and the table as they were (no part in the table folder that a reader could see, none
left on disk at all). The session is the test session's one (tests/engines.py).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from featurekit.errors import CheckError, DataError, StorageError
from featurekit.offline.engine import local_path
from featurekit.quality.checks import CheckWarning
from tests.conftest import BASIC_FEATURES, trips_table, ts
from tests.engines import spark_session
from tests.test_checks import WINDOW_VIEW, features
from tests.test_spark_engine import open_with, rows

pytestmark = pytest.mark.slow


def table_folder(root: Path) -> Path:
    return root / ".featurekit" / "offline" / "driver_stats" / "v1"


def data_files(root: Path) -> list[Path]:
    folder = table_folder(root)
    return (
        sorted(p for p in folder.rglob("*") if p.is_file() and "_delta_log" not in p.parts) if folder.exists() else []
    )


def test_the_executors_write_the_parts_and_featurekit_commits_them(make_repo):
    root = make_repo(data={"data/trips.parquet": trips_table(rows())})
    with open_with(root, "spark") as store:
        store.apply()
        first = store.materialize(ts(0), ts(0) + timedelta(days=4))[0]  # a new table
        second = store.materialize(ts(0) + timedelta(days=4), ts(0) + timedelta(days=10))[0]  # appended
        assert (first.data_version, second.data_version) == (0, 1)
        version = store.registry.active()["driver_stats"].version
        files = store.tables.files("driver_stats", 1, second.data_version)
        assert files
        assert all("parquet-mr" in pq.read_metadata(local_path(f)).created_by for f in files)
        assert sorted(Path(local_path(f)) for f in files) == data_files(root)  # nothing staged is left
        assert sum(pq.read_metadata(local_path(f)).num_rows for f in files) == len(rows())
        last = store.registry.last_materialization(version.id)
        assert last is not None
        assert last.rows == second.rows


def test_a_failing_check_blocks_the_commit_of_the_executors_parts(make_repo):
    checked = BASIC_FEATURES.replace(
        "ttl=timedelta(days=7))", "ttl=timedelta(days=7), checks=[fk.check.between('avg_trip_km', 0, 50)])"
    )
    root = make_repo(features=checked, data={"data/trips.parquet": trips_table(rows())})  # km up to 133
    with open_with(root, "spark") as store:
        store.apply()
        with pytest.raises(CheckError, match="avg_trip_km"):
            store.materialize(ts(0), ts(0) + timedelta(days=10))
        assert store.registry.materializations() == []
    assert data_files(root) == []
    assert not (table_folder(root) / "_delta_log").exists()


SLOW_FEATURES = BASIC_FEATURES.replace(
    "    return trips.select(", "    import time\n    time.sleep(3)\n    return trips.select("
)


def test_a_spark_job_killed_mid_way_commits_nothing_and_leaves_no_parts(make_repo):
    spark: Any = spark_session()
    root = make_repo(features=SLOW_FEATURES, data={"data/trips.parquet": trips_table(rows())})
    with open_with(root, "spark") as store:
        store.apply()
        store.materialize(ts(0), ts(0) + timedelta(days=4))
        committed, before = store.registry.materializations(), data_files(root)
        failures: list[BaseException] = []

        def run() -> None:
            try:
                store.materialize(ts(0) + timedelta(days=4), ts(0) + timedelta(days=10))
            except BaseException as exc:  # noqa: BLE001 -- the test inspects it
                failures.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 120
        while not list(table_folder(root).glob("staged-*")):  # Spark's job is writing the parts
            assert time.monotonic() < deadline, "the write job never started"
            time.sleep(0.05)
        time.sleep(1.0)  # the executors are inside the view function
        spark.sparkContext.cancelAllJobs()  # as an operator killing the job
        worker.join(120)
        assert len(failures) == 1
        assert isinstance(failures[0], StorageError), failures
        assert store.registry.materializations() == committed
        assert data_files(root) == before


def test_a_re_materialized_inner_window_is_replaced_in_place(make_repo):
    from tests.test_spark_engine import spine

    root = make_repo(data={"data/trips.parquet": trips_table(rows())})
    with open_with(root, "spark") as store:
        store.apply()
        store.materialize(ts(0), ts(0) + timedelta(days=10))
        before = store.training_set(spine(), ["driver_stats:conv_rate", "driver_stats:avg_trip_km"]).to_arrow()
        again = store.materialize(ts(0) + timedelta(days=2), ts(0) + timedelta(days=4))[0]  # rows after it stay
        after = store.training_set(spine(), ["driver_stats:conv_rate", "driver_stats:avg_trip_km"]).to_arrow()
        files = store.tables.files("driver_stats", 1, again.data_version)
    assert after.equals(before)
    assert sum(pq.read_metadata(local_path(f)).num_rows for f in files) == len(rows())


CHECKED_FEATURES = BASIC_FEATURES.replace(
    "@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7))",
    "def short_trips(df: pl.DataFrame) -> tuple[bool, int]:\n"
    "    return df.height < 100_000, df.height\n\n"
    "@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7), on_check_failure='warn', checks=[\n"
    "    fk.check.unique_keys(), fk.check.not_null('conv_rate'), fk.check.between('avg_trip_km', 0, 40),\n"
    "    fk.check.row_count(min=1), fk.check.freshness(timedelta(days=1)), fk.check.custom(short_trips)])",
)


def test_checks_and_profiles_are_the_same_on_both_engines_for_an_output_beyond_one_parquet_batch(make_repo):
    # 70,001 rows in one partition, whose Parquet part Spark reads back in batches of 65,536: the
    # last row repeats the first, so a check that saw the part batch by batch would miss it.
    many = [(i % 500, ts(0) + timedelta(seconds=i), ts(0) + timedelta(seconds=i), i % 5, 5, float(i % 50))
            for i in range(70_000)]  # fmt: skip
    many.append(many[0])
    results, profiles = {}, {}
    for name in ("duckdb", "spark"):
        root = make_repo(features=CHECKED_FEATURES, data={"data/trips.parquet": trips_table(many)})
        with open_with(root, name) as store:
            store.apply()
            with pytest.warns(CheckWarning, match=r"unique_keys\(\): observed 1"):
                store.materialize(ts(0), ts(0) + timedelta(days=1))
            (commit,) = store.check_results("driver_stats")
            results[name] = [r.to_dict() for r in commit.results]
            profiles[name] = store.profile("driver_stats").to_dict()
    assert results["spark"] == results["duckdb"]
    assert profiles["spark"] == profiles["duckdb"]
    by_check = {r["check"]: r for r in results["duckdb"]}
    assert by_check["custom(short_trips)"]["detail"] == "0 of 1 batches failed"  # the whole partition at once
    assert by_check["between(avg_trip_km, 0, 40)"]["passed"] is False


def records_of(store: Any, view: str = "driver_stats") -> dict[str, Any]:
    """What a materialization recorded beside its data: profile, planner statistics, freshness, rows."""
    version = store.registry.active()[view].version
    (_, payload) = store.registry.latest_quality("freshness", version_id=version.id)[version.id]
    fresh = json.loads(payload)
    return {
        "profile": store.profile(view).to_dict(),
        "stats": store.registry.data_stats(version.id),
        "fresh": (fresh["newest_event"], fresh["window_newest_event"]),
        "rows": [m.rows for m in store.registry.materializations()],
    }


@pytest.mark.parametrize("view", ["driver_stats", "driver_activity"])
def test_without_checks_or_online_rows_the_executors_summarize_the_parts_like_duckdbs_pass(make_repo, view):
    code = BASIC_FEATURES if view == "driver_stats" else features("", template=WINDOW_VIEW)
    recorded = {}
    for name in ("duckdb", "spark"):
        root = make_repo(features=code, data={"data/trips.parquet": trips_table(rows())})
        with open_with(root, name) as store:
            store.apply()
            store.materialize(ts(0), ts(0) + timedelta(days=4), online=False)
            store.materialize(ts(0) + timedelta(days=4), ts(0) + timedelta(days=10), online=False)
            recorded[name] = records_of(store, view)
    assert recorded["spark"] == recorded["duckdb"]
    assert recorded["spark"]["stats"][0] == 13  # the 13 drivers, counted by one Spark aggregation
    assert recorded["spark"]["profile"]["rows"] == len(rows())


def test_output_outside_the_window_is_refused_on_the_executors_and_nothing_is_committed(make_repo):
    shifted = BASIC_FEATURES.replace(
        'return trips.select(\n        "driver_id", "event_timestamp",',
        'return trips.select(\n        "driver_id", pl.col("event_timestamp") + timedelta(days=30),',
    )
    assert shifted != BASIC_FEATURES
    root = make_repo(features=shifted, data={"data/trips.parquet": trips_table(rows())})
    with open_with(root, "spark") as store:
        store.apply()
        with pytest.raises(DataError, match=r"outside the materialized window"):
            store.materialize(ts(0), ts(0) + timedelta(days=10), online=False)
        assert store.registry.materializations() == []
    assert data_files(root) == []


def test_null_keys_a_function_makes_are_dropped_before_the_executors_write_as_on_duckdb(make_repo):
    nulling = BASIC_FEATURES.replace(
        'created_timestamp_field="created")', 'created_timestamp_field="created", on_null="drop")'
    ).replace(
        'return trips.select(\n        "driver_id",',
        'return trips.select(\n        pl.when(pl.col("driver_id") == 3).then(None).otherwise(pl.col("driver_id"))'
        '.alias("driver_id"),',
    )
    assert "on_null" in nulling
    assert "pl.when" in nulling
    committed = {}
    for name in ("duckdb", "spark"):
        root = make_repo(features=nulling, data={"data/trips.parquet": trips_table(rows())})
        with open_with(root, name) as store:
            store.apply()
            store.materialize(ts(0), ts(0) + timedelta(days=10), online=False)
            version = store.registry.active()["driver_stats"].version
            data = store.registry.last_materialization(version.id)
            assert data is not None
            files = store.tables.files("driver_stats", 1, data.data_version)
            table = pq.ParquetDataset([local_path(f) for f in files]).read()
            keys = table.column("driver_id").to_pylist()
            committed[name] = sorted(keys, key=lambda k: (k is None, k or 0))  # (before: Spark kept the nulls)
    assert committed["spark"] == committed["duckdb"]
    assert 3 not in committed["spark"]
    assert None not in committed["spark"]
