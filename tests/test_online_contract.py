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


def test_read_many_answers_each_table_in_order(store: OnlineStore) -> None:
    store.create_table("u__v1", ["c"])
    store.write("t__v1", rows((1, 10, 1, 1.5, "x"), (2, 20, 2, 2.5, "y")))
    store.write("u__v1", OnlineRows(keys=[1, "1"], event_us=[5, 6], created_us=[0, 0], columns={"c": [7, 8]}))
    found = store.read_many(
        [
            ("t__v1", ["b", "a"], [2, 1, 3]),
            ("u__v1", ["c"], [1, "1", 2]),
            ("nope__v1", ["a"], [1]),
            ("t__v1", [], [1]),
        ]
    )
    assert found == [
        {2: (20, 2, "y", 2.5), 1: (10, 1, "x", 1.5)},
        {1: (5, 0, 7), "1": (6, 0, 8)},
        {},
        {1: (10, 1)},
    ]
    assert store.read_many([]) == []
    assert store.read_many([("t__v1", ["a"], [])]) == [{}]


# Every kind of value :mod:`featurekit.online.codecs` hands to a store, at its edges.
VALUES = [
    0,
    -1,
    2**63 - 1,
    -(2**63),
    0.0,
    -0.0,
    1e-310,  # subnormal
    1.7976931348623157e308,
    0.1 + 0.2,
    "NaN",  # the codecs' NaN marker
    "",
    "1",
    "\u00e9\u4e2d\U0001f600 \x00 tab\tnew\nline",
    b"",
    b"\x00\xff" * 40,
    None,
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_every_value_round_trips_exactly(store: OnlineStore, value: object) -> None:
    store.write("t__v1", rows((1, 1, 1, value, None), (2, 1, 1, None, value), (3, 1, 1, value, value)))
    found = store.read("t__v1", ["a", "b"], [1, 2, 3])
    assert found == {1: (1, 1, value, None), 2: (1, 1, None, value), 3: (1, 1, value, value)}
    for row in found.values():
        for got in row[2:]:
            if got is not None or value is None:
                assert type(got) is type(value)
    if isinstance(value, float):
        assert math.copysign(1.0, found[1][2]) == math.copysign(1.0, value)  # -0.0 stays -0.0


def test_mixed_columns_and_extreme_times_round_trip(store: OnlineStore) -> None:
    keys = list(range(len(VALUES)))
    a = VALUES
    b = list(reversed(VALUES))
    events = [(-1) ** k * (2**62 + k) for k in keys]
    store.write(
        "t__v1", OnlineRows(keys=keys, event_us=events, created_us=[NO_CREATED] * len(keys), columns={"a": a, "b": b})
    )
    found = store.read("t__v1", ["a", "b"], keys)
    assert found == {k: (events[k], NO_CREATED, a[k], b[k]) for k in keys}


def test_age_compares_exactly_beyond_double_precision(store: OnlineStore) -> None:
    big = 2**60  # a double cannot tell big from big + 1
    store.write("t__v1", rows((1, big + 1, 0, 1.0, "newer")))
    store.write("t__v1", rows((1, big, 0, 2.0, "older event")))
    store.write("t__v1", rows((2, 5, big + 1, 1.0, "newer")))
    store.write("t__v1", rows((2, 5, big, 2.0, "older created")))
    store.write("t__v1", rows((3, -5, 0, 1.0, "negative")))
    store.write("t__v1", rows((3, -6, 0, 2.0, "more negative")))
    store.write("t__v1", rows((4, 0, NO_CREATED + 1, 1.0, "created")))
    store.write("t__v1", rows((4, 0, NO_CREATED, 2.0, "no created")))
    found = store.read("t__v1", ["b"], [1, 2, 3, 4])
    assert {k: v[2] for k, v in found.items()} == {1: "newer", 2: "newer", 3: "negative", 4: "created"}


def test_write_counts_the_rows_it_kept(store: OnlineStore) -> None:
    assert store.write("t__v1", rows()) == 0
    assert store.write("t__v1", rows((1, 10, 0, 1.0, "a"), (2, 10, 0, 1.0, "b"))) == 2
    assert store.write("t__v1", rows((1, 9, 0, 1.0, "old"), (2, 11, 0, 1.0, "new"))) == 1


def test_create_table_keeps_an_existing_table(store: OnlineStore) -> None:
    store.write("t__v1", rows((1, 1, 1, 1.0, "x")))
    store.create_table("t__v1", ["a", "b"])
    assert store.read("t__v1", ["b"], [1]) == {1: (1, 1, "x")}
    assert store.tables() == {"t__v1": ["a", "b"]}


def test_tables_keep_their_rows_apart(store: OnlineStore) -> None:
    store.create_table("t__v2", ["a", "b"])
    store.write("t__v1", rows((1, 1, 1, 1.0, "v1")))
    store.write("t__v2", rows((1, 2, 2, 2.0, "v2")))
    assert store.read("t__v1", ["b"], [1]) == {1: (1, 1, "v1")}
    assert store.read("t__v2", ["b"], [1]) == {1: (2, 2, "v2")}
    store.drop_table("t__v1")
    store.drop_table("t__v1")  # dropping twice is fine
    assert store.read("t__v2", ["b"], [1]) == {1: (2, 2, "v2")}
    store.create_table("t__v1", ["a", "b"])  # a table created again starts empty
    assert store.read("t__v1", ["b"], [1]) == {}


def test_a_big_write_is_all_there(store: OnlineStore) -> None:
    count = 120_000  # more than one pipelined round trip of the Redis store
    keys = list(range(count))
    store.write(
        "t__v1", OnlineRows(keys, [7] * count, [0] * count, {"a": [float(k) for k in keys], "b": [None] * count})
    )
    found = store.read("t__v1", ["a"], [*keys, -1])  # a big read too (the Redis store splits its MGET)
    assert found == {k: (7, 0, float(k)) for k in keys}
    store.drop_table("t__v1")
    assert store.read("t__v1", ["a"], keys[:10]) == {}


def test_joint_writes_land_in_every_table_newest_only(store: OnlineStore) -> None:
    store.create_table("t__v1_tail", ["a", "b"])
    many = range(1_200)  # Redis: several script calls of a few hundred keys each
    base = OnlineRows(
        list(many), [10] * 1_200, [NO_CREATED] * 1_200, {"a": [float(k) for k in many], "b": ["x"] * 1_200}
    )
    tail = OnlineRows(
        list(many), [10] * 1_200, [NO_CREATED] * 1_200, {"a": [-float(k) for k in many], "b": ["y"] * 1_200}
    )
    assert store.write_joint([("t__v1", base), ("t__v1_tail", tail)]) == 2_400
    assert store.read("t__v1", ["a"], [7, 1_199]) == {7: (10, NO_CREATED, 7.0), 1_199: (10, NO_CREATED, 1_199.0)}
    assert store.read("t__v1_tail", ["a", "b"], [7]) == {7: (10, NO_CREATED, -7.0, "y")}
    older = [("t__v1", rows((7, 9, NO_CREATED, 0.0, "old"))), ("t__v1_tail", rows((7, 9, NO_CREATED, 0.0, "old")))]
    assert store.write_joint(older) == 0
    assert store.read("t__v1_tail", ["b"], [7]) == {7: (10, NO_CREATED, "y")}
    store.drop_table("t__v1_tail")
    assert store.read("t__v1_tail", ["a"], [7]) == {}
