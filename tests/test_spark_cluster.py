"""Materialize and a training set through a real Spark standalone cluster (two workers on loopback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import featurekit as fk
from featurekit.offline.duckdb_engine import DuckDBEngine
from tests.conftest import trips_table
from tests.spark_cluster import standalone_cluster
from tests.test_spark_engine import rows, spine

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def test_a_cluster_materializes_and_joins_like_duckdb(make_repo, tmp_path):
    root = make_repo(data={"data/trips.parquet": trips_table(rows())})
    out = tmp_path / "spark.parquet"
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPARK_LOCAL_IP": "127.0.0.1"}
    with standalone_cluster(logs) as master:
        job = subprocess.run(
            [sys.executable, "-m", "tests.spark_cluster_job", master, str(root), str(out)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    assert job.returncode == 0, job.stderr[-3000:]
    assert "executors=2" in job.stdout
    with fk.FeatureStore(root, progress=False, engine=DuckDBEngine(root)) as store:
        expected = store.training_set(spine(), ["driver_stats:conv_rate", "driver_stats:avg_trip_km"]).to_arrow()
    assert pq.read_table(out).equals(expected)
