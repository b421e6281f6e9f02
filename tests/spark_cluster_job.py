"""Run by tests/test_spark_cluster.py in its own process: materialize and a training set on a cluster.

Usage: python -m tests.spark_cluster_job MASTER_URL REPO OUT.parquet [FOLDER_URI]

With FOLDER_URI, the training set is also written there by the executors (``to_parquet(uri)``).
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import featurekit as fk
from featurekit.offline.spark_engine import build_session
from tests.conftest import ts
from tests.test_spark_engine import spine


def main() -> None:
    master, repo, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    conf = {
        "spark.executor.cores": "1",
        "spark.executor.memory": "1g",
        "spark.cores.max": "2",
        "spark.sql.shuffle.partitions": "4",
        "spark.executorEnv.PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "spark.executorEnv.PYSPARK_PYTHON": sys.executable,
    }
    session = build_session(master, conf)
    try:
        with fk.FeatureStore(repo, progress=False, spark=session) as store:
            store.apply()
            store.materialize(ts(0), ts(0) + timedelta(days=10))
            features = ["driver_stats:conv_rate", "driver_stats:avg_trip_km"]
            table = store.training_set(spine(), features).to_arrow()
            if len(sys.argv) > 4:
                store.training_set(spine(), features).to_parquet(sys.argv[4])
        import pyarrow.parquet as pq

        pq.write_table(table, out)
        executors = session.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1  # minus the driver
        print(f"executors={executors}")
    finally:
        session.stop()


if __name__ == "__main__":
    main()
