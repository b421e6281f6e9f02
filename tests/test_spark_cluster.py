"""Materialize and a training set through a real Spark standalone cluster (two workers on loopback)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import featurekit as fk
from featurekit.manifest import load_manifest
from featurekit.offline.duckdb_engine import DuckDBEngine
from tests.conftest import trips_table, ts
from tests.spark_cluster import standalone_cluster
from tests.test_spark_bad_inputs import visible
from tests.test_spark_engine import rows, spine

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def test_a_cluster_materializes_and_joins_like_duckdb(make_repo, tmp_path):
    root = make_repo(data={"data/trips.parquet": trips_table(rows())})
    out = tmp_path / "spark.parquet"
    folder = f"{(tmp_path / 'train').as_uri()}/"  # written by the executors through Hadoop's filesystem
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPARK_LOCAL_IP": "127.0.0.1"}
    with standalone_cluster(logs) as master:
        job = subprocess.run(
            [sys.executable, "-m", "tests.spark_cluster_job", master, str(root), str(out), folder],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    assert job.returncode == 0, job.stderr[-3000:]
    assert "executors=2" in job.stdout
    with fk.FeatureStore(root, progress=False, engine=DuckDBEngine(root)) as store:
        expected = store.training_set(spine(), ["driver_stats:conv_rate", "driver_stats:avg_trip_km"]).to_arrow()
    assert pq.read_table(out).equals(expected)
    assert pq.read_table(tmp_path / "train").cast(expected.schema).equals(expected)
    assert load_manifest(folder).profile is not None  # the executors' profile states, merged


NO_EXECUTOR_JOB = """
import sys, time
from datetime import timedelta
import featurekit as fk
from tests.conftest import ts

started = time.monotonic()
with fk.FeatureStore(sys.argv[1], progress=False) as store:
    try:
        store.materialize(ts(0) + timedelta(days=5), ts(0) + timedelta(days=10))
    except fk.FeaturekitError as exc:
        print(f"{type(exc).__name__}|{time.monotonic() - started:.1f}|{exc}")
"""


def test_a_master_without_workers_is_a_storage_error_within_the_wait(make_repo, tmp_path):
    root = make_repo(data={"data/trips.parquet": trips_table(rows(60))})
    with fk.FeatureStore(root, progress=False, engine=DuckDBEngine(root)) as store:  # a committed version
        store.apply()
        store.materialize(ts(0), ts(0) + timedelta(days=5))
        committed = store.registry.materializations()
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPARK_LOCAL_IP": "127.0.0.1"}
    with standalone_cluster(logs, workers=0) as master:
        (root / "featurekit.yaml").write_text(
            f"offline:\n  engine: spark\n  spark: {{master: '{master}', executor_wait_s: 4}}\n"
        )
        before = visible(root)
        job = subprocess.run(
            [sys.executable, "-c", NO_EXECUTOR_JOB, str(root)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    assert job.returncode == 0, job.stderr[-3000:]
    kind, seconds, message = job.stdout.strip().splitlines()[-1].split("|", 2)
    assert kind == "StorageError"
    assert f"the Spark master {master} gave featurekit no executor within 4 s" in message
    assert "offline.spark.master" in message
    assert "start-worker.sh" in message
    assert float(seconds) < 90  # the session's start-up (10-30 s here) and the 4 s wait, not for ever
    assert visible(root) == before
    with fk.FeatureStore(root, progress=False, engine=DuckDBEngine(root)) as store:
        assert store.registry.materializations() == committed
