"""End-to-end demo on the example repo with the embedded defaults (no services).

generate data -> apply -> materialize (a window, then incrementally) -> training set -> Parquet.
Run from the project root: ``python feature_repo/scripts/demo.py``.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

import featurekit as fk

REPO = Path(__file__).resolve().parent.parent


def spine(rows: int = 5_000) -> pl.DataFrame:
    """Label events: which driver, when, and whether the trip was completed."""
    rng = np.random.default_rng(11)
    start = datetime(2026, 1, 3, tzinfo=UTC)
    return pl.DataFrame(
        {
            "driver_id": rng.integers(1000, 1500, rows),
            "event_timestamp": [start + timedelta(seconds=int(s)) for s in rng.integers(0, 55 * 86_400, rows)],
            "completed": rng.random(rows) < 0.8,
        }
    )


def main() -> None:
    import generate_data  # the sibling script

    shutil.rmtree(REPO / ".featurekit", ignore_errors=True)  # a fresh store every run
    print(f"data: {generate_data.main()}")
    store = fk.FeatureStore(REPO)
    print("\n$ featurekit apply")
    print(store.apply())
    print("\n$ featurekit materialize --start 2026-01-01 --end 2026-02-01")
    for result in store.materialize("2026-01-01", "2026-02-01"):
        print(result)
    print("\n$ featurekit materialize-incremental --end 2026-03-03")
    for result in store.materialize_incremental("2026-03-03"):
        print(result)
    print("\n$ featurekit list")
    for info in store.list_views():
        print(f"{info.name} v{info.version.version}: {', '.join(info.version.features)}")
    labels = spine()
    training = store.training_set(
        labels,
        features=["driver_stats:conv_rate", "driver_stats:avg_trip_km", "driver_daily"],
    )
    frame = training.to_polars()
    print(f"\ntraining set: {frame.height} rows (spine {labels.height}), columns {frame.columns}")
    print(frame.head(8))
    coverage = {c: round(1 - frame[c].null_count() / frame.height, 3) for c in frame.columns[3:]}
    print(f"coverage (share of rows with a value): {coverage}")
    out = training.to_parquet(REPO / "data" / "training_set.parquet")
    print(f"wrote {out}")
    store.close()


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
