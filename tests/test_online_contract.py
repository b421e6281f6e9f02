"""The contract every online store passes (add new stores to STORES)."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from featurekit.config import RedisOnlineConfig
from featurekit.online.base import NO_CREATED, OnlineRows, OnlineStore, encode_key
from featurekit.online.memory import MemoryOnlineStore
from featurekit.online.redis import RedisOnlineStore
from featurekit.online.sqlite import SqliteOnlineStore
from tests.redis_server import redis_prefix


def _redis(request: pytest.FixtureRequest, tmp: Path) -> OnlineStore:
    url = request.getfixturevalue("redis_server").url
    return RedisOnlineStore(RedisOnlineConfig(type="redis", url=url, key_prefix=redis_prefix()))


# Each maker gets the test's request (for fixtures such as the Redis server) and a temporary folder.
STORES: dict[str, Callable[[pytest.FixtureRequest, Path], OnlineStore]] = {
    "sqlite": lambda request, tmp: SqliteOnlineStore(tmp / "online.db"),
    "sqlite-no-mmap": lambda request, tmp: SqliteOnlineStore(tmp / "online.db", mmap_mb=0),
    "memory": lambda request, tmp: MemoryOnlineStore(),
    "redis": _redis,
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    made = STORES[request.param](request, tmp_path)
    made.create_table("t__v1", ["a", "b"])
    yield made
    made.close()


def rows(*items: tuple[object, int, int, object, object]) -> OnlineRows:
    return OnlineRows(
        keys=[i[0] for i in items],  # type: ignore[misc]
        event_us=[i[1] for i in items],
        created_us=[i[2] for i in items],
        columns={"a": [i[3] for i in items], "b": [i[4] for i in items]},
    )


def test_round_trip_and_missing_keys(store: OnlineStore) -> None:
    assert store.write("t__v1", rows((1, 10, NO_CREATED, 1.5, "x"), (2, 20, 5, None, "y"))) == 2
    found = store.read("t__v1", ["a", "b"], [1, 2, 3])
    assert found == {1: (10, NO_CREATED, 1.5, "x"), 2: (20, 5, None, "y")}
    assert store.read("t__v1", ["b"], [2]) == {2: (20, 5, "y")}


def test_older_rows_never_overwrite_newer(store: OnlineStore) -> None:
    store.write("t__v1", rows((1, 10, 3, 1.0, "new")))
    store.write("t__v1", rows((1, 9, 99, 2.0, "older event")))
    store.write("t__v1", rows((1, 10, 2, 3.0, "older created")))
    assert store.read("t__v1", ["b"], [1]) == {1: (10, 3, "new")}
    store.write("t__v1", rows((1, 10, 3, 4.0, "same age")))  # equal age: the later write wins
    store.write("t__v1", rows((1, 11, NO_CREATED, 5.0, "newer")))
    assert store.read("t__v1", ["a", "b"], [1]) == {1: (11, NO_CREATED, 5.0, "newer")}


def test_newest_wins_within_one_write_whatever_the_order(store: OnlineStore) -> None:
    store.write("t__v1", rows((7, 30, 1, 3.0, "c"), (7, 10, 1, 1.0, "a"), (7, 20, 1, 2.0, "b")))
    assert store.read("t__v1", ["b"], [7]) == {7: (30, 1, "c")}


def test_composite_keys_do_not_collide(store: OnlineStore) -> None:
    one, two = encode_key([1, "23"]), encode_key([12, "3"])
    assert one != two
    store.write("t__v1", rows((one, 1, 1, 1.0, "one"), (two, 1, 1, 2.0, "two")))
    assert store.read("t__v1", ["b"], [one, two]) == {one: (1, 1, "one"), two: (1, 1, "two")}
    assert store.read("t__v1", ["b"], [encode_key([1, "2"])]) == {}


def test_int_and_string_keys_are_distinct(store: OnlineStore) -> None:
    store.write("t__v1", rows((1, 1, 1, 1.0, "int"), ("1", 1, 1, 2.0, "str")))
    assert store.read("t__v1", ["b"], [1]) == {1: (1, 1, "int")}
    assert store.read("t__v1", ["b"], ["1"]) == {"1": (1, 1, "str")}


def test_tables_lists_each_table_with_its_features(store: OnlineStore) -> None:
    store.create_table("a__v1", ["x", "y"])
    store.create_table("b__v2", ["z"])
    assert store.tables() == {"a__v1": ["x", "y"], "b__v2": ["z"], "t__v1": ["a", "b"]}
    store.drop_table("a__v1")
    assert store.tables() == {"b__v2": ["z"], "t__v1": ["a", "b"]}


def test_unknown_table_reads_empty_and_drop(store: OnlineStore) -> None:
    assert store.read("nope__v1", ["a"], [1]) == {}
    store.write("t__v1", rows((1, 1, 1, 1.0, "x")))
    store.drop_table("t__v1")
    assert store.read("t__v1", ["a"], [1]) == {}


def test_many_keys_in_one_read(store: OnlineStore) -> None:
    store.write("t__v1", rows(*[(k, k, 0, float(k), str(k)) for k in range(2500)]))
    found = store.read("t__v1", ["a"], list(range(-5, 2505)))
    assert len(found) == 2500
    assert all(found[k] == (k, 0, float(k)) for k in range(2500))


def test_infinities_survive(store: OnlineStore) -> None:
    store.write("t__v1", rows((1, 1, 1, math.inf, "x"), (2, 1, 1, -math.inf, "y")))
    assert store.read("t__v1", ["a"], [1, 2]) == {1: (1, 1, math.inf), 2: (1, 1, -math.inf)}


def test_concurrent_writers_lose_no_rows(store: OnlineStore) -> None:
    # Threads share the one store object, as the threads of one FeatureStore do. A tiny switch
    # interval makes the interpreter interleave them often, so a race shows up in every run.
    writers, batches, per_batch = 4, 10, 500
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            start.wait()
            for batch in range(batches):
                first = (writer * batches + batch) * per_batch
                store.write("t__v1", rows(*[(k, 1, 1, float(k), str(k)) for k in range(first, first + per_batch)]))
        except BaseException as exc:  # noqa: BLE001 -- reported by the assertion below
            failures.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
    keys = list(range(writers * batches * per_batch))
    found = store.read("t__v1", ["a", "b"], keys)
    assert len(found) == len(keys)
    assert all(found[k] == (1, 1, float(k), str(k)) for k in keys)
