"""The skew check never reports skew that is not there, and says when it compared nothing."""

from __future__ import annotations

import pytest

from featurekit.skew import NothingComparedWarning
from tests.conftest import trips_table, ts

ROWS = [(1, ts(0), ts(0), 1, 2, 1.0), (2, ts(1), ts(1), 1, 4, 2.0)]


@pytest.fixture
def store(make_repo, open_store):
    store = open_store(make_repo(data={"data/trips.parquet": trips_table(ROWS)}))
    store.apply()
    store.materialize(ts(0), ts(2))
    return store


def test_a_check_that_compared_only_nulls_is_not_ok_and_warns(store):
    with pytest.warns(NothingComparedWarning, match="compared nothing"):
        report = store.verify(["driver_stats"], entities={"driver_id": [77, 78]}, at=ts(3))
    assert report.compared == 0
    assert not report.ok
    assert "nothing was compared" in str(report)


def test_values_compared_are_counted_and_one_mismatch_reads_as_one(store):
    report = store.verify(["driver_stats"], at=ts(3))
    assert report.ok
    assert report.compared == 4  # 2 entities x 2 features
    assert "no skew in 4 values" in str(report)
    store.push("driver_stats", trips_table([(1, ts(2, 1), ts(2, 1), 1, 1, 9.0)]))  # online only: skew on purpose
    skewed = store.verify(["driver_stats:avg_trip_km"], entities={"driver_id": [1]}, at=ts(3))
    assert ": 1 mismatch\n" in str(skewed)


def test_a_lookup_says_per_entity_whether_its_row_was_found_unknown_or_expired(store):
    got = store.online_features({"driver_id": [1, 2, 77]}, ["driver_stats"], at=ts(7, 12))
    assert got.status("driver_stats") == ["expired", "found", "unknown"]  # driver 1's row is from day 0
    assert got.expired_at("driver_stats@v1") == [ts(7), ts(8), None]  # event time + the 7-day TTL
    assert got.to_dict()["avg_trip_km"] == [None, 2.0, None]
