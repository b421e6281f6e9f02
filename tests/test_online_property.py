"""Property: after materialize, every online value equals the training-set value at the lookup time."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featurekit as fk
from tests.conftest import BASIC_FEATURES, RepoFactory, trips_table, ts

FEATURES = BASIC_FEATURES.replace("ttl=timedelta(days=7)", "ttl=timedelta(hours=6)")

event = st.tuples(
    st.integers(min_value=1, max_value=4),  # driver
    st.integers(min_value=0, max_value=16),  # event hour
    st.one_of(st.none(), st.integers(min_value=0, max_value=3)),  # created: hours after the event, or null
    st.integers(min_value=0, max_value=5),  # accepted
    st.integers(min_value=1, max_value=5),  # offered
)


@pytest.mark.slow
@pytest.mark.parametrize("online", ["sqlite", "memory"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(event, min_size=1, max_size=20),
    split=st.integers(min_value=1, max_value=16),
    lookups=st.lists(st.integers(min_value=0, max_value=8), min_size=1, max_size=3),
)
def test_online_equals_training_at_lookup_time(tmp_path_factory, online, events, split, lookups):
    rows = [(d, ts(0, h), None if c is None else ts(0, h + c), a, o, float(a * 10 + o)) for d, h, c, a, o in events]
    config = "online:\n  type: memory\n" if online == "memory" else None
    root = RepoFactory(tmp_path_factory.mktemp("online"))(FEATURES, {"data/trips.parquet": trips_table(rows)}, config)
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        store.materialize(ts(0), ts(0, split))  # two windows, the second incremental
        store.materialize_incremental(ts(0, 17))
        drivers = [1, 2, 3, 4, 5]
        for hours in lookups:
            at = ts(0, 16) + timedelta(hours=hours)  # at or after all data: the online store's point of view
            served = store.online_features({"driver_id": drivers}, ["driver_stats"], at=at).to_dict()
            spine = pl.DataFrame({"driver_id": drivers, "event_timestamp": [at] * len(drivers)})
            trained = store.training_set(spine, ["driver_stats"]).to_polars()
            assert served["conv_rate"] == trained["conv_rate"].to_list()
            assert served["avg_trip_km"] == trained["avg_trip_km"].to_list()
