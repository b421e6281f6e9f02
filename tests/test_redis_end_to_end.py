"""A FeatureStore with ``online: {type: redis}`` answers exactly as one with SQLite, through failures."""

from __future__ import annotations

import warnings

import pyarrow as pa
import pytest
import redis

import featurekit as fk
from featurekit.offline.materialize import OnlineLoadWarning
from tests.conftest import BASIC_FEATURES, trips_table, ts
from tests.redis_server import RedisServer, redis_config, redis_prefix

ROWS = [
    (1, ts(0), ts(0), 1, 2, 1.0),
    (1, ts(2), ts(2), 2, 4, 2.0),
    (1, ts(2), ts(2, 1), 3, 4, 2.5),  # the same event time, created later: this one wins
    (2, ts(1), ts(1), 3, 4, 3.0),
    (3, ts(3), ts(3), 0, 0, 4.0),  # 0 / 0: NaN
    (4, ts(5), ts(5), 1, 1, 5.0),
]
DRIVERS = {"driver_id": [1, 2, 3, 4, 5]}


def answers(store: fk.FeatureStore, at: float = 6) -> dict[str, list[object]]:
    return store.online_features(DRIVERS, ["driver_stats"], at=ts(at)).to_dict()


def same(left: dict[str, list[object]], right: dict[str, list[object]]) -> bool:
    """Equal answers, where NaN equals NaN."""
    return left.keys() == right.keys() and all(str(left[k]) == str(right[k]) for k in left)


@pytest.fixture
def pair(make_repo, open_store, redis_server: RedisServer):
    """The same repo twice: SQLite online (the default) and Redis online."""
    data = {"data/trips.parquet": trips_table(ROWS)}
    sqlite = open_store(make_repo(BASIC_FEATURES, data=data))
    on_redis = open_store(make_repo(BASIC_FEATURES, data=data, config=redis_config(redis_server.url)))
    for store in (sqlite, on_redis):
        store.apply()
    return sqlite, on_redis


def test_materialize_lookups_and_push_equal_sqlites(pair) -> None:
    sqlite, on_redis = pair
    for store in pair:
        store.materialize(ts(0), ts(4))
    assert same(answers(on_redis), answers(sqlite))
    assert answers(on_redis)["avg_trip_km"][:2] == [2.5, 3.0]
    for store in pair:
        store.materialize(ts(4), ts(6))  # the second window: driver 4 appears
        pushed = trips_table([(2, ts(5), ts(5), 4, 4, 9.0), (1, ts(1), ts(1), 1, 1, 7.0)])
        store.push("driver_stats", pushed, to="online_and_offline")
    redis_answers = answers(on_redis)
    assert same(redis_answers, answers(sqlite))
    assert redis_answers["avg_trip_km"] == [2.5, 9.0, 4.0, 5.0, None]  # the late push for driver 1 lost
    assert on_redis.online_features(DRIVERS, ["driver_stats"], at=ts(6)).status("driver_stats") == (
        sqlite.online_features(DRIVERS, ["driver_stats"], at=ts(6)).status("driver_stats")
    )
    assert on_redis.verify(["driver_stats"], at=ts(6)).ok
    assert on_redis.check_integrity().ok


def test_a_new_version_never_serves_old_values_and_gc_drops_the_old_keys(pair, redis_server: RedisServer) -> None:
    _, on_redis = pair
    on_redis.materialize(ts(0), ts(6))
    assert answers(on_redis)["avg_trip_km"][0] == 2.5
    changed = BASIC_FEATURES.replace('avg_trip_km=pl.col("distance_km")', 'avg_trip_km=pl.col("distance_km") * 2')
    (on_redis.root / "features.py").write_text(changed)
    on_redis = fk.FeatureStore(on_redis.root, progress=False)
    try:
        on_redis.apply()
        assert answers(on_redis)["avg_trip_km"] == [None] * 5  # v2 is not materialized: nothing of v1's
        on_redis.materialize(ts(0), ts(6))
        assert answers(on_redis)["avg_trip_km"][0] == 5.0
        prefix = on_redis.config.online.key_prefix  # type: ignore[union-attr]
        raw = redis.Redis.from_url(redis_server.url)
        old = f"{prefix}r:driver_stats__v1:*"
        assert len(list(raw.scan_iter(match=old))) == 4
        report = on_redis.gc(keep_days=0, keep_versions=1)
        assert report.online_tables == ["driver_stats__v1"]
        assert list(raw.scan_iter(match=old)) == []
        assert list(raw.scan_iter(match=f"{prefix}[is]:driver_stats__v1")) == []
        assert len(list(raw.scan_iter(match=f"{prefix}r:driver_stats__v2:*"))) == 4
        assert set(on_redis.online.tables()) == {"driver_stats__v2"}
        assert answers(on_redis)["avg_trip_km"][0] == 5.0
        raw.close()
    finally:
        on_redis.close()


def test_a_failed_online_load_resumes_on_the_next_run(make_repo, own_redis_server: RedisServer) -> None:
    data = {"data/trips.parquet": trips_table(ROWS)}
    config = redis_config(own_redis_server.url, redis_prefix()) + "  socket_timeout_s: 0.2\n"
    with fk.FeatureStore(make_repo(BASIC_FEATURES, data=data), progress=False) as sqlite:
        sqlite.apply()
        sqlite.materialize(ts(0), ts(4))
        sqlite.materialize(ts(4), ts(6))
        expected = answers(sqlite)
    with fk.FeatureStore(make_repo(BASIC_FEATURES, data=data, config=config), progress=False) as store:
        store.apply()
        own_redis_server.stop()  # Redis goes away before the online load
        with pytest.raises(fk.StorageError, match=r"was committed offline .*redis://127\.0\.0\.1:\d+/0 did not answer"):
            store.materialize(ts(0), ts(4))
        assert store.registry.online_pending(1)  # committed offline, owed to the online store
        with pytest.raises(fk.StorageError, match="did not answer"):
            answers(store)
        with pytest.warns(OnlineLoadWarning, match="stay pending"), pytest.raises(fk.StorageError):
            store.materialize(ts(4), ts(6))  # still down: this window commits offline too
        own_redis_server.start()  # back, empty: the same store object, no reopening
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            store.materialize_incremental(ts(6))  # nothing new to materialize: loads what is owed
        assert store.registry.online_pending(1) == []
        assert same(answers(store), expected)
        assert store.training_set(
            pa.table({"driver_id": [1], "event_timestamp": pa.array([ts(6)], pa.timestamp("us", tz="UTC"))}),
            ["driver_stats:avg_trip_km"],
        ).to_arrow().column("avg_trip_km").to_pylist() == [2.5]
