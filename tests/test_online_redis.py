"""The Redis online store's own promises, against a real redis-server (the contract suite has the rest).

Layout and round trips are checked on the server itself: its key names, and its command
statistics (``INFO commandstats``), which count what the store really sent.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import featurekit as fk
from featurekit.config import RedisOnlineConfig, load_config
from featurekit.online.base import OnlineRows, encode_key
from featurekit.online.redis import RedisOnlineStore, public_url
from featurekit.online.redis_rows import encode_rows
from tests.redis_server import RedisServer, redis_prefix


def make_store(url: str, prefix: str | None = None, **settings: Any) -> RedisOnlineStore:
    return RedisOnlineStore(RedisOnlineConfig(type="redis", url=url, key_prefix=prefix or redis_prefix(), **settings))


def indexed(raw: redis.Redis, prefix: str, table: str) -> set[bytes]:
    """The distinct keys of a table's index: its set (script writes) and its list (first loads)."""
    return raw.smembers(f"{prefix}i:{table}") | set(raw.lrange(f"{prefix}l:{table}", 0, -1))


def rows(keys: list[Any], event: int = 1, value: float = 1.0) -> OnlineRows:
    count = len(keys)
    return OnlineRows(keys, [event] * count, [0] * count, {"a": [value] * count, "b": ["x"] * count})


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def commands(raw: redis.Redis) -> dict[str, int]:
    """How many times the server ran each command since the last ``CONFIG RESETSTAT``."""
    stats: dict[str, Any] = raw.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


def keys_of(raw: redis.Redis, prefix: str) -> set[bytes]:
    return set(raw.scan_iter(match=f"{prefix}*", count=1000))


def test_keys_are_canonical_never_hashed(redis_server: RedisServer, raw: redis.Redis) -> None:
    prefix = redis_prefix()
    store = make_store(redis_server.url, prefix)
    store.create_table("t__v1", ["a", "b"])
    composite = encode_key([1, "23"])
    store.write("t__v1", rows([1, "1", composite, encode_key([12, "3"]), -(2**63)]))
    row_keys = {k for k in keys_of(raw, prefix) if k.startswith(f"{prefix}r:".encode())}
    assert row_keys == {
        f"{prefix}r:t__v1:{suffix}".encode() for suffix in ("i1", "s1", 's[1,"23"]', 's[12,"3"]', f"i{-(2**63)}")
    }
    assert indexed(raw, prefix, "t__v1") == {
        b"i1",
        b"s1",
        b's[1,"23"]',
        b's[12,"3"]',
        f"i{-(2**63)}".encode(),
    }
    assert raw.hgetall(f"{prefix}tables") == {b"t__v1": b'["a", "b"]'}
    assert store.read("t__v1", ["b"], [True]) == {True: (1, 0, "x")}  # a boolean key is the integer it equals
    store.close()


def test_drop_table_deletes_by_the_index_only_that_tables_keys(redis_server: RedisServer, raw: redis.Redis) -> None:
    prefix = redis_prefix()
    store = make_store(redis_server.url, prefix)
    neighbour = make_store(redis_server.url, prefix + "other:")
    for name in ("t__v1", "t__v2"):
        store.create_table(name, ["a", "b"])
    neighbour.create_table("t__v1", ["a", "b"])
    store.write("t__v1", rows(list(range(2500))))
    store.write("t__v2", rows(list(range(10))))
    neighbour.write("t__v1", rows(list(range(10))))
    before = keys_of(raw, prefix)
    store.drop_table("nothing__v1")  # loads the script, so that the statistics count only the drop
    raw.config_resetstat()
    store.drop_table("t__v1")
    ran = commands(raw)
    assert "scan" not in ran
    assert "keys" not in ran
    assert ran["evalsha"] == 50  # one pipelined round trip of batch pops
    assert ran["unlink"] == 3  # 1000 + 1000 + 500 keys; the rest of the batch found the index empty
    table_keys = (f"{prefix}r:t__v1:".encode(), f"{prefix}i:t__v1".encode(), f"{prefix}l:t__v1".encode())
    gone = {k for k in before if k.startswith(table_keys)}
    gone.add(f"{prefix}s:t__v1".encode())
    assert len(gone) == 2502
    assert keys_of(raw, prefix) == before - gone  # t__v2 and the other prefix's keys are all still there
    assert store.tables() == {"t__v2": ["a", "b"]}
    assert neighbour.read("t__v1", ["a"], [3]) == {3: (1, 0, 1.0)}
    store.close()
    neighbour.close()


def test_drop_table_empties_both_parts_of_the_index_over_several_round_trips(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    prefix = redis_prefix()
    store = make_store(redis_server.url, prefix)
    store.create_table("t__v1", ["a", "b"])
    store.write("t__v1", rows(list(range(60_500))))  # a first load: the index's list, over a round trip of pops
    store.write("t__v1", rows(list(range(60_000, 61_200)), event=2))  # new keys by the script: the set
    assert raw.scard(f"{prefix}i:t__v1") == 700
    assert raw.llen(f"{prefix}l:t__v1") == 60_500
    store.drop_table("t__v1")
    assert keys_of(raw, prefix) == set()  # rows, both index parts, the feature list and the table list
    assert store.read("t__v1", ["a"], [1, 60_700]) == {}
    store.close()


def test_a_lookup_over_several_tables_is_one_command(redis_server: RedisServer, raw: redis.Redis) -> None:
    store = make_store(redis_server.url)
    for name in ("a__v1", "b__v1", "c__v3"):
        store.create_table(name, ["a", "b"])
        store.write(name, rows(list(range(100))))
    raw.config_resetstat()
    found = store.read_many([(name, ["a"], list(range(50, 150))) for name in ("a__v1", "b__v1", "c__v3")])
    assert [len(f) for f in found] == [50, 50, 50]
    ran = commands(raw)
    ran.pop("config|resetstat", None)
    ran.pop("info", None)
    assert ran == {"mget": 1}
    raw.config_resetstat()
    found = store.read_many([("a__v1", ["a"], list(range(12_000))), ("b__v1", ["b"], list(range(12_000)))])
    assert [len(f) for f in found] == [100, 100]
    assert commands(raw)["mget"] == 3  # 24,002 keys: three MGETs of at most 10,000, pipelined
    store.close()


def test_a_write_is_a_few_script_calls_in_one_round_trip(redis_server: RedisServer, raw: redis.Redis) -> None:
    store = make_store(redis_server.url)
    store.create_table("t__v1", ["a", "b"])
    raw.config_resetstat()
    assert store.write("t__v1", rows(list(range(5000)))) == 5000
    ran = commands(raw)
    # An empty table: per 1,000 rows one RPUSH to the index's list and one MSETNX, no script.
    assert (ran["rpush"], ran["msetnx"], ran["get"], ran["scard"], ran["llen"]) == (5, 5, 1, 1, 1)
    assert "sadd" not in ran
    assert "evalsha" not in ran
    raw.config_resetstat()
    assert store.write("t__v1", rows(list(range(2500, 7500)), event=2)) == 5000  # loads the script
    assert "msetnx" not in commands(raw)
    raw.config_resetstat()
    assert store.write("t__v1", rows(list(range(2500, 7500)), event=3)) == 5000
    ran = commands(raw)
    assert ran["evalsha"] == 5  # rows exist: the newest-only script, 1,000 rows a call
    assert ran["get"] == 1  # the table's feature list, once
    assert "msetnx" not in ran
    assert "hset" not in ran
    assert "scan" not in ran
    store.close()


def test_a_first_load_that_finds_rows_written_meanwhile_keeps_the_newest(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    # What a push racing a first load leaves: the load saw an empty table, but when its MSETNX
    # runs some keys exist, newer or older. (The store's own write, told the table is empty.)
    store = make_store(redis_server.url)
    store.create_table("t__v1", ["a", "b"])
    store.write("t__v1", rows([10, 1500], event=5, value=5.0))  # newer than the load
    store.write("t__v1", rows([20, 2500], event=0, value=0.0))  # older than the load
    load = rows(list(range(3000)), event=1, value=1.0)
    blobs = encode_rows(load.event_us, load.created_us, [load.columns["a"], load.columns["b"]])
    members = [f"i{k}".encode() for k in load.keys]
    raw.config_resetstat()
    written = store._write("t__v1", members, blobs, fresh=True)
    assert written == 2998  # all but the two newer rows
    assert commands(raw)["evalsha"] == 3  # the refused chunks (each holds a key written meanwhile)
    found = store.read("t__v1", ["a"], list(range(3000)))
    assert {k: v for k, v in found.items() if v != (1, 0, 1.0)} == {10: (5, 0, 5.0), 1500: (5, 0, 5.0)}
    assert len(indexed(raw, store.prefix, "t__v1")) == 3000
    store.close()


def test_a_push_racing_a_first_load_is_never_overwritten_by_older_rows(redis_server: RedisServer) -> None:
    store = make_store(redis_server.url)
    store.create_table("t__v1", ["a", "b"])
    keys = list(range(60_000))  # more than one round trip of the load
    pushed: list[int] = []
    started = threading.Event()

    def push() -> None:
        started.wait()
        for key in range(0, len(keys), 997):
            store.write("t__v1", rows([key], event=2, value=2.0))
            pushed.append(key)

    pusher = threading.Thread(target=push)
    pusher.start()
    started.set()
    store.write("t__v1", rows(keys, event=1, value=1.0))
    pusher.join()
    found = store.read("t__v1", ["a"], keys)
    assert len(found) == len(keys)
    assert all(found[k] == (2, 0, 2.0) for k in pushed)
    assert all(found[k] == (1, 0, 1.0) for k in keys if k not in set(pushed))
    assert len(indexed(redis.Redis.from_url(redis_server.url), store.prefix, "t__v1")) == len(keys)
    store.close()


def test_scripts_flushed_from_the_server_are_loaded_again(redis_server: RedisServer, raw: redis.Redis) -> None:
    store = make_store(redis_server.url)
    store.create_table("t__v1", ["a", "b"])
    store.write("t__v1", rows([1], event=1))
    raw.script_flush()
    store.write("t__v1", rows([1, 2], event=2, value=2.0))
    raw.script_flush()
    store.drop_table("t__v1")
    store.create_table("t__v1", ["a", "b"])
    assert store.read("t__v1", ["a"], [1, 2]) == {}
    store.close()


def test_readers_during_a_write_see_each_row_whole(redis_server: RedisServer) -> None:
    store = make_store(redis_server.url)
    store.create_table("t__v1", ["a", "b"])
    keys = list(range(20_000))
    store.write(
        "t__v1", OnlineRows(keys, [1] * len(keys), [0] * len(keys), {"a": [1.0] * len(keys), "b": ["old"] * len(keys)})
    )
    seen: set[tuple[Any, ...]] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.update(store.read("t__v1", ["a", "b"], keys[::50]).values())

    reader = threading.Thread(target=read)
    reader.start()
    for generation in range(2, 6):
        store.write(
            "t__v1",
            OnlineRows(
                keys,
                [generation] * len(keys),
                [0] * len(keys),
                {"a": [float(generation)] * len(keys), "b": [f"g{generation}"] * len(keys)},
            ),
        )
    done.set()
    reader.join()
    assert seen <= {(1, 0, 1.0, "old")} | {(g, 0, float(g), f"g{g}") for g in range(2, 6)}
    store.close()


def test_a_password_in_the_url_never_shows() -> None:
    assert public_url("redis://user:hunter2@db.example:6380/2?password=hunter2") == "redis://db.example:6380/2"
    assert public_url("rediss://:hunter2@db.example/0") == "rediss://db.example/0"
    assert public_url("unix:///run/redis.sock?db=1") == "unix:///run/redis.sock"
    port = _closed_port()
    store = make_store(f"redis://user:hunter2@127.0.0.1:{port}/0")
    with pytest.raises(fk.StorageError) as caught:
        store.read("t__v1", ["a"], [1])
    assert "hunter2" not in str(caught.value)
    assert f"redis://127.0.0.1:{port}/0" in str(caught.value)
    store.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: nothing listens there


def _every_operation_fails_fast(store: RedisOnlineStore, bound_s: float) -> None:
    operations = {
        "read": lambda: store.read("t__v1", ["a"], [1]),
        "read_many": lambda: store.read_many([("t__v1", ["a"], [1]), ("u__v1", ["a"], [2])]),
        "write": lambda: store.write("t__v1", rows([1])),
        "create_table": lambda: store.create_table("t__v1", ["a", "b"]),
        "drop_table": lambda: store.drop_table("t__v1"),
        "tables": store.tables,
    }
    for name, operation in operations.items():
        began = time.monotonic()
        with pytest.raises(fk.StorageError, match=r"Redis at redis://127\.0\.0\.1:\d+/0 did not answer.*Start Redis"):
            operation()
        assert time.monotonic() - began < bound_s, name


def test_a_refused_connection_is_a_storage_error_at_once() -> None:
    store = make_store(f"redis://127.0.0.1:{_closed_port()}/0")
    _every_operation_fails_fast(store, bound_s=1.0)
    store.close()


def test_a_server_that_never_answers_is_a_storage_error_within_the_timeouts() -> None:
    # A socket that accepts connections (the kernel's backlog) but never replies: a hung server.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        store = make_store(f"redis://127.0.0.1:{hung.getsockname()[1]}/0", socket_timeout_s=0.2, connect_timeout_s=0.2)
        _every_operation_fails_fast(store, bound_s=2.0)  # two tries of 0.2 s each, with margin
        store.close()


def test_service_resumes_by_itself_when_redis_returns(own_redis_server: RedisServer) -> None:
    store = make_store(own_redis_server.url)
    store.create_table("t__v1", ["a", "b"])
    store.write("t__v1", rows([1, 2]))
    assert store.read("t__v1", ["a"], [1]) == {1: (1, 0, 1.0)}
    own_redis_server.stop()
    _every_operation_fails_fast(store, bound_s=1.0)
    own_redis_server.start()  # the same port, empty (no persistence), no scripts loaded
    assert store.read("t__v1", ["a"], [1]) == {}
    store.create_table("t__v1", ["a", "b"])
    assert store.write("t__v1", rows([1], event=4)) == 1  # an empty table: the fast path, on a new connection
    assert store.write("t__v1", rows([1, 2], event=5)) == 2  # NOSCRIPT: the script is loaded again
    assert store.read_many([("t__v1", ["a"], [1, 2])]) == [{1: (5, 0, 1.0), 2: (5, 0, 1.0)}]
    own_redis_server.stop()
    own_redis_server.start()  # every pooled connection is dead again
    store.create_table("t__v2", ["a", "b"])
    assert store.write("t__v2", rows(list(range(3000)), event=6)) == 3000
    assert len(store.read("t__v2", ["a"], list(range(3000)))) == 3000
    store.close()


def test_without_the_redis_package_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # what `import redis` meets when it is not installed
    with pytest.raises(fk.ConfigError, match=r"pip install 'featurekit\[redis\]'"):
        make_store("redis://127.0.0.1:1/0")


def test_a_bad_url_is_a_config_error() -> None:
    with pytest.raises(fk.ConfigError, match=r"online.url 'http://localhost/' is not a Redis URL"):
        make_store("http://localhost/")


def test_importing_featurekit_never_imports_redis(tmp_path: Path) -> None:
    code = (
        "import sys, featurekit, featurekit.online.factory, featurekit.config, featurekit.store\n"
        "assert 'redis' not in sys.modules, 'redis was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_online_settings_by_type(tmp_path: Path) -> None:
    (tmp_path / "featurekit.yaml").write_text("project: rides\nonline:\n  type: redis\n")
    online = load_config(tmp_path).online
    assert isinstance(online, RedisOnlineConfig)
    assert (online.url, online.key_prefix, online.socket_timeout_s, online.connect_timeout_s) == (
        "redis://localhost:6379/0",
        "fk:rides:",  # repos sharing a database keep apart by default
        0.5,
        0.5,
    )
    (tmp_path / "featurekit.yaml").write_text("online:\n  type: redis\n  key_prefix: shared\n")
    assert load_config(tmp_path).online.key_prefix == "shared"  # type: ignore[union-attr]
    (tmp_path / "featurekit.yaml").write_text("online:\n  refresh_s: 0\n")
    assert load_config(tmp_path).online.type == "sqlite"
    for text, problem in [
        ("online:\n  type: redis\n  path: x.db\n", r"online\.redis\.path: Extra inputs are not permitted"),
        ("online:\n  url: redis://h\n", r"online\.sqlite\.url: Extra inputs are not permitted"),
        (
            "online:\n  type: redis\n  socket_timeout_s: 0\n",
            r"online\.redis\.socket_timeout_s: Input should be greater",
        ),
        ("online:\n  type: mongo\n", r"online: Input tag 'mongo' found using 'type' does not match"),
    ]:
        (tmp_path / "featurekit.yaml").write_text(text)
        with pytest.raises(fk.ConfigError, match=problem):
            load_config(tmp_path)


def test_a_pool_with_every_connection_busy_says_which_setting_to_raise(redis_server: RedisServer) -> None:
    store = make_store(redis_server.url, max_connections=1, pool_timeout_s=0.1)
    held = store._pool.get_connection()  # what a thread in the middle of a call holds
    try:
        with pytest.raises(fk.StorageError, match=r"connections to Redis at .* stayed busy.*online\.max_connections"):
            store.read("t__v1", ["a"], [1])
    finally:
        store._pool.release(held)
    assert store.read("t__v1", ["a"], [1]) == {}
    store.close()
