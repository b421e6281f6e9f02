"""Process bodies of the soak test (spawned): a materialize/push writer, an apply writer, readers.

Writers log every command that succeeded, in order, so the test can replay them serially; readers
count every error they see (there must be none).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RIDES_A = """
import polars as pl
import featurekit as fk

rider = fk.Entity("rider", join_keys=["rider_id"])
rides = fk.FileSource("data/rides.parquet", timestamp_field="event_timestamp")

@fk.feature_view(entity=rider, source=rides)
def rider_stats(rides: pl.DataFrame) -> pl.DataFrame:
    return rides.select("rider_id", "event_timestamp", fare=pl.col("fare") * FACTOR)

FACTOR = {factor}
"""


def pushed_rows(i: int) -> dict[str, list[Any]]:
    """The raw trips of push number ``i`` (deterministic, distinct event times)."""
    at = T0 + timedelta(days=9, minutes=i)
    return {
        "driver_id": [i % 4, (i + 1) % 4],
        "event_timestamp": [at, at],
        "created": [at, at],
        "accepted": [1, 2],
        "offered": [2, 2],
        "distance_km": [float(i), float(i) + 0.5],
    }


def materialize_and_push(root: str, until: float, log: Any, errors: Any) -> None:
    import featurekit as fk

    i = 0
    with fk.FeatureStore(root, progress=False) as store:
        while time.time() < until:
            try:
                if i % 2 == 0:
                    day = (i // 2) % 9
                    store.materialize(T0 + timedelta(days=day), T0 + timedelta(days=day + 1), views=["driver_stats"])
                    log.put(("materialize", day))
                else:
                    store.push("driver_stats", pushed_rows(i), to="online_and_offline")
                    log.put(("push", i))
            except fk.ConflictError:
                pass  # another writer held the view: allowed, not logged
            except Exception as exc:  # noqa: BLE001 -- reported to the test
                errors.put(f"writer: {type(exc).__name__}: {exc}")
            i += 1


def apply_and_materialize(root: str, until: float, log: Any, errors: Any) -> None:
    import featurekit as fk

    i = 0
    while time.time() < until:
        factor = 1 + i % 3
        staged = Path(root, "rides.py.partial")
        staged.write_text(RIDES_A.format(factor=factor))
        staged.replace(Path(root, "rides.py"))  # atomic: other processes import whole files only
        try:
            with fk.FeatureStore(root, progress=False) as store:
                store.apply()
                store.materialize(T0, T0 + timedelta(days=9), views=["rider_stats"])
            log.put(("apply_and_materialize", factor))
        except fk.ConflictError:
            pass
        except Exception as exc:  # noqa: BLE001 -- reported to the test
            errors.put(f"applier: {type(exc).__name__}: {exc}")
        i += 1


def read(root: str, until: float, reads: Any, errors: Any) -> None:
    import pyarrow as pa

    import featurekit as fk

    spine = pa.table(
        {
            "driver_id": pa.array([0, 1, 2, 3], pa.int64()),
            "event_timestamp": pa.array([T0 + timedelta(days=9, hours=12)] * 4, pa.timestamp("us", tz="UTC")),
        }
    )
    count = 0
    with fk.FeatureStore(root, progress=False) as store:
        while time.time() < until:
            try:
                at = T0 + timedelta(days=9, hours=12)
                store.online_features({"driver_id": [0, 1, 2, 3]}, ["driver_stats:avg_trip_km"], at=at)
                store.training_set(spine, ["driver_stats:avg_trip_km"], as_of=store.registry.head_commit()).to_arrow()
                count += 2
            except Exception as exc:  # noqa: BLE001 -- reported to the test
                errors.put(f"reader: {type(exc).__name__}: {exc}")
    reads.put(count)
