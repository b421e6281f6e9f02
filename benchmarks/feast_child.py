"""The Feast side of each workload, run with the Python of a separate Feast venv.

Imports nothing of featurekit. Usage (from the project root):
    <feast-python> -m benchmarks.feast_child WORKLOAD SCALE_FOLDER OUT_JSON [ARGS...]
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from benchmarks.data import (
    END,
    FEATURES,
    LOOKUP_AT,
    NEW_DAY_END,
    START,
    VIEWS,
    incremental_folder,
    peak_rss_mb,
    restore,
)

warnings.filterwarnings("ignore")

YAML = """project: bench
registry: {repo}/registry.db
provider: local
offline_store:
  type: {offline}
online_store:
{online}
entity_key_serialization_version: 3
"""
SQLITE_ONLINE = "  type: sqlite\n  path: {repo}/online.db"


def _write_config(repo: Path, offline: str = "duckdb", online: str = SQLITE_ONLINE) -> None:
    text = YAML.format(repo=repo, offline=offline, online=online.format(repo=repo))
    (repo / "feature_store.yaml").write_text(text)


def redis_online(url: str) -> str:
    """Feast's online store settings for the Redis at ``url`` (``redis://host:port/db``)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    database = parts.path.strip("/") or "0"
    return f'  type: redis\n  connection_string: "{parts.hostname}:{parts.port},db={database}"'


def feast_store(
    folder: Path, offline: str = "duckdb", repo_name: str = "feast_repo", online: str = SQLITE_ONLINE
) -> Any:
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64

    repo = folder / repo_name
    fresh = not (repo / "registry.db").exists()
    repo.mkdir(exist_ok=True)
    _write_config(repo, offline, online)
    store = FeatureStore(repo_path=str(repo))
    if fresh:
        driver = Entity(name="driver", join_keys=["driver_id"])
        views = []
        for view in VIEWS:
            source = FileSource(
                name=f"{view}_source",
                path=str(folder / "sources" / f"{view}.parquet"),
                timestamp_field="event_timestamp",
                created_timestamp_column="created",
            )
            views.append(
                FeatureView(
                    name=view,
                    entities=[driver],
                    ttl=timedelta(days=7),
                    schema=[Field(name=x, dtype=Float64) for x in FEATURES],
                    source=source,
                    online=True,
                )
            )
        store.apply([driver, *views])
    return store


def training(folder: Path, views: int, offline: str) -> dict[str, Any]:
    store = feast_store(folder, offline)
    spine = pq.read_table(folder / "spine.parquet").to_pandas()
    features = [f"{v}:{x}" for v in VIEWS[:views] for x in FEATURES]
    began = time.perf_counter()
    table = store.get_historical_features(entity_df=spine, features=features, full_feature_names=views > 1).to_arrow()
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "rows": table.num_rows}


def materialize(folder: Path) -> dict[str, Any]:
    store = feast_store(folder)
    began = time.perf_counter()
    store.materialize(START, END, feature_views=["stats_a"])
    return {"seconds": time.perf_counter() - began}


def materialize_redis(folder: Path, url: str) -> dict[str, Any]:
    """``materialize`` of stats_a into the Redis at ``url``, flushed first (an empty store, as featurekit's run)."""
    import redis

    store = feast_store(folder, repo_name="feast_repo_redis", online=redis_online(url))
    client = redis.Redis.from_url(url)
    client.flushdb()
    began = time.perf_counter()
    store.materialize(START, END, feature_views=["stats_a"])
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "online_rows": int(client.dbsize())}


def _stats_a(path: str, name: str = "stats_a") -> tuple[Any, Any]:
    """The driver entity and a feature view of 8 Float64 features over the Parquet ``path``."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    # A declared key type: Feast then reads no source schema (a glob path would defeat its inference).
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    source = FileSource(
        name=f"{name}_source", path=path, timestamp_field="event_timestamp", created_timestamp_column="created"
    )
    schema = [Field(name=x, dtype=Float64) for x in FEATURES]
    return driver, FeatureView(name=name, entities=[driver], ttl=timedelta(days=7), schema=schema, source=source)


def materialize_incremental(folder: Path, out: Path) -> dict[str, Any]:
    """``materialize_incremental`` of the new day, from a restored copy of a store materialized to END."""
    from feast import FeatureStore

    root = incremental_folder(folder)
    base, run = root / "feast_base", out.parent / "feast_incremental"
    if not (base / ".ready").exists():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        _write_config(base)
        store = FeatureStore(repo_path=str(base))
        store.apply(list(_stats_a(str(root / "sources" / "stats_a" / "*.parquet"))))
        store.materialize(START, END, feature_views=["stats_a"])
        (base / ".ready").write_text("ok")
    restore(base, run)
    _write_config(run)  # the copy's own registry and online store
    store = FeatureStore(repo_path=str(run))
    began = time.perf_counter()
    store.materialize_incremental(NEW_DAY_END, feature_views=["stats_a"])
    return {"seconds": time.perf_counter() - began}


def apply_many(folder: Path, out: Path, count: int) -> dict[str, Any]:
    """A cold ``apply`` of ``count`` feature views (Feast's definitions built inside the timer too)."""
    from feast import FeatureStore

    repo = out.parent / "feast_apply_many"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    _write_config(repo)
    source = str(folder / "sources" / "stats_a.parquet")
    began = time.perf_counter()
    store = FeatureStore(repo_path=str(repo))
    driver, _ = _stats_a(source)
    views = [_stats_a(source, f"view_{i:02d}")[1] for i in range(1, count + 1)]
    store.apply([driver, *views])
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "views": len(store.list_feature_views())}


def lookup(folder: Path, entities: int, size: int, calls: int) -> dict[str, Any]:
    store = feast_store(folder)
    if not (folder / "feast_repo" / ".materialized").exists():
        store.materialize(START, END, feature_views=["stats_a"])
        (folder / "feast_repo" / ".materialized").write_text("ok")
    rng = np.random.default_rng(5)
    batches = [rng.integers(0, entities, size).tolist() for _ in range(calls)]
    features = [f"stats_a:{x}" for x in FEATURES]
    for i in range(min(50, calls)):
        store.get_online_features(features=features, entity_rows=[{"driver_id": k} for k in batches[i]]).to_dict()
    samples = []
    for i in range(calls):
        rows = [{"driver_id": k} for k in batches[i]]
        began = time.perf_counter()
        store.get_online_features(features=features, entity_rows=rows).to_dict()
        samples.append(time.perf_counter() - began)
    samples.sort()
    return {
        "p50_ms": statistics.median(samples) * 1e3,
        "p99_ms": samples[int(len(samples) * 0.99) - 1] * 1e3,
        "seconds": statistics.median(samples),
        "calls": calls,
        "lookup_at_note": str(LOOKUP_AT),
    }


def main() -> None:
    workload, folder, out, *args = sys.argv[1:]
    path = Path(folder)
    if workload == "reset":
        shutil.rmtree(path / "feast_repo", ignore_errors=True)
        result: dict[str, Any] = {}
    elif workload == "training":
        result = training(path, int(args[0]), args[1])
    elif workload == "materialize":
        result = materialize(path)
    elif workload == "materialize_redis":
        result = materialize_redis(path, args[0])
    elif workload == "materialize_incremental":
        result = materialize_incremental(path, Path(out))
    elif workload == "apply_many":
        result = apply_many(path, Path(out), int(args[0]))
    elif workload == "lookup":
        result = lookup(path, int(args[0]), int(args[1]), int(args[2]))
    else:
        raise SystemExit(f"unknown workload {workload}")
    result["rss_mb"] = peak_rss_mb()
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
