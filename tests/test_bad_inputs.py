"""One test per row of RELIABILITY.md's bad-input table (definitions, sources, spines, materialize).

Each asserts the error class, that the message names the culprit, and that nothing was written.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import featurekit as fk
from tests.conftest import BASIC_FEATURES, store_files, trips_table, ts

ROWS = [(1, ts(0), ts(0), 1, 2, 1.0), (2, ts(1), ts(1), 3, 4, 3.0)]


def fresh(make_repo, open_store, features=BASIC_FEATURES, table=None):
    root = make_repo(features, data={"data/trips.parquet": table if table is not None else trips_table(ROWS)})
    return root, open_store(root)


def snapshot(root: Path, store: fk.FeatureStore) -> tuple[list[str], list[object]]:
    """What a reader can see: committed Delta log entries, the online store, registry commits.

    Lock files and unreferenced data files of a failed write are not state (readers find files
    only through the commit log), so they are left out.
    """
    visible = [f for f in store_files(root) if "_delta_log/" in f or f.startswith("online.db")]
    return visible, store.registry.commits()


# -- timestamps ----------------------------------------------------------------------------------


def test_naive_source_timestamps_mean_utc_on_both_paths(make_repo, open_store):
    aware = trips_table(ROWS)
    naive = aware.set_column(1, "event_timestamp", aware.column(1).cast(pa.timestamp("us")))
    naive = naive.set_column(2, "created", aware.column(2).cast(pa.timestamp("us")))
    results = []
    for table in (aware, naive):
        _, store = fresh(make_repo, open_store, table=table)
        store.apply()
        store.materialize(ts(0), ts(5))
        probe = pl.DataFrame({"driver_id": [1, 2], "event_timestamp": [ts(0), ts(1) - timedelta(microseconds=1)]})
        offline = store.training_set(probe, ["driver_stats"]).to_arrow()
        online = store.online_features({"driver_id": [1, 2]}, ["driver_stats"], at=ts(2)).to_dict()
        results.append((offline, online))
    assert results[0][0].equals(results[1][0])
    assert results[0][1] == results[1][1]
    assert results[0][0].column("avg_trip_km").to_pylist() == [1.0, None]


@pytest.mark.parametrize(
    ("values", "dtype", "shown"),
    [
        ([date(2026, 1, 1), date(2026, 1, 2)], pa.date32(), "date32"),
        (["2026-01-01", "2026-01-02"], pa.string(), "string"),
        ([1767225600, 1767312000], pa.int64(), "int64"),
    ],
)
def test_non_timestamp_source_column(make_repo, open_store, values, dtype, shown):
    table = trips_table(ROWS).set_column(1, "event_timestamp", pa.array(values, dtype))
    root, store = fresh(make_repo, open_store, table=table)
    with pytest.raises(fk.SchemaError, match=rf"'event_timestamp'.*must be a timestamp, got {shown}"):
        store.apply()
    assert snapshot(root, store) == ([], [])


@pytest.mark.parametrize(
    ("column", "shown"),
    [
        (pa.array([date(2026, 1, 2)], pa.date32()), "date32"),
        (pa.array(["2026-01-02"], pa.string()), "string"),
        (pa.array([1767312000], pa.int64()), "int64"),
    ],
)
def test_non_timestamp_spine_column(make_repo, open_store, column, shown):
    _, store = fresh(make_repo, open_store)
    store.apply()
    store.materialize(ts(0), ts(5))
    spine = pa.table({"driver_id": [1], "event_timestamp": column})
    with pytest.raises(fk.SchemaError, match=rf"'event_timestamp' of spine must be a timestamp, got {shown}"):
        store.training_set(spine, ["driver_stats"])


# -- nulls -----------------------------------------------------------------------------------------


def test_null_event_timestamps_in_a_source(make_repo, open_store):
    table = trips_table([*ROWS, (3, ts(1), ts(1), 1, 1, 1.0)])
    table = table.set_column(1, "event_timestamp", pa.array([ts(0), ts(1), None], pa.timestamp("us", tz="UTC")))
    root, store = fresh(make_repo, open_store, table=table)
    store.apply()
    before = snapshot(root, store)
    with pytest.raises(fk.DataError, match=r"1 rows with a null event timestamp 'event_timestamp'.*'driver_id': 3"):
        store.materialize(ts(0), ts(5))
    assert snapshot(root, store) == before
    # The documented opt-in drops them.
    dropping = BASIC_FEATURES.replace(
        'created_timestamp_field="created")', 'created_timestamp_field="created", on_null="drop")'
    )
    _, store = fresh(make_repo, open_store, dropping, table)
    store.apply()
    assert store.materialize(ts(0), ts(5))[0].rows == 2


def test_null_entity_keys_in_a_source(make_repo, open_store):
    table = trips_table(ROWS).set_column(0, "driver_id", pa.array([1, None], pa.int64()))
    root, store = fresh(make_repo, open_store, table=table)
    store.apply()
    before = snapshot(root, store)
    with pytest.raises(fk.DataError, match=r"1 rows with a null key 'driver_id'.*first rows"):
        store.materialize(ts(0), ts(5))
    assert snapshot(root, store) == before


# -- spines ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["driver_id", "event_timestamp"])
def test_spine_without_a_key_or_timestamp(make_repo, open_store, missing):
    _, store = fresh(make_repo, open_store)
    store.apply()
    store.materialize(ts(0), ts(5))
    spine = pl.DataFrame({"driver_id": [1], "event_timestamp": [ts(2)], "label": [1]}).drop(missing)
    with pytest.raises(fk.SchemaError, match=rf"no column '{missing}' \(it has \[.*'label'\]\)"):
        store.training_set(spine, ["driver_stats"])


def test_duplicate_spine_rows_are_all_kept_in_order(make_repo, open_store):
    _, store = fresh(make_repo, open_store)
    store.apply()
    store.materialize(ts(0), ts(5))
    spine = pl.DataFrame({"driver_id": [2, 1, 2, 2], "event_timestamp": [ts(2)] * 4, "n": [1, 2, 3, 4]})
    out = store.training_set(spine, ["driver_stats:avg_trip_km"]).to_polars()
    assert out["n"].to_list() == [1, 2, 3, 4]
    assert out["avg_trip_km"].to_list() == [3.0, 1.0, 3.0, 3.0]


def test_missing_or_unreadable_spine_file(make_repo, open_store, tmp_path):
    _, store = fresh(make_repo, open_store)
    store.apply()
    store.materialize(ts(0), ts(5))
    with pytest.raises(fk.SchemaError, match=r"spine file .*nowhere\.parquet does not exist"):
        store.training_set(tmp_path / "nowhere.parquet", ["driver_stats"])
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(fk.SchemaError, match=r"spine file .*garbage\.parquet is not a readable Parquet file"):
        store.training_set(garbage, ["driver_stats"])


def test_spine_file_and_frame_give_the_same_training_set_and_digest(make_repo, open_store, tmp_path):
    _, store = fresh(make_repo, open_store)
    store.apply()
    store.materialize(ts(0), ts(5))
    spine = pl.DataFrame({"driver_id": [2, 1, 2], "event_timestamp": [ts(2), ts(0), ts(1)], "label": [1, 0, 1]})
    spine.write_parquet(tmp_path / "spine.parquet")
    from_file = store.training_set(tmp_path / "spine.parquet", ["driver_stats"])
    from_frame = store.training_set(spine, ["driver_stats"])
    assert from_file.to_polars().equals(from_frame.to_polars())
    assert from_file.to_polars()["label"].to_list() == [1, 0, 1]  # spine order kept
    assert from_file.manifest_model.spine_digest == from_frame.manifest_model.spine_digest


# -- names -----------------------------------------------------------------------------------------


def test_unknown_view_or_feature_gets_did_you_mean(make_repo, open_store):
    _, store = fresh(make_repo, open_store)
    store.apply()
    store.materialize(ts(0), ts(5))
    spine = pl.DataFrame({"driver_id": [1], "event_timestamp": [ts(2)]})
    with pytest.raises(
        fk.UnknownNameError, match=r"no applied feature view 'driver_stat'.*did you mean 'driver_stats'"
    ):
        store.training_set(spine, ["driver_stat:conv_rate"])
    with pytest.raises(fk.UnknownNameError, match=r"has no feature 'conv_rat'.*did you mean 'conv_rate'"):
        store.training_set(spine, ["driver_stats:conv_rat"])


def test_clashing_and_reserved_names_are_listed_at_once(make_repo, open_store):
    features = (
        BASIC_FEATURES
        + """

@fk.feature_view(entity=driver, source=trips)
def Driver_Stats(trips: pl.DataFrame) -> pl.DataFrame:
    return trips

rider = fk.Entity("__fk_rider", join_keys=["rider_id"])
RIDER = fk.Entity("DRIVER", join_keys=["x"])
"""
    )
    _root, store = fresh(make_repo, open_store, features)
    with pytest.raises(fk.InvalidNameError) as caught:
        store.plan()
    text = str(caught.value)
    assert "'driver_stats'" in text
    assert "'Driver_Stats'" in text
    assert "'__fk_rider'" in text
    assert "reserved prefix" in text
    assert "entities share a name" in text
    assert re.search(r"features\.py:\d+", text)
    assert len(caught.value.problems) == 3
    assert store.registry.commits() == []


@pytest.mark.parametrize(
    "bad",
    [
        'bad"name',
        "bad'name",
        "bad;name",
        "bad--name",
        "bad name",
        "bad/name",
        "..",
        "bad\x00name",
        "x" * 64,
        "1abc",
        "naïve",
        "dr\u0456ver",  # a Cyrillic look-alike "i"
    ],
)
def test_invalid_names(make_repo, open_store, bad):
    features = BASIC_FEATURES.replace('fk.Entity("driver"', f"fk.Entity({bad!r}")
    _root, store = fresh(make_repo, open_store, features)
    with pytest.raises(fk.InvalidNameError, match=r"entity name .* names must match") as caught:
        store.plan()
    assert "features.py:" in str(caught.value)
    assert store.registry.commits() == []


def test_invalid_feature_name_from_a_function(make_repo, open_store):
    features = BASIC_FEATURES.replace("avg_trip_km=", '**{"avg trip": pl.col("distance_km")}, x=')
    _, store = fresh(make_repo, open_store, features)
    with pytest.raises(fk.InvalidNameError, match="feature of view 'driver_stats' name 'avg trip'"):
        store.apply()
    assert store.registry.commits() == []


# -- feature functions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error", "pattern"),
    [
        (
            'return trips.select("event_timestamp", "created", x=pl.col("accepted"))',
            fk.FeatureFunctionError,
            r"returned no column 'driver_id'",
        ),
        (
            'return trips.select("driver_id", "created", x=pl.col("accepted"))',
            fk.FeatureFunctionError,
            r"returned no column 'event_timestamp'",
        ),
        (
            'return trips.select("driver_id", "created", pl.col("event_timestamp").cast(pl.String), '
            'x=pl.col("accepted"))',
            fk.FeatureFunctionError,
            r"'event_timestamp' .* must be a timestamp, got large_string",
        ),
        ('raise RuntimeError("boom")', fk.FeatureFunctionError, r"raised RuntimeError: boom \(.*features\.py:\d+\)"),
        ("return 42", fk.FeatureFunctionError, r"returned int"),
    ],
)
def test_bad_feature_function(make_repo, open_store, body, error, pattern):
    features = BASIC_FEATURES.replace(
        BASIC_FEATURES[BASIC_FEATURES.index("    return trips.select(") :], f"    {body}\n"
    )
    _root, store = fresh(make_repo, open_store, features)
    with pytest.raises(error, match=pattern) as caught:
        store.apply()
    assert "driver_stats" in str(caught.value)
    assert "features.py:" in str(caught.value)
    assert store.registry.commits() == []


# -- sources ---------------------------------------------------------------------------------------


def test_missing_source_file(make_repo, open_store):
    _root, store = fresh(make_repo, open_store, BASIC_FEATURES.replace("data/trips.parquet", "data/nope.parquet"))
    with pytest.raises(fk.SourceError, match=r"nope\.parquet does not exist.*features\.py:\d+"):
        store.apply()
    assert store.registry.commits() == []


def test_unreadable_source_file(make_repo, open_store):
    root, store = fresh(make_repo, open_store)
    (root / "data" / "trips.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(fk.SourceError, match=r"cannot read source file .*trips\.parquet"):
        store.apply()
    assert store.registry.commits() == []


def test_source_schema_changed_after_apply(make_repo, open_store):
    root, store = fresh(make_repo, open_store)
    store.apply()
    store.materialize(ts(0), ts(5))
    before = snapshot(root, store)
    changed = trips_table(ROWS).drop_columns(["offered"])
    changed = changed.set_column(4, "distance_km", pa.array(["1", "3"]))
    pq.write_table(changed, root / "data" / "trips.parquet")
    with pytest.raises(
        fk.SourceError, match=r"trips\.parquet changed .*removed 'offered' \(int64\).*'distance_km' is now"
    ):
        store.materialize(ts(0), ts(5))
    assert snapshot(root, store) == before


# -- windows ---------------------------------------------------------------------------------------


def test_reversed_and_future_windows(make_repo, open_store):
    root, store = fresh(make_repo, open_store)
    store.apply()
    before = snapshot(root, store)
    with pytest.raises(fk.WindowError, match=r"start 2026-01-05T00:00:00\+00:00 must be before end 2026-01-01"):
        store.materialize(ts(4), ts(0))
    future = datetime.now(UTC) + timedelta(days=3)
    with pytest.raises(fk.WindowError, match=rf"end {future.isoformat()[:16]}.* is in the future \(now is"):
        store.materialize(ts(0), future)
    assert snapshot(root, store) == before


def test_empty_window_is_a_zero_row_commit(make_repo, open_store):
    _, store = fresh(make_repo, open_store)
    store.apply()
    (result,) = store.materialize(ts(100), ts(101))
    assert (result.rows, result.source_rows) == (0, 0)
    assert store.registry.commits()[-1].kind == "materialize"


# -- stored state ----------------------------------------------------------------------------------


def test_garbage_registry_file(make_repo):
    root = make_repo()
    (root / ".featurekit").mkdir()
    (root / ".featurekit" / "registry.db").write_bytes(b"garbage" * 100)
    with pytest.raises(fk.RegistryError, match=r"registry .*registry\.db is unreadable"):
        fk.FeatureStore(root, progress=False)


def test_truncated_offline_file(make_repo, open_store):
    _root, store = fresh(make_repo, open_store)
    store.apply()
    store.materialize(ts(0), ts(5))
    (data_file,) = store.tables.data_files("driver_stats", 1, store.registry.last_materialization(1).data_version)
    data_file.path.write_bytes(data_file.path.read_bytes()[:50])
    spine = pl.DataFrame({"driver_id": [1], "event_timestamp": [ts(2)]})
    with pytest.raises(fk.StorageError, match=r"reading the offline data failed.*featurekit verify"):
        store.training_set(spine, ["driver_stats"]).to_arrow()


def test_online_request_with_missing_or_null_key_part(make_repo, open_store):
    features = """
    import polars as pl
    import featurekit as fk

    pair = fk.Entity("pair", join_keys=["a", "b"])
    src = fk.FileSource("data/pairs.parquet")

    @fk.feature_view(entity=pair, source=src)
    def pair_value(rows: pl.DataFrame) -> pl.DataFrame:
        return rows.select("a", "b", "event_timestamp", "value")
    """
    data = pa.table(
        {
            "a": pa.array([1], pa.int64()),
            "b": ["x"],
            "event_timestamp": pa.array([ts(0)], pa.timestamp("us", tz="UTC")),
            "value": [1.0],
        }
    )
    root = make_repo(features, data={"data/pairs.parquet": data})
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(1))
    with pytest.raises(fk.SchemaError, match="no key 'b'"):
        store.online_features([{"a": 1}], ["pair_value"])
    with pytest.raises(fk.DataError, match="null 'b'"):
        store.online_features([{"a": 1, "b": None}], ["pair_value"])
    assert store.online_features([{"a": 1, "b": "x"}], ["pair_value"], at=ts(1)).to_dict()["value"] == [1.0]


def test_a_boolean_or_an_object_is_no_number_for_an_on_demand_input():
    """polars would turn True into 1.0 and hand a struct to the function; both paths refuse them."""
    from featurekit.definitions import OnDemandView
    from featurekit.transform import input_column

    view = OnDemandView(lambda df: df, inputs=[], request={"trip_km": pl.Float64})
    assert input_column(view, "trip_km", [1, 2.5, "3.5"], pl.Float64).to_list() == [1.0, 2.5, 3.5]
    for bad in ([True], [{"km": 1}], [[1.0]], pl.Series([None, False])):
        with pytest.raises(fk.SchemaError, match="input 'trip_km' got"):
            input_column(view, "trip_km", bad, pl.Float64)
