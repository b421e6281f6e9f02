"""Bad input on the Spark engine: each a FeaturekitError naming the fix, and nothing committed.

A view function whose module the executors cannot import, a spine without the join keys, a Spark
master that does not answer. The session is the test session's one (tests/engines.py).
"""

from __future__ import annotations

import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import featurekit as fk
from featurekit.errors import FeatureFunctionError, SchemaError, StorageError
from tests.conftest import BASIC_FEATURES, store_files, trips_table, ts
from tests.test_spark_engine import open_with, rows, spine

pytestmark = pytest.mark.slow


def visible(root: Path) -> list[str]:
    """The store's files but its locks and the registry's journal: what a failed call must leave as it was."""
    return [f for f in store_files(root) if not f.startswith("locks/") and not f.startswith("registry.db-")]


HELPER = "def ratio(a, b):\n    return a / b\n"


def using(module: str) -> str:
    """The basic repo with its conversion rate computed by ``ratio`` from ``module``."""
    imported = BASIC_FEATURES.replace("import featurekit as fk", f"import featurekit as fk\nfrom {module} import ratio")
    return imported.replace('pl.col("accepted") / pl.col("offered")', 'ratio(pl.col("accepted"), pl.col("offered"))')


def test_a_helper_module_of_the_repo_is_shipped_to_the_executors(make_repo):
    root = make_repo(features=using("helpers"), data={"data/trips.parquet": trips_table(rows(60))})
    (root / "helpers.py").write_text(HELPER)
    with open_with(root, "spark") as store:
        store.apply()
        assert store.materialize(ts(0), ts(0) + timedelta(days=10))[0].rows == len(rows(60))


def test_a_module_the_executors_cannot_import_names_the_view_and_the_fix(make_repo, tmp_path, monkeypatch):
    driver_only = tmp_path / "driver_only"
    driver_only.mkdir()
    (driver_only / "fk_driver_only_lib.py").write_text(HELPER)
    monkeypatch.syspath_prepend(str(driver_only))  # importable here, not in the executors' processes
    root = make_repo(features=using("fk_driver_only_lib"), data={"data/trips.parquet": trips_table(rows(60))})
    with open_with(root, "spark") as store:
        store.apply()
        before = visible(root)
        with pytest.raises(FeatureFunctionError) as raised:
            store.materialize(ts(0), ts(0) + timedelta(days=10))
        message = str(raised.value)
        assert "feature view 'driver_stats'" in message
        assert "fk_driver_only_lib" in message
        assert "install that module where the executors run" in message
        assert store.registry.materializations() == []
        assert visible(root) == before
    monkeypatch.delitem(sys.modules, "fk_driver_only_lib", raising=False)


def test_a_spine_without_the_join_key_names_it_and_writes_nothing(make_repo, tmp_path):
    root = make_repo(data={"data/trips.parquet": trips_table(rows(60))})
    with open_with(root, "spark") as store:
        store.apply()
        store.materialize(ts(0), ts(0) + timedelta(days=10))
        before = visible(root)
        keyless = spine().drop_columns(["driver_id"]).append_column("rider_id", pa.array(range(300), pa.int64()))
        with pytest.raises(SchemaError, match=r"driver_id.*rider_id|rider_id.*driver_id"):
            store.training_set(keyless, ["driver_stats:conv_rate"]).to_arrow()
        with pytest.raises(SchemaError, match="driver_id"):
            store.training_set(keyless, ["driver_stats:conv_rate"]).to_parquet(tmp_path / "out.parquet")
        assert not (tmp_path / "out.parquet").exists()
        assert visible(root) == before


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_spark_master_is_a_storage_error_within_seconds(make_repo):
    root = make_repo(data={"data/trips.parquet": trips_table(rows(60))})
    with fk.FeatureStore(root, progress=False) as store:  # a committed version, on DuckDB
        store.apply()
        store.materialize(ts(0), ts(0) + timedelta(days=5))
        committed = store.registry.materializations()
    port = closed_port()
    (root / "featurekit.yaml").write_text(
        f"offline:\n  engine: spark\n  spark: {{master: 'spark://127.0.0.1:{port}'}}\n"
    )
    before = visible(root)
    with fk.FeatureStore(root, progress=False) as store:
        started = time.monotonic()
        with pytest.raises(StorageError, match=rf"spark://127\.0\.0\.1:{port} does not answer.*offline\.spark\.master"):
            store.materialize(ts(0) + timedelta(days=5), ts(0) + timedelta(days=10))
        assert time.monotonic() - started < 15
        assert store.registry.materializations() == committed
    assert visible(root) == before


def test_the_engine_fails_fast_outside_a_store_too(tmp_path: Path):
    from featurekit.offline.spark_engine import SparkEngine

    with pytest.raises(StorageError, match="does not answer"):
        SparkEngine(master=f"spark://127.0.0.1:{closed_port()}")
