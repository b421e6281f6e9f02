"""Declared dtypes and schemas: request values that do not fit, views that declare their output schema."""

from __future__ import annotations

import polars as pl
import pytest

import featurekit as fk
from tests.conftest import BASIC_FEATURES, trips_table, ts

ROWS = [(1, ts(0), ts(0), 1, 2, 1.0), (2, ts(1), ts(1), 3, 4, 3.0)]

REQUEST_TYPED = (
    BASIC_FEATURES
    + """

@fk.on_demand(inputs=["driver_stats:conv_rate"], request={"passengers": pl.Int8, "trip_km": pl.Float64})
def trip_risk(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(risk=pl.col("conv_rate") * pl.col("trip_km") + pl.col("passengers"))
"""
)


@pytest.fixture
def typed_store(make_repo, open_store):
    store = open_store(make_repo(REQUEST_TYPED, data={"data/trips.parquet": trips_table(ROWS)}))
    store.apply()
    store.materialize(ts(0), ts(5))
    return store


@pytest.mark.parametrize(
    ("name", "bad", "dtype"), [("passengers", 300, "Int8"), ("trip_km", "abc", "Float64")], ids=["int8", "float64"]
)
def test_a_request_value_that_does_not_fit_its_dtype_is_one_error_on_both_paths(typed_store, name, bad, dtype):
    good = {"passengers": 2, "trip_km": 1.5}
    request = {**good, name: bad}
    with pytest.raises(fk.SchemaError) as online:
        typed_store.online_features([{"driver_id": 1}], ["trip_risk"], request=request, at=ts(2))
    spine = pl.DataFrame({"driver_id": [1], "event_timestamp": [ts(2)], **{k: [v] for k, v in request.items()}})
    with pytest.raises(fk.SchemaError) as training:
        typed_store.training_set(spine, ["trip_risk"]).to_arrow()
    assert str(online.value) == str(training.value)
    for part in ("on-demand view 'trip_risk'", f"input {name!r}", repr(bad), f"dtype {dtype}"):
        assert part in str(online.value)


def test_request_values_that_fit_are_cast_alike_on_both_paths(typed_store):
    request = {"passengers": 2, "trip_km": 3}  # an int for a Float64 input is fine on both paths
    online = typed_store.online_features([{"driver_id": 1}], ["trip_risk"], request=request, at=ts(2)).to_dict()
    spine = pl.DataFrame({"driver_id": [1], "event_timestamp": [ts(2)], "passengers": [2], "trip_km": [3]})
    offline = typed_store.training_set(spine, ["trip_risk"]).to_polars()
    assert online["risk"] == offline["risk"].to_list() == [0.5 * 3 + 2]


PANDAS_VIEW = """
import pandas as pd
import polars as pl
import pyarrow as pa
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource("data/trips.parquet")

@fk.feature_view(entity=driver, source=trips{schema})
def accepted(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[["driver_id", "event_timestamp", "accepted"]]
"""
# An int column with a null: pandas hands the function float64, zero rows gave int64.
WITH_NULL = [(1, ts(0), ts(0), 1, 2, 1.0), (2, ts(1), ts(1), None, 4, 3.0)]


def test_a_data_dependent_dtype_error_does_not_suggest_apply(make_repo, open_store):
    store = open_store(make_repo(PANDAS_VIEW.format(schema=""), data={"data/trips.parquet": trips_table(WITH_NULL)}))
    store.apply()
    with pytest.raises(fk.FeatureFunctionError) as caught:
        store.materialize(ts(0), ts(5))
    message = str(caught.value)
    assert "'accepted' is double, was int64" in message
    assert "schema={'accepted': pa.int64()}" in message
    assert "run `featurekit apply`" not in message


@pytest.mark.parametrize("declared", ["pl.Int64", "pa.int64()"])
def test_a_declared_schema_replaces_zero_row_inference(make_repo, open_store, declared):
    features = PANDAS_VIEW.format(schema=f', schema={{"accepted": {declared}}}')
    root = make_repo(features, data={"data/trips.parquet": trips_table(WITH_NULL)})
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(5))
    spine = pl.DataFrame({"driver_id": [1, 2], "event_timestamp": [ts(2), ts(2)]})
    frame = store.training_set(spine, ["accepted"]).to_polars()
    assert frame["accepted"].dtype == pl.Int64
    assert frame["accepted"].to_list() == [1, None]
    assert store.online_features({"driver_id": [1, 2]}, ["accepted"], at=ts(2)).to_dict()["accepted"] == [1, None]
    # The declaration is part of the version: another dtype is a new version, even though the
    # function is the same.
    (root / "features.py").write_text(PANDAS_VIEW.format(schema=', schema={"accepted": pl.Int32}'))
    assert [(c.kind, c.new_version) for c in open_store(root).apply().changes] == [("changed", 2)]


def test_a_declared_schema_that_cannot_be_used_is_a_definition_error(make_repo, open_store):
    features = PANDAS_VIEW.format(schema=', schema={"accepted": int, "event_timestamp": pl.Datetime}')
    root = make_repo(features, data={"data/trips.parquet": trips_table(WITH_NULL)})
    with pytest.raises(fk.DefinitionError) as caught:
        open_store(root).apply()
    assert "'accepted' <class 'int'>: not a polars dtype" in str(caught.value)
    assert "declares timestamp columns ['event_timestamp']" in str(caught.value)
