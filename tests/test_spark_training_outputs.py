"""A spine given as a Spark DataFrame, ``ts.to_spark()`` and ``ts.to_parquet(folder)``, on both engines.

The training set and its manifest are the same whichever engine builds it and whichever form the
spine takes (an Arrow table or the same rows as a Spark DataFrame); a folder written by Spark's
executors holds the same rows, in the same order, as one written by DuckDB. The session is the
test session's one (tests/engines.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from featurekit.errors import ConfigError, DataError, ManifestError, SchemaError, StorageError
from featurekit.manifest import MANIFEST_FILE, WRITING_MARK, load_manifest
from featurekit.offline.engine import local_path
from tests.conftest import trips_table, ts
from tests.engines import spark_session
from tests.test_spark_engine import open_with, rows, spine

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent

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


KILLED_WRITE = """
import os, signal, sys
import featurekit as fk
from featurekit.offline.spark_engine import build_session
from featurekit.offline.spark_folders import SparkFolder
from tests.test_spark_engine import spine

def die(self, manifest):  # the parts are written, the manifest not yet: as an out-of-memory kill would
    os.kill(os.getpid(), signal.SIGKILL)

SparkFolder.commit = die
with fk.FeatureStore(sys.argv[1], progress=False, spark=build_session("local[1]", {})) as store:
    store.training_set(spine(), ["driver_stats:conv_rate", "driver_stats:avg_trip_km"]).to_parquet(sys.argv[2])
"""


def folder_names(uri: str) -> list[str]:
    return sorted(p.name for p in Path(local_path(uri)).iterdir())


def test_a_folder_uri_is_written_by_the_executors_published_by_markers_and_read_back(make_repo, tmp_path):
    root = make_repo(data={"data/trips.parquet": trips_table(rows())})
    with open_with(root, "duckdb") as store:
        store.apply()
        store.materialize(ts(0), ts(0) + timedelta(days=10))
        duck = store.training_set(spine(), FEATURES)
        expected = duck.to_arrow()
        duck_folder = duck.to_parquet(f"{(tmp_path / 'duck').as_uri()}/")  # file:// on DuckDB: a local folder
        assert duck_folder == tmp_path / "duck"
        with pytest.raises(StorageError, match=r"DuckDB engine cannot write a training set to s3a://.*Spark engine"):
            duck.to_parquet("s3a://bucket/train/")
    uri = f"{(tmp_path / 'train').as_uri()}/"
    with open_with(root, "spark") as store:
        written = store.training_set(spine(), FEATURES).to_parquet(uri)
        assert written == uri.rstrip("/")
        assert written in [r.path for r in store.registry.training_sets(None)]  # lineage records the URI
        names = folder_names(uri)
        assert {MANIFEST_FILE, "_SUCCESS"} <= set(names)
        assert WRITING_MARK not in names
        assert "_temporary" not in names  # Spark's staging is gone (Hadoop's local filesystem adds .crc files)
        assert pq.read_table(tmp_path / "train").cast(expected.schema).equals(expected)
        manifest = load_manifest(uri).to_dict()
        assert same_build(manifest) == same_build(load_manifest(tmp_path / "duck").to_dict())
        # the executors' profile states, merged, give DuckDB's profile of the same rows
        assert manifest["profile"] == load_manifest(tmp_path / "duck").to_dict()["profile"]
        report = store.drift(reference=uri, current=tmp_path / "duck")  # both folders, by URI and by path
        assert report.features
        assert not report.drifted
        with pytest.raises(StorageError, match=r"already holds a training set.*never overwritten.*new folder"):
            store.training_set(spine().slice(0, 10), FEATURES).to_parquet(uri)
        assert folder_names(uri) == names  # untouched
        assert pq.read_table(tmp_path / "train").num_rows == expected.num_rows
        rebuilt = store.training_set(spine(), manifest=uri)
        assert rebuilt.to_arrow().equals(expected)


def test_a_write_killed_before_its_manifest_is_refused_by_readers_and_redone_by_the_next(make_repo, tmp_path):
    root = make_repo(data={"data/trips.parquet": trips_table(rows())})
    with open_with(root, "spark") as store:
        store.apply()
        store.materialize(ts(0), ts(0) + timedelta(days=10))
        expected = store.training_set(spine(), FEATURES).to_arrow()
        before = f"{(tmp_path / 'before').as_uri()}/"
        store.training_set(spine(), FEATURES).to_parquet(before)
    uri = f"{(tmp_path / 'train').as_uri()}/"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    job = subprocess.run(
        [sys.executable, "-c", KILLED_WRITE, str(root), uri],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert job.returncode == -signal.SIGKILL, job.stderr[-3000:]
    names = folder_names(uri)
    assert WRITING_MARK in names
    assert [n for n in names if n.startswith("part-")]  # Spark's job committed its parts before the kill
    assert MANIFEST_FILE not in names
    assert "_SUCCESS" not in names
    with pytest.raises(ManifestError, match=r"write did not finish.*write the training set again"):
        load_manifest(uri)
    with open_with(root, "spark") as store:
        with pytest.raises(ManifestError, match="write did not finish"):
            store.drift(reference=uri, current=before)
        assert load_manifest(before).views  # the training set written before stays whole
        assert pq.read_table(tmp_path / "before").cast(expected.schema).equals(expected)
        store.training_set(spine(), FEATURES).to_parquet(uri)  # the unfinished folder is emptied and redone
    assert WRITING_MARK not in folder_names(uri)
    assert pq.read_table(tmp_path / "train").cast(expected.schema).equals(expected)


def test_a_failed_write_to_a_folder_uri_leaves_nothing(make_repo, tmp_path):
    root = make_repo(data={"data/trips.parquet": trips_table(rows())})
    spine_file = tmp_path / "spine.parquet"
    pq.write_table(spine(), spine_file)
    uri = f"{(tmp_path / 'train').as_uri()}/"
    with open_with(root, "spark") as store:
        store.apply()
        store.materialize(ts(0), ts(0) + timedelta(days=10))
        built = store.training_set(spine_file, FEATURES)
        pq.write_table(spine().slice(0, 5), spine_file)  # the spine changes under the build
        with pytest.raises(DataError, match="spine"):
            built.to_parquet(uri)
    assert not (tmp_path / "train").exists()
