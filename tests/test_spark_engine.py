"""The Spark engine end to end: the same repo, registry and Delta tables as DuckDB, in both directions.

A view materialized on Spark (its function run on Spark's executors) is read by DuckDB and the
other way round, and both engines build the same training set. One Spark session serves the whole
test session (tests/engines.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import featurekit as fk
from featurekit.errors import FeatureFunctionError
from featurekit.offline.duckdb_engine import DuckDBEngine
from featurekit.offline.spark_engine import SparkEngine
from tests.conftest import BASIC_FEATURES, trips_table, ts
from tests.engines import spark_session

pytestmark = pytest.mark.slow


def rows(n: int = 400) -> list[tuple[int, datetime, datetime, int, int, float]]:
    out = []
    for i in range(n):
        at = ts(0) + timedelta(minutes=17 * i)
        out.append((i % 13, at, at + timedelta(seconds=i % 3), i % 5, 5 + i % 7, float(i) / 3))
    out.append((3, ts(1), ts(1), 1, 2, 99.0))  # a tie with an earlier-created row at the same instant
    out.append((3, ts(1), ts(1) - timedelta(seconds=1), 2, 2, -1.0))
    return out


def spark_engine() -> SparkEngine:
    return SparkEngine(spark_session())  # type: ignore[arg-type]


def open_with(root: Path, engine_name: str) -> fk.FeatureStore:
    engine = spark_engine() if engine_name == "spark" else DuckDBEngine(root)
    return fk.FeatureStore(root, progress=False, engine=engine)


def spine() -> pa.Table:
    times = [ts(0) + timedelta(minutes=23 * i, microseconds=i) for i in range(300)]
    return pa.table(
        {
            "driver_id": pa.array([i % 15 for i in range(300)], pa.int64()),
            "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        }
    )


def table_files(root: Path) -> dict[str, pa.Table]:
    tables = {}
    for path in sorted((root / ".featurekit").rglob("*.parquet")):
        tables[str(path.relative_to(root))] = pq.read_table(path)
    return tables


@pytest.mark.parametrize(("writer", "reader"), [("spark", "duckdb"), ("duckdb", "spark")])
def test_a_table_materialized_on_one_engine_is_read_by_the_other(make_repo, writer, reader):
    root = make_repo(data={"data/trips.parquet": trips_table(rows())})
    with open_with(root, writer) as store:
        store.apply()
        result = store.materialize(ts(0), ts(0) + timedelta(days=10))[0]
        assert result.rows == len(rows())
        online = store.online_features(
            {"driver_id": [3, 7]}, ["driver_stats:conv_rate"], at=ts(0) + timedelta(days=10)
        ).to_dict()
    with open_with(root, reader) as store:
        other = store.training_set(spine(), ["driver_stats:conv_rate", "driver_stats:avg_trip_km"]).to_arrow()
    with open_with(root, writer) as store:
        same = store.training_set(spine(), ["driver_stats:conv_rate", "driver_stats:avg_trip_km"]).to_arrow()
    assert other.equals(same)
    assert other.column("conv_rate").null_count < other.num_rows
    assert online["conv_rate"][0] is not None


def test_both_engines_materialize_the_same_table(make_repo):
    data = {"data/trips.parquet": trips_table(rows())}
    results = {}
    for name in ("duckdb", "spark"):
        root = make_repo(data=data)
        with open_with(root, name) as store:
            store.apply()
            store.materialize(ts(0), ts(0) + timedelta(days=4))
            store.materialize(ts(0) + timedelta(days=4), ts(0) + timedelta(days=10))
            results[name] = store.training_set(
                spine(), ["driver_stats:conv_rate", "driver_stats:avg_trip_km"]
            ).to_arrow()
            committed = pa.concat_tables(table_files(root).values())
            key = ["driver_id", "event_timestamp", "created"]
            results[name + "_rows"] = committed.sort_by([(k, "ascending") for k in key])
    assert results["duckdb"].equals(results["spark"])
    assert results["duckdb_rows"].equals(results["spark_rows"])


def test_a_failing_view_function_on_an_executor_is_its_featurekit_error(make_repo):
    broken = BASIC_FEATURES.replace(
        "    return trips.select(",
        "    if trips.height:\n        raise ValueError('boom on an executor')\n    return trips.select(",
    )
    root = make_repo(features=broken, data={"data/trips.parquet": trips_table(rows(50))})
    with open_with(root, "spark") as store:
        store.apply()
        with pytest.raises(FeatureFunctionError, match=r"driver_stats.*boom on an executor"):
            store.materialize(ts(0), ts(0) + timedelta(days=10))
        assert store.registry.materializations() == []
