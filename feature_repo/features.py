"""Features of drivers, computed from their trips: an example of each kind of source."""

from datetime import timedelta

import pandas as pd
import polars as pl

import featurekit as fk
from featurekit import agg

driver = fk.Entity("driver", join_keys=["driver_id"], description="A driver on the platform.")

trips = fk.FileSource("data/trips.parquet", timestamp_field="event_timestamp", created_timestamp_field="created")

# DuckDB reads many formats; a SQL source can also pre-aggregate. Each daily row is stamped at
# the end of its day, when the whole day is known, so no training row sees a day before it ends.
daily_trips = fk.SqlSource(
    """
    SELECT driver_id,
           date_trunc('day', event_timestamp) + INTERVAL 1 DAY AS event_timestamp,
           count(*) AS trips,
           sum(distance_km) AS km
    FROM read_parquet('data/trips.parquet')
    GROUP BY ALL
    """,
    timestamp_field="event_timestamp",
)


@fk.feature_view(
    entity=driver,
    source=trips,
    ttl=timedelta(days=7),
    owner="rides-ml",
    tags={"team": "rides"},
    # Checked on every materialize and push before anything is committed (editing them is metadata only).
    checks=[
        fk.check.not_null("conv_rate"),
        fk.check.between("conv_rate", 0, 1),
        fk.check.unique_keys(),
        fk.check.row_count(min=1_000),
    ],
)
def driver_stats(trips: pl.DataFrame) -> pl.DataFrame:
    """Per-trip quality signals of a driver."""
    return trips.select(
        "driver_id",
        "event_timestamp",
        "created",
        conv_rate=pl.col("accepted") / pl.col("offered"),
        avg_trip_km=pl.col("distance_km"),
    )


@fk.feature_view(entity=driver, source=daily_trips, ttl=timedelta(days=2))
def driver_daily(days: pd.DataFrame) -> pd.DataFrame:
    """A driver's activity over the last full day (pandas works too)."""
    out = days[["driver_id", "event_timestamp"]].copy()
    out["trips_1d"] = days["trips"].astype("int64")
    out["km_per_trip_1d"] = (days["km"] / days["trips"]).round(3)
    return out


@fk.window_view(
    entity=driver,
    source=trips,
    windows=[timedelta(hours=1), timedelta(days=1), timedelta(days=7)],
    aggregations=[agg.count(), agg.sum("distance_km", name="km"), agg.mean("conv_rate"), agg.max("distance_km")],
    checks=[fk.check.between("distance_km", 0, 500), fk.check.freshness(max_age=timedelta(days=2))],
    on_check_failure="warn",  # commit anyway, record the failure and warn
)
def driver_activity(trips: pl.DataFrame) -> pl.DataFrame:
    """A driver's trips in sliding windows: count_1h, km_1d, conv_rate_mean_7d, ... (exact at any moment)."""
    return trips.select(
        "driver_id",
        "event_timestamp",
        "created",
        "distance_km",
        conv_rate=pl.col("accepted") / pl.col("offered"),
    )


@fk.on_demand(inputs=["driver_stats:conv_rate"], request={"trip_km": pl.Float64})
def trip_risk(df: pl.DataFrame) -> pl.DataFrame:
    """A request-time risk score: computed at serving time, and identically in training sets."""
    return df.select(risk=pl.col("conv_rate") * pl.col("trip_km").log1p())
