"""Keys and lookup times online: every key type the offline join takes, the same type rule, the UTC rule."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import featurekit as fk
from featurekit.online import loading
from tests.conftest import BASIC_FEATURES, trips_table, ts
from tests.redis_server import ONLINE_KINDS, online_yaml

KEYED = """
import pyarrow as pa
import featurekit as fk

thing = fk.Entity("thing", join_keys=[{keys}])
src = fk.FileSource("data/things.parquet")


@fk.feature_view(entity=thing, source=src, frame="arrow")
def things(rows: pa.Table) -> pa.Table:
    return rows.select([{keys}, "event_timestamp", "value"])
"""


KEY_COLUMNS = {
    "day": (pa.date32(), [date(2026, 1, 1), date(1999, 12, 31)]),
    "moment": (pa.timestamp("us", tz="UTC"), [datetime(2026, 1, 1, 12, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC)]),
    "small": (pa.int8(), [-128, 127]),
    "wide": (pa.uint32(), [0, 2**31 - 1]),  # Delta Lake has no unsigned types: nothing above int32's max
    "flag": (pa.bool_(), [True, False]),
    "name": (pa.string(), ["a", "b"]),
}


def keyed_repo(make_repo, keys: list[str], config: str | None):
    columns = {k: pa.array(KEY_COLUMNS[k][1], KEY_COLUMNS[k][0]) for k in keys}
    data = pa.table(
        {
            **columns,
            "event_timestamp": pa.array([ts(0), ts(0)], pa.timestamp("us", tz="UTC")),
            "value": pa.array([1.5, 2.5], pa.float32()),
        }
    )
    source = KEYED.replace("{keys}", ", ".join(repr(k) for k in keys))
    return make_repo(source, data={"data/things.parquet": data}, config=config)


KEY_SETS = [["day"], ["moment"], ["small"], ["wide"], ["flag"], ["day", "moment", "name", "small"]]


@pytest.mark.parametrize("online", ONLINE_KINDS)
@pytest.mark.parametrize("keys", KEY_SETS)
def test_every_key_type_is_served_and_materialize_runs_again(make_repo, open_store, request, online, keys):
    store = open_store(keyed_repo(make_repo, keys, online_yaml(online, request)))
    store.apply()
    store.materialize(ts(0), ts(1))
    store.materialize(ts(0), ts(1))  # the online load of the first run must not wedge the next
    entities = {k: KEY_COLUMNS[k][1] for k in keys}
    served = store.online_features(entities, ["things"], at=ts(2))
    assert served.to_dict()["value"] == pytest.approx([1.5, 2.5])
    assert served.to_arrow().schema.field(keys[0]).type == KEY_COLUMNS[keys[0]][0]
    spine = pa.table({**entities, "event_timestamp": pa.array([ts(2)] * 2, pa.timestamp("us", tz="UTC"))})
    assert store.training_set(spine, ["things"]).to_arrow().column("value").to_pylist() == served.to_dict()["value"]
    assert store.verify(["things"], at=ts(2)).ok


def test_timestamp_and_date_keys_accept_what_the_utc_rule_accepts(make_repo, open_store):
    store = open_store(keyed_repo(make_repo, ["moment"], None))
    store.apply()
    store.materialize(ts(0), ts(1))
    naive = datetime(2026, 1, 1, 12)  # naive means UTC
    new_york = datetime(2026, 1, 1, 12, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))  # the same instant
    moments = [naive, new_york, naive + timedelta(microseconds=1)]
    served = store.online_features({"moment": moments}, ["things"], at=ts(2))
    assert served.to_dict()["value"] == pytest.approx([1.5, 1.5, None])
    assert served.to_dict()["moment"][1] == datetime(2026, 1, 1, 12, tzinfo=UTC)
    with pytest.raises(fk.SchemaError, match=r"key 'moment' is str '2026-01-01'.*timestamp"):
        store.online_features({"moment": ["2026-01-01"]}, ["things"], at=ts(2))


def one_trip_repo(make_repo):
    return make_repo(BASIC_FEATURES, data={"data/trips.parquet": trips_table([(1, ts(0), ts(0), 1, 2, 3.0)])})


def test_a_failing_online_load_does_not_wedge_later_runs(make_repo, open_store, monkeypatch):
    store = open_store(one_trip_repo(make_repo))
    store.apply()
    real = loading.to_online_rows
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("an encoding bug")
        return real(*args, **kwargs)

    monkeypatch.setattr(loading, "to_online_rows", failing_once)
    with pytest.raises(TypeError):
        store.materialize(ts(0), ts(1))
    store.materialize(ts(1), ts(2))  # loads the committed window it missed, then its own
    assert store.online_features({"driver_id": [1]}, ["driver_stats:avg_trip_km"], at=ts(2)).to_dict() == {
        "driver_id": [1],
        "avg_trip_km": [3.0],
    }


FLOAT_KEY = """
import polars as pl
import featurekit as fk

spot = fk.Entity("spot", join_keys=["lat"])
src = fk.FileSource("data/spots.parquet")


@fk.feature_view(entity=spot, source=src)
def spots(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select("lat", "event_timestamp", "visits")
"""


def spots_store(make_repo, open_store):
    data = pa.table(
        {
            "lat": pa.array([3.0, 1.5], pa.float64()),
            "event_timestamp": pa.array([ts(0), ts(0)], pa.timestamp("us", tz="UTC")),
            "visits": [7, 8],
        }
    )
    store = open_store(make_repo(FLOAT_KEY, data={"data/spots.parquet": data}))
    store.apply()
    store.materialize(ts(0), ts(1))
    return store


def test_an_int_for_a_float_key_is_refused_on_both_paths(make_repo, open_store):
    store = spots_store(make_repo, open_store)
    assert store.online_features({"lat": [3.0, 1.5]}, ["spots"], at=ts(2)).to_dict()["visits"] == [7, 8]
    with pytest.raises(fk.SchemaError, match=r"key 'lat' is int 3, but the view's key is double"):
        store.online_features({"lat": [3]}, ["spots"], at=ts(2))
    spine = pl.DataFrame({"lat": [3], "event_timestamp": [ts(2)]})
    with pytest.raises(fk.SchemaError, match="'lat'"):
        store.training_set(spine, ["spots"])


def test_key_values_that_do_not_fit_name_the_key_value_and_type(make_repo, open_store):
    store = open_store(one_trip_repo(make_repo))
    store.apply()
    store.materialize(ts(0), ts(1))
    with pytest.raises(fk.SchemaError, match=r"entity 1 key 'driver_id' is int 18446744073709551615.*int64"):
        store.online_features({"driver_id": [1, 2**64 - 1]}, ["driver_stats"], at=ts(2))
    with pytest.raises(fk.SchemaError, match=r"key 'driver_id' is bool True.*int64"):
        store.online_features({"driver_id": [True]}, ["driver_stats"], at=ts(2))
    # A lossless cast is made: an int32 frame column for an int64 key.
    frame = pl.DataFrame({"driver_id": pl.Series([1], dtype=pl.Int32)})
    assert store.online_features(frame, ["driver_stats:avg_trip_km"], at=ts(2)).to_dict()["avg_trip_km"] == [3.0]


def test_pandas_category_keys_are_their_values(make_repo, open_store):
    store = open_store(one_trip_repo(make_repo))
    store.apply()
    store.materialize(ts(0), ts(1))
    frame = pd.DataFrame({"driver_id": pd.Series([1, 2], dtype="category")})
    served = store.online_features(frame, ["driver_stats:avg_trip_km"], at=ts(2))
    assert served.to_dict() == {"driver_id": [1, 2], "avg_trip_km": [3.0, None]}


UINT_KEY = """
import pyarrow as pa
import featurekit as fk

account = fk.Entity("account", join_keys=["account_id"])
src = fk.FileSource("data/accounts.parquet")


@fk.feature_view(entity=account, source=src, frame="arrow")
def balances(rows: pa.Table) -> pa.Table:
    return rows.select(["account_id", "event_timestamp", "balance"])
"""


@pytest.mark.parametrize("online", ONLINE_KINDS)
def test_uint64_keys_above_the_signed_range_are_served(make_repo, open_store, request, online):
    data = pa.table(
        {
            "account_id": pa.array([1], pa.uint64()),
            "event_timestamp": pa.array([ts(0)], pa.timestamp("us", tz="UTC")),
            "balance": [1.0],
        }
    )
    store = open_store(make_repo(UINT_KEY, data={"data/accounts.parquet": data}, config=online_yaml(online, request)))
    store.apply()
    big = 2**64 - 1  # Delta Lake has no unsigned types, so such keys only arrive by an online push
    pushed = pa.table(
        {
            "account_id": pa.array([big, 2**63], pa.uint64()),
            "event_timestamp": pa.array([ts(0), ts(0)], pa.timestamp("us", tz="UTC")),
            "balance": [2.0, 3.0],
        }
    )
    store.push("balances", pushed)
    served = store.online_features({"account_id": [big, 2**63, 5]}, ["balances"], at=ts(1)).to_dict()
    assert served == {"account_id": [big, 2**63, 5], "balance": [2.0, 3.0, None]}
    with pytest.raises(fk.SchemaError, match=r"key 'account_id' is int -1.*uint64"):
        store.online_features({"account_id": [-1]}, ["balances"], at=ts(1))


@pytest.fixture
def trips_store(make_repo, open_store):
    rows = [(1, ts(0), ts(0), 1, 2, 1.0), (1, ts(2), ts(2), 2, 4, 2.0), (2, ts(1), ts(1), 3, 4, 3.0)]
    store = open_store(make_repo(BASIC_FEATURES, data={"data/trips.parquet": trips_table(rows)}))
    store.apply()
    store.materialize(ts(0), ts(3))
    return store


def test_at_accepts_naive_datetimes_and_iso_text_as_utc(trips_store):
    aware = trips_store.online_features({"driver_id": [1, 2]}, ["driver_stats"], at=ts(3)).to_dict()
    naive = ts(3).replace(tzinfo=None)
    assert trips_store.online_features({"driver_id": [1, 2]}, ["driver_stats"], at=naive).to_dict() == aware
    for text in ("2026-01-04", "2026-01-04T00:00:00Z", "2026-01-04T01:00:00+01:00"):
        assert trips_store.online_features({"driver_id": [1, 2]}, ["driver_stats"], at=text).to_dict() == aware
    with pytest.raises(fk.SchemaError, match="at 'yesterday' is not an ISO-8601 timestamp"):
        trips_store.online_features({"driver_id": [1]}, ["driver_stats"], at="yesterday")


def test_a_lookup_before_the_stored_row_says_what_can_be_asked(trips_store):
    # Driver 1's stored row is from day 2; at day 1 the answer was day 0's row, which is gone online.
    with pytest.raises(fk.OnlineHistoryError, match=r"\{'driver_id': 1\}.*2026-01-03T00:00:00\+00:00 or later"):
        trips_store.online_features({"driver_id": [2, 1]}, ["driver_stats"], at=ts(1))
    assert issubclass(fk.OnlineHistoryError, fk.FeaturekitError)
    # At the stored row's event time the store can answer, and agrees with a training set.
    served = trips_store.online_features({"driver_id": [1]}, ["driver_stats:avg_trip_km"], at=ts(2)).to_dict()
    assert served["avg_trip_km"] == [2.0]
    # Entities whose rows are older than ``at`` are fine, whatever other entities hold.
    served = trips_store.online_features({"driver_id": [2, 9]}, ["driver_stats:avg_trip_km"], at=ts(1, 1))
    assert served.to_dict()["avg_trip_km"] == [3.0, None]


def test_a_load_that_keeps_failing_warns_and_never_blocks_new_windows(make_repo, open_store, monkeypatch):
    from featurekit.errors import StorageError
    from featurekit.offline.materialize import OnlineLoadWarning

    store = open_store(one_trip_repo(make_repo))
    store.apply()
    real = loading.to_online_rows
    calls = []

    def failing_twice(*args, **kwargs):
        calls.append(1)
        if len(calls) <= 2:  # the first window's load, then its retry at the next run
            raise StorageError("the online disk is full")
        return real(*args, **kwargs)

    monkeypatch.setattr(loading, "to_online_rows", failing_twice)
    with pytest.raises(StorageError):
        store.materialize(ts(0), ts(1))
    with pytest.warns(OnlineLoadWarning, match="stay pending"):
        store.materialize(ts(1), ts(2))  # the retry fails again: this window still commits and loads
    assert store.registry.online_pending(1)  # the first window is still owed to the online store
    store.materialize(ts(2), ts(3))  # the retry works now
    assert store.registry.online_pending(1) == []
