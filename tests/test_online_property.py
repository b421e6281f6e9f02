"""Property: after materialize, every online value equals the training-set value at the lookup time."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featurekit as fk
from tests.conftest import BASIC_FEATURES, RepoFactory, trips_table, ts
from tests.redis_server import ONLINE_KINDS, online_yaml

FEATURES = BASIC_FEATURES.replace("ttl=timedelta(days=7)", "ttl=timedelta(hours=6)")

event = st.tuples(
    st.integers(min_value=1, max_value=4),  # driver
    st.integers(min_value=0, max_value=16),  # event hour
    st.one_of(st.none(), st.integers(min_value=0, max_value=3)),  # created: hours after the event, or null
    st.integers(min_value=0, max_value=5),  # accepted
    st.integers(min_value=1, max_value=5),  # offered
)


@pytest.mark.slow
@pytest.mark.parametrize("online", ONLINE_KINDS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(event, min_size=1, max_size=20),
    split=st.integers(min_value=1, max_value=16),
    lookups=st.lists(st.integers(min_value=0, max_value=8), min_size=1, max_size=3),
)
def test_online_equals_training_at_lookup_time(tmp_path_factory, request, online, events, split, lookups):
    rows = [(d, ts(0, h), None if c is None else ts(0, h + c), a, o, float(a * 10 + o)) for d, h, c, a, o in events]
    config = online_yaml(online, request)  # Redis: a new key prefix per example
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


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(event, min_size=1, max_size=20),
    split=st.integers(min_value=1, max_value=16),
    order=st.sampled_from(["forward", "backfill", "again", "late_kept_offline"]),
)
def test_online_equals_training_after_backfills_and_many_batches(tmp_path_factory, events, split, order):
    # Several batches per window (batch_rows 3), and windows materialized out of order: the online
    # rows of a window come from its output only while nothing committed lies after it.
    rows = [(d, ts(0, h), None if c is None else ts(0, h + c), a, o, float(a * 10 + o)) for d, h, c, a, o in events]
    config = "offline:\n  batch_rows: 3\n"
    root = RepoFactory(tmp_path_factory.mktemp("backfill"))(FEATURES, {"data/trips.parquet": trips_table(rows)}, config)
    early, late = (ts(0), ts(0, split)), (ts(0, split), ts(0, 17))
    windows = {
        "forward": [(early, True), (late, True)],
        "backfill": [(late, True), (early, True)],
        "again": [(early, True), (late, True), (early, True), (late, True)],
        # The late rows never reached the online store: the early window's load must find them.
        "late_kept_offline": [(late, False), (early, True)],
    }[order]
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        for (start, end), online in windows:
            store.materialize(start, end, online=online)
        drivers = [1, 2, 3, 4, 5]
        at = ts(0, 17)
        served = store.online_features({"driver_id": drivers}, ["driver_stats"], at=at).to_dict()
        spine = pl.DataFrame({"driver_id": drivers, "event_timestamp": [at] * len(drivers)})
        trained = store.training_set(spine, ["driver_stats"]).to_polars()
        loaded = set(drivers)
        if order == "late_kept_offline":  # only drivers the early window touched were loaded
            loaded = {d for d, h, _, _, _ in events if h < split}
        for name in ("conv_rate", "avg_trip_km"):
            expected = [v if d in loaded else None for d, v in zip(drivers, trained[name].to_list(), strict=True)]
            assert served[name] == expected
