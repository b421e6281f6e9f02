"""Named feature sets: one name a model reads, registered and versioned like a view."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

import featurekit as fk
from tests.conftest import BASIC_FEATURES, trips_table, ts

RISK = """
@fk.on_demand(inputs=["driver_stats:conv_rate"], request={"trip_km": pl.Float64})
def trip_risk(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(risk=pl.col("conv_rate") * pl.col("trip_km"))
"""
FRAUD_V1 = 'fraud_v1 = fk.FeatureSet("fraud_v1", features=["driver_stats:conv_rate", "trip_risk"], owner="risk")\n'
FRAUD_V2 = 'fraud_v1 = fk.FeatureSet("fraud_v1", features=["driver_stats", "trip_risk"], owner="risk")\n'
EXPLICIT = ["driver_stats:conv_rate", "trip_risk"]
TRIPS = [
    (1, ts(1), ts(1), 3, 4, 10.0),
    (2, ts(1, 5), ts(1, 5), 1, 2, 20.0),
    (1, ts(2), ts(2), 1, 1, 5.0),
]


def spine() -> pa.Table:
    return pa.table(
        {
            "driver_id": pa.array([1, 2, 1, 3], pa.int64()),
            "event_timestamp": pa.array([ts(1, 1), ts(1, 6), ts(3), ts(3)], pa.timestamp("us", tz="UTC")),
            "trip_km": [2.0, 3.0, 4.0, 5.0],
        }
    )


@pytest.fixture
def repo(make_repo, open_store):
    def build(features: str = BASIC_FEATURES + RISK + FRAUD_V1) -> tuple[Path, fk.FeatureStore]:
        root = make_repo(features=features, data={"data/trips.parquet": trips_table(TRIPS)})
        store = open_store(root)
        store.apply()
        store.materialize(ts(0), ts(4))
        return root, store

    return build


def test_a_feature_set_reads_exactly_its_features_offline_and_online(repo):
    _, store = repo()
    by_name = store.training_set(spine(), "fraud_v1").to_arrow()
    assert by_name.equals(store.training_set(spine(), EXPLICIT).to_arrow())
    assert by_name.column_names == ["driver_id", "event_timestamp", "trip_km", "conv_rate", "risk"]
    entities = [{"driver_id": 1}, {"driver_id": 2}]
    online = store.online_features(entities, features="fraud_v1", request={"trip_km": [2.0, 3.0]}, at=ts(3))
    explicit = store.online_features(entities, EXPLICIT, request={"trip_km": [2.0, 3.0]}, at=ts(3))
    assert online.to_dict() == explicit.to_dict() == {"driver_id": [1, 2], "conv_rate": [1.0, 0.5], "risk": [2.0, 1.5]}


def test_the_manifest_records_the_set_and_rebuilds_it(repo, tmp_path):
    _, store = repo()
    built = store.training_set(spine(), "fraud_v1")
    path = built.to_parquet(tmp_path / "train.parquet")
    manifest = built.manifest
    assert manifest["features"] == ["fraud_v1"]
    kinds = {(r["view"], r["kind"], r["version"]) for r in manifest["views"]}
    assert ("fraud_v1", "feature_set", 1) in kinds
    assert {("driver_stats", "batch", 1), ("trip_risk", "on_demand", 1)} <= kinds
    assert store.training_set(spine(), manifest=path).to_arrow().equals(built.to_arrow())


def test_a_set_is_versioned_by_its_list_and_pins_read_old_versions(repo):
    root, store = repo()
    (root / "features.py").write_text((root / "features.py").read_text().replace('owner="risk"', 'owner="fraud-team"'))
    store = fk.FeatureStore(root, progress=False)
    plan = store.apply()
    assert any(c.view == "fraud_v1" and c.kind == "metadata" for c in plan.changes)  # no new version
    (root / "features.py").write_text(BASIC_FEATURES + RISK + FRAUD_V2)
    store = fk.FeatureStore(root, progress=False)
    plan = store.apply()
    change = next(c for c in plan.changes if c.view == "fraud_v1")
    assert (change.kind, change.old_version, change.new_version) == ("changed", 1, 2)
    now = store.training_set(spine(), "fraud_v1").to_arrow()
    assert now.column_names[3:] == ["conv_rate", "avg_trip_km", "risk"]
    pinned = store.training_set(spine(), "fraud_v1@v1").to_arrow()
    assert pinned.column_names[3:] == ["conv_rate", "risk"]
    before = store.training_set(spine(), "fraud_v1", as_of=plan.registry_version - 1).to_arrow()
    assert before.column_names[3:] == ["conv_rate", "risk"]
    store.close()


def test_a_set_cannot_be_asked_for_one_feature(repo):
    _, store = repo()
    with pytest.raises(fk.UnknownNameError, match="'fraud_v1' is a feature set"):
        store.training_set(spine(), "fraud_v1:conv_rate")


@pytest.mark.parametrize(
    ("definition", "error", "message"),
    [
        ('bad = fk.FeatureSet("bad", features=["nope:x"])\n', fk.DefinitionError, "defines no view 'nope'"),
        (
            'bad = fk.FeatureSet("bad", features=["driver_stats:conv_rat"])\n',
            fk.DefinitionError,
            "did you mean 'conv_rate'",
        ),
        ('bad = fk.FeatureSet("bad", features=[])\n', fk.DefinitionError, "lists no features"),
        (
            FRAUD_V1 + 'outer = fk.FeatureSet("outer", features=["fraud_v1"])\n',
            fk.DefinitionError,
            "lists the feature set 'fraud_v1'",
        ),
        ('clash = fk.FeatureSet("driver_stats", features=["trip_risk"])\n', fk.InvalidNameError, "name of the view"),
    ],
)
def test_bad_sets_are_definition_errors_with_their_line(make_repo, open_store, definition, error, message):
    features = BASIC_FEATURES + RISK + definition
    root = make_repo(features=features, data={"data/trips.parquet": trips_table(TRIPS)})
    with pytest.raises(error, match=message) as caught:
        open_store(root).apply()
    assert "features.py:" in str(caught.value)
