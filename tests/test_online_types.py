"""Every Arrow type a view can produce comes back online with its value and its registered dtype."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import pyarrow as pa
import pytest

import featurekit as fk
from featurekit.online.base import OnlineRows
from featurekit.online.codecs import check_servable, decoder, encode_column
from featurekit.online.memory import MemoryOnlineStore
from featurekit.online.sqlite import SqliteOnlineStore
from tests.conftest import ts
from tests.redis_server import ONLINE_KINDS, online_yaml

FEATURES = """
import pyarrow as pa
import featurekit as fk

thing = fk.Entity("thing", join_keys=["id"])
src = fk.FileSource("data/things.parquet")

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("i8", pa.int8()),
        ("i16", pa.int16()),
        ("i32", pa.int32()),
        ("i64", pa.int64()),
        ("u8", pa.uint8()),
        ("u16", pa.uint16()),
        ("u32", pa.uint32()),
        ("u64", pa.uint64()),
        ("f32", pa.float32()),
        ("f64", pa.float64()),
        ("dec", pa.decimal128(12, 3)),
        ("day", pa.date32()),
        ("when", pa.timestamp("us", tz="UTC")),
        ("text", pa.string()),
        ("big_text", pa.large_string()),
        ("raw", pa.binary()),
        ("flag", pa.bool_()),
        ("ints", pa.list_(pa.int64())),
        ("decs", pa.list_(pa.decimal128(12, 3))),
        ("point", pa.struct([("ts", pa.timestamp("us", tz="UTC")), ("x", pa.float32())])),
        ("counts", pa.map_(pa.string(), pa.int64())),
        ("events", pa.list_(pa.struct([("at", pa.timestamp("us", tz="UTC")), ("n", pa.int32())]))),
    ]
)


@fk.feature_view(entity=thing, source=src, frame="arrow")
def kinds(rows: pa.Table) -> pa.Table:
    return rows.select(SCHEMA.names).cast(SCHEMA)
"""

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("i8", pa.int8()),
        ("i16", pa.int16()),
        ("i32", pa.int32()),
        ("i64", pa.int64()),
        ("u8", pa.uint8()),
        ("u16", pa.uint16()),
        ("u32", pa.uint32()),
        ("u64", pa.uint64()),
        ("f32", pa.float32()),
        ("f64", pa.float64()),
        ("dec", pa.decimal128(12, 3)),
        ("day", pa.date32()),
        ("when", pa.timestamp("us", tz="UTC")),
        ("text", pa.string()),
        ("big_text", pa.large_string()),
        ("raw", pa.binary()),
        ("flag", pa.bool_()),
        ("ints", pa.list_(pa.int64())),
        ("decs", pa.list_(pa.decimal128(12, 3))),
        ("point", pa.struct([("ts", pa.timestamp("us", tz="UTC")), ("x", pa.float32())])),
        ("counts", pa.map_(pa.string(), pa.int64())),
        ("events", pa.list_(pa.struct([("at", pa.timestamp("us", tz="UTC")), ("n", pa.int32())]))),
    ]
)
NAMES = SCHEMA.names[2:]


def row(entity: int, day: float, scale: int) -> dict[str, object]:
    """A row whose values sit at the edges of their types (``scale`` makes entities differ)."""
    return {
        "id": entity,
        "event_timestamp": ts(day),
        "i8": -128 + scale,
        "i16": -32768 + scale,
        "i32": -(2**31) + scale,
        "i64": -(2**63) + scale,
        # Delta Lake has no unsigned types: offline tables refuse values above the signed maximum.
        "u8": 127 - scale,
        "u16": 32767 - scale,
        "u32": 2**31 - 1 - scale,
        "u64": 2**63 - 1 - scale,
        "f32": 0.1 + scale,  # not exact in float32: must come back as the float32 value
        "f64": math.nan if scale == 0 else 1e300 * scale,
        "dec": Decimal("123456789.125") - scale,
        "day": date(1970 + scale, 2, 28),
        "when": datetime(2026, 1, 2, 3, 4, 5, 123456 + scale, tzinfo=UTC),
        "text": f"é{scale}\x00",
        "big_text": "x" * 1000,
        "raw": bytes([0, 255, scale]),
        "flag": scale % 2 == 0,
        "ints": [2**62, None, -scale],
        "decs": [Decimal("0.001"), None, Decimal(-scale)],
        "point": {"ts": datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), "x": 1.1 * scale},
        "counts": [("a", 1), ("b", None), ("c", scale)],
        "events": [{"at": ts(0), "n": -1}, {"at": None, "n": scale}],
    }


def empty_row(entity: int, day: float) -> dict[str, object]:
    """A row whose every feature is null."""
    return {"id": entity, "event_timestamp": ts(day), **dict.fromkeys(NAMES)}


@pytest.fixture(params=ONLINE_KINDS)
def store(request, make_repo, open_store):
    data = pa.Table.from_pylist([row(1, 0, 0), row(2, 0.5, 1), empty_row(3, 0.5)], schema=SCHEMA)
    config = online_yaml(request.param, request)
    store = open_store(make_repo(FEATURES, data={"data/things.parquet": data}, config=config))
    store.apply()
    store.materialize(ts(0), ts(1))
    pushed = pa.Table.from_pylist([row(4, 1.5, 7), row(1, 1.5, 3)], schema=SCHEMA)
    store.push("kinds", pushed, to="online_and_offline")
    return store


def training(store, ids):
    spine = pa.table({"id": ids, "event_timestamp": pa.array([ts(2)] * len(ids), pa.timestamp("us", tz="UTC"))})
    return store.training_set(spine, ["kinds"]).to_arrow()


def same(left: list[object], right: list[object]) -> bool:
    """Equal lists, where NaN equals NaN."""
    return len(left) == len(right) and all(
        (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b
        for a, b in zip(left, right, strict=True)
    )


def test_every_type_comes_back_with_its_value_and_dtype(store):
    ids = [1, 2, 3, 4, 5]  # 3: every feature null; 5: not found
    response = store.online_features({"id": ids}, ["kinds"], at=ts(2))
    trained = training(store, ids)
    served = response.to_dict()
    for name in NAMES:
        assert same(served[name], trained.column(name).to_pylist()), name
    arrow = response.to_arrow()
    registered = store.registry.active()["kinds"].version.schema
    assert arrow.schema == pa.schema([registered.field("id"), *(registered.field(n) for n in NAMES)])
    for name in NAMES:
        assert arrow.column(name).cast(trained.column(name).type).equals(trained.column(name)), name
    polars = response.to_polars()
    assert polars.schema == pl.from_arrow(arrow).schema
    pandas = response.to_pandas()
    assert list(pandas.dtypes) == list(arrow.to_pandas().dtypes)
    assert str(pandas["f32"].dtype) == "float32"


def test_a_column_no_entity_has_keeps_its_dtype(store):
    response = store.online_features({"id": [5, 6]}, ["kinds"], at=ts(2))
    registered = store.registry.active()["kinds"].version.schema
    arrow = response.to_arrow()
    for name in NAMES:
        assert arrow.schema.field(name).type == registered.field(name).type, name
        assert arrow.column(name).null_count == 2
    assert response.to_polars().schema == pl.from_arrow(arrow).schema
    assert str(response.to_pandas()["f32"].dtype) == "float32"


def test_verify_finds_no_mismatch(store):
    report = store.verify(["kinds"], entities={"id": [1, 2, 3, 4, 5]}, at=ts(2))
    assert report.ok, str(report)


CODEC_CASES = {
    "u64": (pa.uint64(), [2**64 - 1, 2**63, 0, None]),
    "i64": (pa.int64(), [-(2**63), 2**63 - 1, None]),
    "f32": (pa.float32(), [0.1, math.inf, None, math.nan]),
    "f16": (pa.float16(), [0.5, None]),
    "dec256": (pa.decimal256(40, 5), [Decimal("12345678901234567890123456789012345.12345"), None]),
    "ts_ns": (pa.timestamp("ns", tz="UTC"), [datetime(2026, 1, 1, tzinfo=UTC), None]),
    "ts_naive": (pa.timestamp("us"), [datetime(2026, 1, 1, 1, 2, 3, 4), None]),
    "day64": (pa.date64(), [date(2026, 1, 1), None]),
    "time": (pa.time64("us"), [datetime(2026, 1, 1, 1, 2, 3, 4).time(), None]),
    "duration": (pa.duration("us"), [datetime(2026, 1, 2) - datetime(2026, 1, 1), None]),
    "fixed": (pa.binary(3), [b"abc", None]),
    "big_list": (pa.large_list(pa.large_string()), [["x", "y"], [], None, ["z"]]),
    "fixed_list": (pa.list_(pa.int8(), 2), [[1, 2], None]),
    "nested_map": (pa.map_(pa.string(), pa.list_(pa.float32())), [[("a", [0.5, None])], [], None]),
    "categorical": (pa.dictionary(pa.int32(), pa.string()), ["a", "b", None, "a"]),
}


@pytest.mark.parametrize("case", sorted(CODEC_CASES))
@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_codecs_keep_every_arrow_type(tmp_path, kind, case):
    dtype, values = CODEC_CASES[case]
    column = pa.array(values, dtype)
    store = SqliteOnlineStore(tmp_path / "online.db") if kind == "sqlite" else MemoryOnlineStore()
    store.create_table("t__v1", ["v"])
    keys = list(range(len(values)))
    store.write("t__v1", OnlineRows(keys, [1] * len(keys), [1] * len(keys), {"v": encode_column(column)}))
    found = store.read("t__v1", ["v"], keys)
    decode = decoder(dtype)
    stored = [found[k][2] for k in keys]
    back = stored if decode is None else decode(stored)
    assert same(back, column.to_pylist())
    assert same(pa.array(back, dtype).to_pylist(), column.to_pylist())  # (equals() has NaN != NaN)
    assert check_servable(pa.schema([("v", dtype)])) == []
    store.close()


def test_what_cannot_be_kept_is_named():
    schema = pa.schema([("ok", pa.list_(pa.string())), ("bad", pa.list_(pa.dictionary(pa.int8(), pa.string())))])
    (problem,) = check_servable(schema)
    assert "'bad'" in problem
    assert "dictionary" in problem


def test_nested_values_stored_as_json_by_earlier_versions_still_read():
    decode = decoder(pa.list_(pa.int64()))
    assert decode is not None
    assert decode(["[1, 2]", None]) == [[1, 2], None]
    assert decode([None, None]) == [None, None]


UNSERVABLE = """
from datetime import timedelta
import polars as pl
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource("data/trips.parquet", timestamp_field="event_timestamp", created_timestamp_field="created")

@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7))
def tagged(trips: pl.DataFrame) -> pl.DataFrame:
    return trips.select(
        "driver_id", "event_timestamp", "created",
        tags=pl.concat_list(pl.lit("a").cast(pl.Categorical)),
    )
"""


def test_apply_refuses_a_view_the_online_store_cannot_keep(make_repo, open_store):
    from tests.conftest import trips_table

    root = make_repo(UNSERVABLE, data={"data/trips.parquet": trips_table([(1, ts(0), ts(0), 1, 2, 1.0)])})
    store = open_store(root)
    with pytest.raises(fk.SchemaError, match=r"feature view 'tagged'.*'tags'.*dictionary"):
        store.apply()
    assert store.list_views() == []  # nothing applied
