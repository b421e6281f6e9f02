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
