"""End-to-end demo on the example repo with the embedded defaults (no services).

generate data -> apply -> materialize (a window, then incrementally) -> training set -> Parquet
-> online lookups (with an on-demand feature and sliding-window aggregates that decay with time)
-> push -> skew check -> time travel (as_of, manifest, history).
Run from the project root: ``python feature_repo/scripts/demo.py``.

The demo drives the Python API; the ``>>>`` headers show the call made, and the equivalent
``featurekit`` command is named beside it where one exists.
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
            "trip_km": np.round(rng.gamma(2.0, 4.0, rows), 2),
        }
    )


def main() -> None:
    import generate_data  # the sibling script

    shutil.rmtree(REPO / ".featurekit", ignore_errors=True)  # a fresh store every run
    print(f"data: {generate_data.main()}")
    store = fk.FeatureStore(REPO)
    print("\n>>> store.apply()                                  # CLI: featurekit apply")
    print(store.apply())
    print('\n>>> store.materialize("2026-01-01", "2026-02-01")   # CLI: featurekit materialize --start ... --end ...')
    for result in store.materialize("2026-01-01", "2026-02-01"):
        print(result)
    print('\n>>> store.materialize_incremental("2026-03-03")     # CLI: featurekit materialize-incremental --end ...')
    for result in store.materialize_incremental("2026-03-03"):
        print(result)
    print('\n>>> store.check_results("driver_stats")[-1]         # CLI: featurekit checks driver_stats')
    print(store.check_results("driver_stats")[-1])
    print("\n>>> store.list_views()                             # CLI: featurekit list")
    for info in store.list_views():
        print(f"{info.name} v{info.version.version}: {', '.join(info.version.features)}")
    labels = spine()
    training = store.training_set(
        labels,
        features=[
            "driver_stats:conv_rate",
            "driver_stats:avg_trip_km",
            "driver_daily",
            "driver_activity:count_1d",
            "driver_activity:km_7d",
            "trip_risk",
        ],
    )
    frame = training.to_polars()
    print(f"\ntraining set: {frame.height} rows (spine {labels.height}), columns {frame.columns}")
    with pl.Config(tbl_cols=12, tbl_width_chars=200):
        print(frame.head(6))
    coverage = {c: round(1 - frame[c].null_count() / frame.height, 3) for c in frame.columns[4:]}
    print(f"coverage (share of rows with a value): {coverage}")
    out = training.to_parquet(REPO / "data" / "training_set.parquet")
    print(f"wrote {out}")

    at = datetime(2026, 3, 2, 12, tzinfo=UTC)  # lookups "as of" just after the data ends
    features = ["driver_stats:conv_rate", "driver_daily:trips_1d", "trip_risk"]
    print("\n>>> store.online_features([{'driver_id': 1007}, {'driver_id': 9999}], features, request=..., at=at)")
    print("    (CLI: featurekit get driver_id=1007 -f driver_stats:conv_rate ... --at 2026-03-02T12:00)")
    row = store.online_features(
        [{"driver_id": 1007}, {"driver_id": 9999}], features, request={"trip_km": [3.2, 3.2]}, at=at
    )
    print(row.to_dict(), "(9999 is not a known driver: nulls)")
    print("\nskew check (training path vs serving path, same moment):")
    print(store.verify(features, request={"trip_km": 3.2}, sample=200, at=at))
    # The online store keeps the events lookups from the end of the last materialization on need.
    windowed = ["driver_activity:count_1d", "driver_activity:km_7d", "driver_activity:conv_rate_mean_7d"]
    print("\nwindow features decay with time, with no new materialization (start inclusive, end exclusive):")
    materialized_end = datetime(2026, 3, 3, tzinfo=UTC)
    for moment in (materialized_end, materialized_end + timedelta(days=3), materialized_end + timedelta(days=8)):
        values = store.online_features([{"driver_id": 1007}], windowed, at=moment).to_dict()
        print(f"  at {moment.isoformat()}: { ({k: v[0] for k, v in values.items() if k != 'driver_id'}) }")
    print(store.verify(windowed, sample=200, at=materialized_end + timedelta(days=3)))
    fresh = {
        "driver_id": 1007,
        "event_timestamp": datetime(2026, 3, 2, 11, tzinfo=UTC),
        "created": datetime(2026, 3, 2, 11, tzinfo=UTC),
        "offered": 4,
        "accepted": 1,
        "distance_km": 2.5,
    }
    print("\npush one fresh trip of driver 1007 (online only), then the skew check again:")
    print(store.push("driver_stats", [fresh]))
    print(store.online_features([{"driver_id": 1007}], ["driver_stats:conv_rate"], at=at).to_dict())
    report = store.verify(["driver_stats:conv_rate"], entities=[{"driver_id": 1007}], at=at)
    count = len(report.mismatches)
    print(
        f"{count} {'mismatch' if count == 1 else 'mismatches'}, as this demonstration intends: the pushed trip "
        "went to the online store only, so serving is ahead of training (push with to='online_and_offline' "
        "to keep them equal)"
    )
    for mismatch in report.mismatches:
        print(f"  {mismatch}")

    print("\na trip with more accepted than offered rides fails the check conv_rate <= 1: nothing is written")
    try:
        store.push("driver_stats", [{**fresh, "accepted": 9}])
    except fk.CheckError as refused:
        print("\n".join(str(refused).splitlines()[:3]))
    print(store.online_features([{"driver_id": 1007}], ["driver_stats:conv_rate"], at=at).to_dict(), "(unchanged)")

    print("\ntime travel: re-materialize February (a new data version), then rebuild the first training set")
    store.materialize("2026-02-01", "2026-03-01", views=["driver_stats"])
    again = store.training_set(labels, manifest=out)  # the manifest stored in the Parquet file
    print(
        f"rebuilt from {out.name}'s manifest at registry version {again.manifest['registry_version']}: "
        f"identical = {again.to_polars().equals(frame)}"
    )
    print('\n>>> store.history("driver_stats")                   # CLI: featurekit history driver_stats')
    for entry in store.history("driver_stats"):
        print(entry)
    store.close()


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
