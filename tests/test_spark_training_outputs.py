"""A spine given as a Spark DataFrame, ``ts.to_spark()`` and ``ts.to_parquet(folder)``, on both engines.

The training set and its manifest are the same whichever engine builds it and whichever form the
spine takes (an Arrow table or the same rows as a Spark DataFrame); a folder written by Spark's
executors holds the same rows, in the same order, as one written by DuckDB. The session is the
test session's one (tests/engines.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest

from featurekit.errors import ConfigError, SchemaError, StorageError
from featurekit.manifest import MANIFEST_FILE, load_manifest
from tests.conftest import trips_table, ts
from tests.engines import spark_session
from tests.test_spark_engine import open_with, rows, spine

pytestmark = pytest.mark.slow

FEATURES = ["driver_stats:conv_rate", "driver_stats:avg_trip_km"]


def same_build(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest without the moment it was built at (the one field two builds differ in)."""
    return {k: v for k, v in manifest.items() if k != "built_at"}


def test_a_spark_dataframe_spine_gives_duckdbs_training_set_and_manifest(make_repo, tmp_path):
    spark: Any = spark_session()
    root = make_repo(data={"data/trips.parquet": trips_table(rows())})
    with open_with(root, "duckdb") as store:
        store.apply()
        store.materialize(ts(0), ts(0) + timedelta(days=10))
        duck = store.training_set(spine(), FEATURES)
        expected = duck.to_arrow()
        collected = store.training_set(spark.createDataFrame(spine()), FEATURES)  # collected into Arrow
        assert collected.to_arrow().equals(expected)
        assert same_build(collected.manifest) == same_build(duck.manifest)
        duck.to_parquet(f"{tmp_path}/duck/")
        with pytest.raises(ConfigError, match=r"needs a Spark session.*ts\.to_spark\(spark\)"):
            duck.to_spark()
        handed = duck.to_spark(spark)
        assert handed.count() == expected.num_rows
    with open_with(root, "spark") as store:
        frame_spine = spark.createDataFrame(spine())
        built = store.training_set(frame_spine, FEATURES)
        assert built.to_arrow().equals(expected)
        assert same_build(built.manifest) == same_build(duck.manifest)
        lazy = store.training_set(frame_spine, FEATURES).to_spark()  # Spark's own plan, run where it is used
        assert lazy.count() == expected.num_rows
        assert lazy.toArrow().cast(expected.schema).equals(expected)
        written = store.training_set(frame_spine, FEATURES).to_parquet(f"{tmp_path}/spark/")
        # a manifest taken from a Spark DataFrame spine rebuilds from the same rows given as Arrow
        assert store.training_set(spine(), manifest=built.manifest).to_arrow().equals(expected)
    parts = sorted(p.name for p in written.iterdir() if p.name.startswith("part-"))
    assert len(parts) >= 1
    from_spark, from_duck = pq.read_table(tmp_path / "spark"), pq.read_table(tmp_path / "duck")
    assert from_duck.equals(expected)
    assert from_spark.cast(expected.schema).equals(expected)
    spark_manifest = load_manifest(tmp_path / "spark").to_dict()
    assert same_build(spark_manifest) == same_build(load_manifest(tmp_path / "duck").to_dict())
    assert spark_manifest["profile"] is not None  # the executors' rows were profiled all the same
    with open_with(root, "duckdb") as store:
        rebuilt = store.training_set(spine(), manifest=tmp_path / "spark")
        assert rebuilt.to_arrow().equals(expected)


def test_a_folder_is_replaced_whole_and_a_foreign_folder_is_refused(make_repo, tmp_path):
    root = make_repo(data={"data/trips.parquet": trips_table(rows(60))})
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a training set")
    with open_with(root, "spark") as store:
        store.apply()
        store.materialize(ts(0), ts(0) + timedelta(days=10))
        target = tmp_path / "train"
        store.training_set(spine(), FEATURES).to_parquet(f"{target}/")
        first = sorted(p.name for p in target.iterdir())
        store.training_set(spine().slice(0, 10), FEATURES).to_parquet(target)  # an existing folder: replaced
        assert pq.read_table(target).num_rows == 10
        assert MANIFEST_FILE in first
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder left
        with pytest.raises(StorageError, match="not a training set"):
            store.training_set(spine(), FEATURES).to_parquet(foreign)
        assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_a_spark_dataframe_spine_without_the_key_names_it(make_repo):
    spark: Any = spark_session()
    root = make_repo(data={"data/trips.parquet": trips_table(rows(60))})
    with open_with(root, "spark") as store:
        store.apply()
        store.materialize(ts(0), ts(0) + timedelta(days=10))
        keyless = spark.createDataFrame(spine().drop_columns(["driver_id"]))
        with pytest.raises(SchemaError, match=r"spine \(a Spark DataFrame\) has no column 'driver_id'"):
            store.training_set(keyless, FEATURES)
