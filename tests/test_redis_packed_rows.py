"""A materialization into Redis encodes its online rows beside the offline write; only the send
waits for the commit. What must hold: the rows equal those encoded after the commit, nothing reaches
Redis before the commit (a failing check writes nothing), and any trouble with the shortcut falls
back to the committed files instead of failing the materialization.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import featurekit as fk
from featurekit.config import RedisOnlineConfig
from featurekit.offline.duckdb_engine import DuckDBEngine
from featurekit.offline.newest import NewestRows
from featurekit.online.base import OnlineRows
from featurekit.online.loading import packed_online_rows, to_online_rows
from featurekit.online.redis import RedisOnlineStore
from featurekit.online.redis_rows import pack_newest, pack_rows
from tests.conftest import BASIC_FEATURES, trips_table, ts
from tests.redis_server import RedisServer, redis_config, redis_prefix
from tests.test_checks import features, good
from tests.test_newest_rows_property import VIEW, _table

ROWS = [
    (1, ts(0), ts(0), 1, 2, 1.0),
    (2, ts(1), ts(1), 3, 4, 3.0),
    (1, ts(2), ts(2, 1), 3, 4, 2.5),
    (3, ts(3), ts(3), 0, 0, 4.0),  # 0 / 0: NaN
]


def _prepare(table: pa.Table) -> OnlineRows:
    return packed_online_rows(table, join_keys=["driver_id"], features=["km"], packer=pack_newest)


def test_rows_packed_batch_by_batch_equal_the_rows_packed_at_once() -> None:
    batches = [
        _table([(1, 1, None, 1), (1, 2, 0, 5), (3, 4, 1, 2)]),
        _table([(2, 1, 1, 7)]),
        _table([]),
        _table([(4, 3, None, 1), (5, 0, 2, 3), (4, 3, 1, 0)]),
    ]
    newest = NewestRows(DuckDBEngine(Path(".")), VIEW, _prepare)
    try:
        for batch in batches:
            newest.add(batch)
        table, rows = newest.result(), newest.online_rows()
    finally:
        newest.close()
    assert table is not None
    assert rows is not None
    once = to_online_rows(table, ["driver_id"], ["km"])
    assert (rows.keys, rows.event_us, rows.created_us, rows.columns) == (
        once.keys,
        once.event_us,
        once.created_us,
        once.columns,
    )
    packed = [pack_rows(once, ["km"])]
    assert [m for p in rows.packed for m in p.members] == [m for p in packed for m in p.members]  # type: ignore[attr-defined]
    assert [b for p in rows.packed for b in p.blobs] == packed[0].blobs  # type: ignore[attr-defined]


def test_a_batch_that_fails_to_pack_leaves_no_rows_behind() -> None:
    calls: list[int] = []

    def failing_second(table: pa.Table) -> OnlineRows:
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("no room for the encoded rows")
        return _prepare(table)

    newest = NewestRows(DuckDBEngine(Path(".")), VIEW, failing_second)
    try:
        newest.add(_table([(1, 1, None, 1)]))
        newest.add(_table([(2, 1, None, 1)]))
        assert newest.result() is None  # the caller reads the committed files instead
        assert newest.online_rows() is None
    finally:
        newest.close()


def test_rows_packed_for_another_feature_order_are_encoded_again(redis_server: RedisServer) -> None:
    store = RedisOnlineStore(RedisOnlineConfig(type="redis", url=redis_server.url, key_prefix=redis_prefix()))
    store.create_table("t__v1", ["a", "b"])
    rows = OnlineRows(keys=[1, "x"], event_us=[1, 2], created_us=[0, 0], columns={"a": [1.5, None], "b": ["p", 7]})
    wrong = OnlineRows(rows.keys, rows.event_us, rows.created_us, rows.columns, (pack_rows(rows, ["b", "a"]),))
    assert store.write("t__v1", wrong) == 2
    assert store.read("t__v1", ["a", "b"], [1, "x"]) == {1: (1, 0, 1.5, "p"), "x": (2, 0, None, 7)}
    store.close()


def _row_keys(url: str, prefix: str) -> list[bytes]:
    return list(redis.Redis.from_url(url).scan_iter(match=f"{prefix}r:*"))


def test_a_failing_check_writes_nothing_to_redis(make_repo, open_store, redis_server: RedisServer) -> None:
    prefix = redis_prefix()
    failing = [good(1, 1), good(2, 2, km=500.0)]
    root = make_repo(
        features("fk.check.custom(long_trips)"),
        {"data/trips.parquet": trips_table(failing)},
        config=redis_config(redis_server.url, prefix),
    )
    store = open_store(root)
    store.apply()
    with pytest.raises(fk.CheckError):
        store.materialize(ts(0), ts(3))
    assert _row_keys(redis_server.url, prefix) == []  # the rows were packed, never sent


def test_a_packer_that_fails_falls_back_to_the_committed_files(
    make_repo, open_store, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import featurekit.store

    def broken(table: pa.Table, rows: OnlineRows, names: object) -> object:
        raise MemoryError("no room for the encoded rows")

    monkeypatch.setattr(featurekit.store, "online_packer", lambda config: broken)
    prefix = redis_prefix()
    root = make_repo(
        BASIC_FEATURES, {"data/trips.parquet": trips_table(ROWS)}, config=redis_config(redis_server.url, prefix)
    )
    store = open_store(root)
    store.apply()
    (result,) = store.materialize(ts(0), ts(4))
    assert result.online_rows == 3
    served = store.online_features({"driver_id": [1, 2]}, ["driver_stats:avg_trip_km"], at=ts(4)).to_dict()
    assert served["avg_trip_km"] == [2.5, 3.0]


TYPES = {
    "f64": pa.float64(),
    "f32": pa.float32(),
    "i64": pa.int64(),
    "i8": pa.int8(),
    "u32": pa.uint32(),
    "u64": pa.uint64(),
    "flag": pa.bool_(),
    "text": pa.string(),
}


def _values(dtype: pa.DataType) -> st.SearchStrategy[object]:
    if pa.types.is_floating(dtype):
        width = 32 if dtype == pa.float32() else 64
        return st.floats(width=width, allow_nan=True, allow_infinity=True)
    if pa.types.is_boolean(dtype):
        return st.booleans()
    if pa.types.is_string(dtype):
        return st.text(max_size=3)
    info = (dtype.bit_width, pa.types.is_signed_integer(dtype))
    low = -(2 ** (info[0] - 1)) if info[1] else 0
    high = 2 ** (info[0] - 1) - 1 if info[1] else 2 ** info[0] - 1
    return st.integers(low, high)


@st.composite
def newest_tables(draw: st.DrawFn) -> pa.Table:
    names = draw(st.lists(st.sampled_from(sorted(TYPES)), min_size=1, max_size=4, unique=True))
    count = draw(st.integers(1, 6))
    nulls = draw(st.booleans())
    columns: dict[str, pa.Array] = {
        "driver_id": pa.array(range(count), pa.int64()),
        "__fk_event": pa.array(draw(st.lists(st.integers(-(2**62), 2**62), min_size=count, max_size=count))),
        "__fk_created": pa.array(
            draw(st.lists(st.one_of(st.none(), st.integers(0, 2**62)), min_size=count, max_size=count)), pa.int64()
        ),
    }
    for name in names:
        value = _values(TYPES[name])
        values = st.one_of(st.none(), value) if nulls else value
        columns[name] = pa.array(draw(st.lists(values, min_size=count, max_size=count)), TYPES[name])
    return pa.table(columns)


@settings(max_examples=150, deadline=None)
@given(newest=newest_tables())
def test_rows_packed_from_arrow_columns_are_the_bytes_packed_from_lists(newest: pa.Table) -> None:
    features = [n for n in newest.column_names if n in TYPES]
    rows = to_online_rows(newest, ["driver_id"], features)
    assert pack_newest(newest, rows, features) == pack_rows(rows, features)
