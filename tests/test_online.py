"""Serving: online values equal training values, through the same code path, on every store."""

from __future__ import annotations

import math
import re
from datetime import timedelta

import polars as pl
import pyarrow as pa
import pytest

import featurekit as fk
from featurekit.testing import assert_no_skew
from tests.conftest import BASIC_FEATURES, trips_table, ts

ROWS = [
    (1, ts(0), ts(0), 1, 2, 1.0),
    (1, ts(2), ts(2), 2, 4, 2.0),
    (2, ts(1), ts(1), 3, 4, 3.0),
    (2, ts(1), ts(1, 1), 4, 8, 4.0),  # same event time, written later: wins the tie
    (2, ts(1), None, 7, 8, 9.0),  # same event time, no created time: loses
    (3, ts(3), ts(3), 1, 1, 9.0),
]

ON_DEMAND = (
    BASIC_FEATURES
    + """

@fk.on_demand(inputs=["driver_stats:conv_rate"], request={"trip_km": pl.Float64})
def trip_risk(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(risk=pl.col("conv_rate") * pl.col("trip_km").log1p())


@fk.on_demand(inputs=["trip_risk:risk", "driver_stats:avg_trip_km"])
def risk_per_km(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(risk_per_km=pl.col("risk") / pl.col("avg_trip_km"))
"""
)

ONLINE_CONFIGS = {"sqlite": None, "sqlite-no-mmap": "online:\n  mmap_mb: 0\n", "memory": "online:\n  type: memory\n"}


@pytest.fixture(params=sorted(ONLINE_CONFIGS))
def store(request, make_repo, open_store):
    root = make_repo(ON_DEMAND, data={"data/trips.parquet": trips_table(ROWS)}, config=ONLINE_CONFIGS[request.param])
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(5))
    return store


def test_sqlite_reads_through_the_configured_memory_map(make_repo, open_store):
    for config, expected in [(None, 1024 * 1024 * 1024), ("online:\n  mmap_mb: 0\n", 0)]:
        store = open_store(make_repo(ON_DEMAND, data={"data/trips.parquet": trips_table(ROWS)}, config=config))
        store.apply()
        store.materialize(ts(0), ts(5))
        connection = store.online._connect()
        assert connection.execute("PRAGMA mmap_size").fetchone()[0] == expected


def training_at(store, ids, at, features, **columns):
    spine = pl.DataFrame({"driver_id": ids, "event_timestamp": [at] * len(ids), **columns})
    return store.training_set(spine, features).to_polars()


@pytest.mark.parametrize("hours_after", [0, 1, 24 * 7, 24 * 7 + 1])
def test_online_equals_training_at_the_lookup_time_including_ttl(store, hours_after):
    at = ts(3) + timedelta(hours=hours_after)
    ids = [1, 2, 3, 4]
    online = store.online_features({"driver_id": ids}, ["driver_stats"], at=at).to_dict()
    offline = training_at(store, ids, at, ["driver_stats"])
    assert online["conv_rate"] == offline["conv_rate"].to_list()
    assert online["avg_trip_km"] == offline["avg_trip_km"].to_list()
    assert online["driver_id"] == ids


def test_values_tie_break_and_ttl(store):
    online = store.online_features([{"driver_id": 1}, {"driver_id": 2}, {"driver_id": 9}], ["driver_stats"], at=ts(4))
    assert online.to_dict() == {"driver_id": [1, 2, 9], "conv_rate": [0.5, 0.5, None], "avg_trip_km": [2.0, 4.0, None]}
    past_ttl = store.online_features({"driver_id": [1]}, ["driver_stats:avg_trip_km"], at=ts(9, 1)).to_dict()
    assert past_ttl == {"driver_id": [1], "avg_trip_km": [None]}  # unlike Feast: stale values are not served


def test_on_demand_features_are_identical_in_training_and_serving(store):
    ids, km = [1, 2, 3, 4], [3.2, 11.0, None, 1.0]
    features = ["driver_stats:conv_rate", "trip_risk", "risk_per_km"]
    online = store.online_features({"driver_id": ids}, features, request={"trip_km": km}, at=ts(4)).to_dict()
    offline = training_at(store, ids, ts(4), features, trip_km=km)
    for name in ("conv_rate", "risk", "risk_per_km"):
        assert online[name] == offline[name].to_list(), name
    assert online["risk"][2] is None  # a null request input gives null, on both paths
    assert online["risk"][0] == pytest.approx(0.5 * math.log1p(3.2))


def test_response_formats(store):
    response = store.online_features(pl.DataFrame({"driver_id": [2, 1]}), ["driver_stats"], at=ts(4))
    assert response.to_polars().equals(pl.DataFrame(response.to_dict()))
    assert response.to_pandas()["avg_trip_km"].tolist() == [4.0, 2.0]
    assert response.to_arrow().column_names == ["driver_id", "conv_rate", "avg_trip_km"]


def test_push_runs_the_view_function_and_never_goes_back_in_time(store):
    def raw(day, accepted, created=None):
        return {
            "driver_id": 1,
            "event_timestamp": ts(day),
            "created": created or ts(day),
            "accepted": accepted,
            "offered": 10,
            "distance_km": float(accepted),
        }

    result = store.push("driver_stats", [raw(4, 3), raw(3.5, 9), raw(4, 1, created=ts(3))])  # out of order
    assert result.rows == 3
    assert store.online_features({"driver_id": [1]}, ["driver_stats"], at=ts(4)).to_dict()["conv_rate"] == [0.3]
    store.push("driver_stats", [raw(3.9, 5)])  # late: older than what is stored
    assert store.online_features({"driver_id": [1]}, ["driver_stats"], at=ts(4)).to_dict()["conv_rate"] == [0.3]
    # Materializing older data again does not overwrite the pushed, newer value either.
    store.materialize(ts(0), ts(5))
    assert store.online_features({"driver_id": [1]}, ["driver_stats"], at=ts(4)).to_dict()["conv_rate"] == [0.3]


def test_push_to_offline_too(store):
    row = {"driver_id": 5, "event_timestamp": ts(4), "created": ts(4), "accepted": 1, "offered": 4, "distance_km": 1.0}
    result = store.push("driver_stats", [row], to="online_and_offline")
    assert result.data_version is not None
    offline = training_at(store, [5], ts(4, 1), ["driver_stats:conv_rate"])
    assert offline["conv_rate"].to_list() == [0.25]
    assert store.registry.commits()[-1].kind == "push"
    assert store.registry.last_materialization(1).watermark == ts(5)  # a push does not move the watermark


def test_bad_keys(store):
    with pytest.raises(fk.DataError, match="null 'driver_id'"):
        store.online_features([{"driver_id": None}], ["driver_stats"])
    with pytest.raises(fk.SchemaError, match="no key 'driver_id'"):
        store.online_features([{"rider_id": 1}], ["driver_stats"])
    with pytest.raises(fk.SchemaError, match="'driver_id' is str"):
        store.online_features([{"driver_id": "1"}], ["driver_stats"])
    with pytest.raises(fk.UnknownNameError, match="did you mean 'driver_stats'"):
        store.online_features([{"driver_id": 1}], ["driver_stat:conv_rate"])
    with pytest.raises(fk.SchemaError, match="request input 'trip_km'"):
        store.online_features([{"driver_id": 1}], ["trip_risk"])


def test_a_new_version_never_mixes_with_the_old_one(make_repo, open_store):
    # SQLite only: the in-memory store lives and dies with one FeatureStore object.
    root = make_repo(ON_DEMAND, data={"data/trips.parquet": trips_table(ROWS)})
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(5))
    (root / "features.py").write_text(ON_DEMAND.replace('pl.col("distance_km"),', 'pl.col("distance_km") * 10,'))
    fresh = fk.FeatureStore(root, progress=False)
    try:
        fresh.apply()
        # v2 is applied but not materialized: serving reads v2 (empty), not v1's values.
        assert fresh.online_features({"driver_id": [1]}, ["driver_stats"], at=ts(4)).to_dict()["avg_trip_km"] == [None]
        pinned = fresh.online_features({"driver_id": [1]}, ["driver_stats@v1:avg_trip_km"], at=ts(4)).to_dict()
        assert pinned["avg_trip_km"] == [2.0]
        fresh.materialize(ts(0), ts(5))
        assert fresh.online_features({"driver_id": [1]}, ["driver_stats"], at=ts(4)).to_dict()["avg_trip_km"] == [20.0]
        # The old process still has the old code: it refuses to serve the new version.
        store.config = store.config.model_copy(
            update={"online": store.config.online.model_copy(update={"refresh_s": 0})}
        )
        store._server = None
        with pytest.raises(fk.NotAppliedError, match="driver_stats"):
            store.online_features({"driver_id": [1]}, ["driver_stats"], at=ts(4))
    finally:
        fresh.close()


def test_skew_check_passes_and_catches_a_divergence(store):
    report = store.verify(["driver_stats", "trip_risk"], request={"trip_km": 2.0}, at=ts(4))
    assert report.ok, str(report)
    assert report.entities == 3
    assert_no_skew(store, ["driver_stats:conv_rate"], at=ts(4))
    # An online-only push makes serving differ from training: the check must say so.
    store.push(
        "driver_stats",
        [
            {
                "driver_id": 3,
                "event_timestamp": ts(3.5),
                "created": ts(3.5),
                "accepted": 1,
                "offered": 8,
                "distance_km": 1.0,
            }
        ],
    )
    report = store.verify(["driver_stats:conv_rate"], at=ts(4))
    assert not report.ok
    (mismatch,) = report.mismatches
    assert (mismatch.entity, mismatch.feature, mismatch.training, mismatch.serving) == (
        {"driver_id": 3},
        "conv_rate",
        1.0,
        0.125,
    )
    assert (mismatch.view, mismatch.version) == ("driver_stats", 1)
    with pytest.raises(AssertionError, match=re.escape("conv_rate for {'driver_id': 3}")):
        assert_no_skew(store, ["driver_stats:conv_rate"], at=ts(4))


def test_typed_values_round_trip_online(make_repo, open_store):
    features = """
    import polars as pl
    import featurekit as fk

    thing = fk.Entity("thing", join_keys=["a", "b"])
    src = fk.FileSource("data/things.parquet")

    @fk.feature_view(entity=thing, source=src)
    def kinds(rows: pl.DataFrame) -> pl.DataFrame:
        return rows.select("a", "b", "event_timestamp", "flag", "when", "tags", "ratio", "label")
    """
    data = pa.table(
        {
            "a": pa.array([1, 12], pa.int64()),
            "b": ["23", "3"],
            "event_timestamp": pa.array([ts(0), ts(0)], pa.timestamp("us", tz="UTC")),
            "flag": [True, None],
            "when": pa.array([ts(1), None], pa.timestamp("us", tz="UTC")),
            "tags": [["x", "y"], []],
            "ratio": [float("nan"), 0.25],
            "label": ["é", None],
        }
    )
    store = open_store(make_repo(features, data={"data/things.parquet": data}))
    store.apply()
    store.materialize(ts(0), ts(1))
    entities = {"a": [1, 12, 1], "b": ["23", "3", "3"]}
    online = store.online_features(entities, ["kinds"], at=ts(2)).to_dict()
    spine = pa.table({**entities, "event_timestamp": pa.array([ts(2)] * 3, pa.timestamp("us", tz="UTC"))})
    offline = store.training_set(spine, ["kinds"]).to_arrow()
    for name in ("flag", "when", "tags", "label"):
        assert online[name] == offline.column(name).to_pylist(), name
    assert math.isnan(online["ratio"][0])
    assert online["ratio"][1:] == [0.25, None]
    assert store.verify(["kinds"], at=ts(2)).ok
