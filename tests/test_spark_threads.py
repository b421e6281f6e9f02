"""One FeatureStore on the Spark engine shared by several threads: training sets, reads and a
materialization at once, each result equal to the same call made alone (as tests/test_thread_safety.py
holds for DuckDB). The session is the test session's one (tests/engines.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pyarrow as pa
import pytest

from tests.conftest import trips_table, ts
from tests.test_spark_engine import open_with, rows, spine
from tests.test_thread_safety import FEATURES

pytestmark = pytest.mark.slow

FEATURE_SETS = [["driver_stats:conv_rate"], ["driver_stats:avg_trip_km", "driver_stats:conv_rate"]]


def spines() -> list[pa.Table]:
    whole = spine()
    return [whole, whole.slice(40, 120)]


def test_threads_sharing_a_spark_store_get_what_each_call_gets_alone(make_repo):
    root = make_repo(FEATURES, data={"data/trips.parquet": trips_table(rows())})
    with open_with(root, "spark") as store:
        store.apply()
        end = ts(0) + timedelta(days=10)
        store.materialize(ts(0), end)
        calls = [(s, f) for s in range(len(spines())) for f in range(len(FEATURE_SETS))]
        alone = {(s, f): store.training_set(spines()[s], FEATURE_SETS[f]).to_arrow() for s, f in calls}
        online_alone = store.online_features({"driver_id": [1, 3, 12]}, ["driver_stats"], at=end).to_dict()

        def train(call: tuple[int, int]) -> pa.Table:
            s, f = call
            return store.training_set(spines()[s], FEATURE_SETS[f]).to_arrow()

        def rematerialize(_: int) -> int:  # the same window again: trip_km's data stays the same
            return store.materialize(ts(0), end, views=["trip_km"])[0].rows

        with ThreadPoolExecutor(5) as pool:
            rebuilt = pool.submit(lambda: [rematerialize(i) for i in range(2)])
            trained = list(pool.map(train, calls))
            online = [pool.submit(store.online_features, {"driver_id": [1, 3, 12]}, ["driver_stats"], at=end)]
            assert rebuilt.result() == [len(rows())] * 2
        for (s, f), table in zip(calls, trained, strict=True):
            assert table.equals(alone[(s, f)]), (s, f)
        assert [o.result().to_dict() for o in online] == [online_alone]
        km = store.training_set(spine(), ["trip_km:km"]).to_arrow().column("km")
        assert km.equals(alone[(0, 1)].column("avg_trip_km"))
