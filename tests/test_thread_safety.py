"""One FeatureStore shared by many threads: lookups, pushes, training sets and materializations at once.

The hardening issue's finding: six serving threads during 15 pushes raised 1,247 raw sqlite3
errors, and 93 of 120 concurrent pushes failed on a shared DuckDB connection. Here 10 threads
share one store for a bounded time; every call must succeed, and no write may be lost: every
pushed row is committed offline exactly once, and each entity's online value is its newest push.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

import featurekit as fk
from tests.conftest import BASIC_FEATURES, trips_table, ts

FEATURES = (
    BASIC_FEATURES
    + """

@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7))
def trip_km(trips: pl.DataFrame) -> pl.DataFrame:
    return trips.select("driver_id", "event_timestamp", "created", km=pl.col("distance_km"))
"""
)

DRIVERS = 50
SECONDS = 8.0


def raw_rows(driver: int, moment: datetime, km: float) -> pa.Table:
    return trips_table([(driver, moment, moment, 1, 2, km)])


@pytest.mark.slow
def test_one_store_shared_by_ten_threads_loses_nothing_and_raises_nothing(make_repo):
    rows = [(d, ts(0, h), ts(0, h), 1, 2, float(h)) for d in range(DRIVERS) for h in range(3)]
    root = make_repo(FEATURES, data={"data/trips.parquet": trips_table(rows)})
    store = fk.FeatureStore(root, progress=False)
    store.apply()
    store.materialize(ts(0), ts(1))
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    deadline = time.monotonic() + SECONDS
    errors: list[str] = []
    pushed: dict[int, list[float]] = {}  # pusher -> the km values it pushed, in order
    lock = threading.Lock()
    spine = pa.table(
        {
            "driver_id": list(range(DRIVERS)),
            "event_timestamp": pa.array([ts(2)] * DRIVERS, pa.timestamp("us", tz="UTC")),
        }
    )

    def guarded(work):
        def run(index: int) -> int:
            calls = 0
            while time.monotonic() < deadline:
                try:
                    work(index, calls)
                except Exception as exc:  # noqa: BLE001 -- every failure is counted
                    with lock:
                        errors.append(f"{work.__name__}: {exc!r}")
                calls += 1
            return calls

        return run

    def lookup(index: int, call: int) -> None:
        got = store.online_features({"driver_id": [index % DRIVERS, 7]}, ["driver_stats", "trip_km:km"]).to_dict()
        assert len(got["km"]) == 2

    def push(index: int, call: int) -> None:
        # Each pusher owns one driver (no two pushers race on one key): its value must be its last push.
        driver = 1000 + index
        km = float(call)
        moment = base + timedelta(milliseconds=call)
        store.push("driver_stats", raw_rows(driver, moment, km), to="online_and_offline" if call % 2 else "online")
        with lock:
            pushed.setdefault(index, []).append(km)

    def train(index: int, call: int) -> None:
        assert store.training_set(spine, ["driver_stats:avg_trip_km", "trip_km:km"]).to_arrow().num_rows == DRIVERS

    def materialize(index: int, call: int) -> None:
        store.materialize(ts(0), ts(1 + call % 2), views=["trip_km"])

    def verify_and_list(index: int, call: int) -> None:
        assert store.list_views()
        store.history("driver_stats")

    workers = [guarded(lookup)] * 3 + [guarded(push)] * 3 + [guarded(train)] * 2
    workers += [guarded(materialize), guarded(verify_and_list)]
    with ThreadPoolExecutor(len(workers)) as pool:
        calls = list(pool.map(lambda pair: pair[1](pair[0]), enumerate(workers)))
    assert errors == [], f"{len(errors)} errors, first: {errors[:5]}"
    assert all(c > 0 for c in calls), calls
    online = store.online_features({"driver_id": [1000 + i for i in sorted(pushed)]}, ["driver_stats:avg_trip_km"])
    assert online.to_dict()["avg_trip_km"] == [pushed[i][-1] for i in sorted(pushed)]  # no lost online write
    offline_pushes = sum(len([k for n, k in enumerate(values) if n % 2]) for values in pushed.values())
    version = store.registry.active()["driver_stats"].version
    head = store.registry.last_materialization(version.id)
    assert head is not None
    committed = store.training_set(
        pa.table(
            {
                "driver_id": [1000 + i for i in sorted(pushed)],
                "event_timestamp": pa.array([datetime.now(UTC)] * len(pushed), pa.timestamp("us", tz="UTC")),
            }
        ),
        ["driver_stats:avg_trip_km"],
    ).to_arrow()
    assert committed.num_rows == len(pushed)
    pushes = [m for m in store.registry.materializations(version.id) if m.mode == "push"]
    assert sum(m.rows for m in pushes) == offline_pushes  # every offline push committed exactly once
    store.close()


def test_pushes_and_materializations_keep_the_lookup_recipes(make_repo, open_store):
    rows = [(d, ts(0, 1), ts(0, 1), 1, 2, 1.0) for d in range(3)]
    store = open_store(
        make_repo(FEATURES, data={"data/trips.parquet": trips_table(rows)}, config="online: {refresh_s: 0}\n")
    )
    store.apply()
    store.materialize(ts(0), ts(1))
    reader = store._serving()
    first = reader.recipe(["driver_stats"])
    store.push("driver_stats", raw_rows(1, ts(0, 2), 5.0), to="online_and_offline")  # a registry commit
    assert reader.recipe(["driver_stats"]) is first
