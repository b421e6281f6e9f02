"""The example repo ``featurekit init`` writes, and the deterministic trip data it ships with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FEATURES_PY = '''"""Features of drivers, computed from their trips."""

from datetime import timedelta

import polars as pl

import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource("data/trips.parquet", timestamp_field="event_timestamp", created_timestamp_field="created")


@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7))
def driver_stats(trips: pl.DataFrame) -> pl.DataFrame:
    """Per-trip quality signals of a driver."""
    return trips.select(
        "driver_id",
        "event_timestamp",
        "created",
        conv_rate=pl.col("accepted") / pl.col("offered"),
        avg_trip_km=pl.col("distance_km"),
    )
'''

CONFIG_YAML = """# featurekit settings; every key is optional (see featurekit.config for the full list)
store_dir: .featurekit
"""

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

EXAMPLE_FILES = ("features.py", "featurekit.yaml", "data/trips.parquet")  # what write_example writes


def trips(drivers: int = 200, days: int = 30, per_day: int = 4, seed: int = 7) -> pa.Table:
    """Deterministic trip events: a few trips per driver per day, some corrected later (same time, newer created)."""
    rng = np.random.default_rng(seed)
    rows = drivers * days * per_day
    driver_id = np.repeat(np.arange(1000, 1000 + drivers, dtype=np.int64), days * per_day)
    seconds = rng.integers(0, days * 86_400, rows)
    event = np.datetime64(EPOCH.replace(tzinfo=None), "us") + seconds.astype("timedelta64[s]")
    created = event + rng.integers(0, 3_600, rows).astype("timedelta64[s]")
    offered = rng.integers(1, 12, rows)
    accepted = np.minimum(offered, rng.integers(0, 12, rows))
    corrections = rng.random(rows) < 0.02  # late corrections: same event time, later write time
    table = pa.table(
        {
            "driver_id": np.concatenate([driver_id, driver_id[corrections]]),
            "event_timestamp": pa.array(np.concatenate([event, event[corrections]]), pa.timestamp("us", tz="UTC")),
            "created": pa.array(
                np.concatenate([created, created[corrections] + np.timedelta64(1, "D")]), pa.timestamp("us", tz="UTC")
            ),
            "offered": np.concatenate([offered, offered[corrections]]),
            "accepted": np.concatenate([accepted, np.maximum(accepted[corrections] - 1, 0)]),
            "distance_km": np.round(
                np.concatenate([rng.gamma(2.0, 4.0, rows), rng.gamma(2.0, 4.0, corrections.sum())]), 3
            ),
        }
    )
    return table


def write_example(root: Path) -> list[Path]:
    """Write the example repo into ``root`` (files that exist are left alone); returns what was written."""
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("features.py", FEATURES_PY), ("featurekit.yaml", CONFIG_YAML)):
        target = root / name
        if not target.exists():
            target.write_text(text)
            written.append(target)
    data = root / EXAMPLE_FILES[2]
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(trips(), data)
        written.append(data)
    return written


def example_window() -> tuple[datetime, datetime]:
    """The time span the example data covers."""
    return EPOCH, EPOCH + timedelta(days=31)
