"""Shared fixtures: real repos on disk, real DuckDB, real Delta tables, real SQLite, a real Redis server."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import featurekit as fk
from tests.redis_server import own_redis_server, redis_server
from tests.ui_helpers import ui_demo

__all__ = ["own_redis_server", "redis_server", "ui_demo"]  # fixtures of tests/redis_server.py and ui_helpers.py

T0 = datetime(2026, 1, 1, tzinfo=UTC)

BASIC_FEATURES = """
from datetime import timedelta
import polars as pl
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource("data/trips.parquet", timestamp_field="event_timestamp", created_timestamp_field="created")

@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7))
def driver_stats(trips: pl.DataFrame) -> pl.DataFrame:
    \"\"\"Per-trip quality signals of a driver.\"\"\"
    return trips.select(
        "driver_id", "event_timestamp", "created",
        conv_rate=pl.col("accepted") / pl.col("offered"),
        avg_trip_km=pl.col("distance_km"),
    )
"""


def ts(day: float, hour: float = 0) -> datetime:
    """A UTC instant ``day`` days (and ``hour`` hours) after 2026-01-01."""
    from datetime import timedelta

    return T0 + timedelta(days=day, hours=hour)


def trips_table(rows: list[tuple[int, datetime, datetime, int, int, float]]) -> pa.Table:
    """Trip rows: (driver_id, event_timestamp, created, accepted, offered, distance_km)."""
    cols = list(zip(*rows, strict=True)) if rows else [[], [], [], [], [], []]
    return pa.table(
        {
            "driver_id": pa.array(cols[0], pa.int64()),
            "event_timestamp": pa.array(cols[1], pa.timestamp("us", tz="UTC")),
            "created": pa.array(cols[2], pa.timestamp("us", tz="UTC")),
            "accepted": pa.array(cols[3], pa.int64()),
            "offered": pa.array(cols[4], pa.int64()),
            "distance_km": pa.array(cols[5], pa.float64()),
        }
    )


class RepoFactory:
    """Writes feature repos into a temporary folder."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.count = 0

    def __call__(
        self,
        features: str = BASIC_FEATURES,
        data: dict[str, pa.Table] | None = None,
        config: str | None = None,
    ) -> Path:
        self.count += 1
        root = self.base / f"repo{self.count}"
        root.mkdir()
        (root / "features.py").write_text(textwrap.dedent(features))
        if config is not None:
            (root / "featurekit.yaml").write_text(textwrap.dedent(config))
        for name, table in (data or {}).items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
        return root


@pytest.fixture
def make_repo(tmp_path: Path) -> RepoFactory:
    return RepoFactory(tmp_path)


@pytest.fixture
def open_store() -> Iterator[Callable[[Path], fk.FeatureStore]]:
    stores: list[fk.FeatureStore] = []

    def opener(root: Path) -> fk.FeatureStore:
        store = fk.FeatureStore(root, progress=False)
        stores.append(store)
        return store

    yield opener
    for store in stores:
        store.close()


def store_files(root: Path) -> list[str]:
    """Every file under a repo's store folder (to check that nothing was written)."""
    store = root / ".featurekit"
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file()) if store.exists() else []
