"""A hot key on Spark: with ``featurekit.join.slices`` each key's rows are sorted in time slices,
so a key holding 10% of all rows no longer lands on one task, and the training set stays the same
(as DuckDB's). The session is the test session's one (tests/engines.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest

import featurekit as fk
from benchmarks.data import END, START
from benchmarks.spark import FEATURES, NAMES, hot_key_rows, task_skew
from featurekit.offline.duckdb_engine import DuckDBEngine
from tests.engines import spark_session

pytestmark = pytest.mark.slow


def test_time_slices_spread_a_hot_key_and_keep_the_training_set(tmp_path):
    spark: Any = spark_session()
    features, spine = hot_key_rows(rows=40_000, entities=400)
    source = tmp_path / "hot.parquet"
    pq.write_table(features, source)
    root = tmp_path / "repo"
    root.mkdir()
    (root / "features.py").write_text(FEATURES.format(path=source))
    with fk.FeatureStore(root, progress=False, engine=DuckDBEngine(root)) as store:
        store.apply()
        store.materialize(START, END + timedelta(days=1), online=False)
        expected = store.training_set(spine, NAMES).to_arrow()
    spark.conf.set("spark.sql.shuffle.partitions", "16")
    spark.conf.set("spark.sql.adaptive.coalescePartitions.enabled", "false")
    skew = {}
    try:
        with fk.FeatureStore(root, progress=False, spark=spark) as store:
            for slices in (1, 8):
                spark.conf.set("featurekit.join.slices", str(slices))
                spark.sparkContext.setJobGroup(f"hot-{slices}", "hot key test")
                assert store.training_set(spine, NAMES).to_arrow().equals(expected)
                skew[slices] = task_skew(spark, f"hot-{slices}")
    finally:
        spark.conf.unset("featurekit.join.slices")
        spark.conf.set("spark.sql.shuffle.partitions", "4")
        spark.conf.unset("spark.sql.adaptive.coalescePartitions.enabled")
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    assert skew[1]["largest_task_share"] > 0.13  # the hot key's 10% and its share of the rest
    assert skew[8]["largest_task_share"] < 0.6 * skew[1]["largest_task_share"]
    assert skew[8]["records_max_over_mean"] < 1.6
