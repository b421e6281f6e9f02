"""The user's path: apply, materialize, training set, with the semantics the core issue promises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import featurekit as fk
from tests.conftest import BASIC_FEATURES, trips_table, ts

ROWS = [
    (1, ts(0), ts(0), 1, 2, 1.0),
    (1, ts(2), ts(2), 2, 4, 2.0),
    (2, ts(1), ts(1), 3, 4, 3.0),
    (2, ts(1), ts(1, 1), 4, 8, 4.0),  # same event time, written later: wins the tie
    (3, ts(3), ts(3), 1, 1, 9.0),
]


@pytest.fixture
def store(make_repo, open_store):
    root = make_repo(data={"data/trips.parquet": trips_table(ROWS)})
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(10))
    return store


def spine(rows: list[tuple[int, datetime]], **extra: list[object]) -> pl.DataFrame:
    return pl.DataFrame(
        {"driver_id": [r[0] for r in rows], "event_timestamp": [r[1] for r in rows], **extra},
        schema_overrides={"event_timestamp": pl.Datetime("us", "UTC")},
    )


def test_point_in_time_values_ttl_and_tie_break(store):
    frame = store.training_set(
        spine([(1, ts(1)), (1, ts(2)), (2, ts(1)), (3, ts(2)), (1, ts(9, 1)), (1, ts(9))]),
        ["driver_stats:conv_rate", "driver_stats:avg_trip_km"],
    ).to_polars()
    assert frame["avg_trip_km"].to_list() == [1.0, 2.0, 4.0, None, None, 2.0]
    assert frame["conv_rate"].to_list() == [0.5, 0.5, 0.5, None, None, 0.5]


def test_spine_comes_back_whole_in_order_with_duplicates(store):
    rows = [(3, ts(5)), (1, ts(1)), (1, ts(1)), (99, ts(1)), (2, ts(4))]
    labels = [10, 20, 30, 40, 50]
    result = store.training_set(spine(rows, label=labels), ["driver_stats"]).to_polars()
    assert result.columns == ["driver_id", "event_timestamp", "label", "conv_rate", "avg_trip_km"]
    assert result["label"].to_list() == labels
    assert result["driver_id"].to_list() == [3, 1, 1, 99, 2]
    assert result["avg_trip_km"].to_list() == [9.0, 1.0, 1.0, None, 4.0]


def test_requested_order_and_feature_refs(store, make_repo):
    result = store.training_set(
        spine([(1, ts(2))]), ["driver_stats:avg_trip_km", fk.FeatureRef("driver_stats", "conv_rate")]
    ).to_arrow()
    assert result.column_names[-2:] == ["avg_trip_km", "conv_rate"]
    view = store.definitions.views["driver_stats"]
    via_view = store.training_set(spine([(1, ts(2))]), [view["conv_rate"]]).to_arrow()
    assert via_view.column("conv_rate").to_pylist() == [0.5]


def test_outputs_agree_pandas_polars_arrow_parquet(store, tmp_path):
    ts_set = store.training_set(spine([(1, ts(1)), (2, ts(3))]), ["driver_stats"])
    arrow = ts_set.to_arrow()
    assert ts_set.to_pandas().equals(arrow.to_pandas())
    assert ts_set.to_polars().equals(pl.from_arrow(arrow))
    path = store.training_set(spine([(1, ts(1)), (2, ts(3))]), ["driver_stats"]).to_parquet(tmp_path / "t.parquet")
    assert pq.read_table(path).equals(arrow)


def test_spine_as_pandas_arrow_and_parquet_path(store, tmp_path):
    frame = spine([(1, ts(1)), (2, ts(3))])
    expected = store.training_set(frame, ["driver_stats"]).to_arrow()
    assert store.training_set(frame.to_pandas(), ["driver_stats"]).to_arrow().equals(expected)
    assert store.training_set(frame.to_arrow(), ["driver_stats"]).to_arrow().equals(expected)
    frame.write_parquet(tmp_path / "spine.parquet")
    assert store.training_set(tmp_path / "spine.parquet", ["driver_stats"]).to_arrow().equals(expected)


def test_naive_and_zoned_spine_timestamps_are_instants(store):
    zone = timezone(timedelta(hours=-5))
    aware = store.training_set(
        pl.DataFrame({"driver_id": [1], "event_timestamp": [ts(2).astimezone(zone)]}), ["driver_stats:avg_trip_km"]
    ).to_polars()
    naive = store.training_set(
        pl.DataFrame({"driver_id": [1], "event_timestamp": [ts(2).replace(tzinfo=None) - timedelta(microseconds=1)]}),
        ["driver_stats:avg_trip_km"],
    ).to_polars()
    assert aware["avg_trip_km"].to_list() == [2.0]
    assert naive["avg_trip_km"].to_list() == [1.0]  # naive = UTC: one microsecond before the 2nd trip
    assert naive["event_timestamp"].dtype == pl.Datetime("us")  # the spine's own column is untouched


def test_rematerializing_a_window_replaces_rows(store):
    before = store.training_set(spine([(1, ts(2))]), ["driver_stats"]).to_arrow()
    store.materialize(ts(0), ts(10))
    store.materialize(ts(1), ts(3))
    after = store.training_set(spine([(1, ts(2))]), ["driver_stats"]).to_arrow()
    assert after.equals(before)
    files = store.tables.data_files("driver_stats", 1, store.registry.last_materialization(1).data_version)
    assert pa.concat_tables(pq.read_table(f.path) for f in files).num_rows == len(ROWS)


def test_incremental_runs_equal_one_run(make_repo, open_store):
    data = {"data/trips.parquet": trips_table(ROWS)}
    one = open_store(make_repo(data=data))
    one.apply()
    one.materialize(ts(0), ts(10))
    many = open_store(make_repo(data=data))
    many.apply()
    many.materialize(ts(0), ts(1))
    many.materialize_incremental(ts(2, 12))
    many.materialize_incremental(ts(10))
    probe = spine([(d, ts(day)) for d in (1, 2, 3) for day in range(6)])
    assert (
        many.training_set(probe, ["driver_stats"])
        .to_arrow()
        .equals(one.training_set(probe, ["driver_stats"]).to_arrow())
    )
    watermark = many.registry.last_materialization(1).watermark
    assert watermark == ts(10)


def test_incremental_runs_with_nothing_new_commit_nothing(make_repo, open_store):
    store = open_store(make_repo(data={"data/trips.parquet": trips_table(ROWS)}))
    store.apply()
    assert len(store.materialize_incremental(ts(10))) == 1
    commits = len(store.registry.commits())
    for _ in range(3):  # a cron job with nothing new to do
        assert store.materialize_incremental(ts(20)) == []
    assert len(store.registry.commits()) == commits
    assert store.registry.last_materialization(1).watermark == ts(10)  # kept: late rows come next time


def test_apply_versions_and_metadata_only_edits(make_repo, open_store):
    root = make_repo(data={"data/trips.parquet": trips_table(ROWS)})
    store = open_store(root)
    plan = store.apply()
    assert [c.kind for c in plan.changes] == ["new"]
    assert open_store(root).apply().has_changes is False
    # A new docstring and a comment: metadata only, same version.
    (root / "features.py").write_text(
        BASIC_FEATURES.replace("Per-trip quality signals of a driver.", "Reworded.").replace(
            "return trips.select(", "# a comment\n    return trips.select("
        )
    )
    plan = open_store(root).apply()
    assert [(c.kind, c.new_version) for c in plan.changes] == [("metadata", 1)]
    # A code change: a new version; history keeps v1.
    (root / "features.py").write_text(BASIC_FEATURES.replace('pl.col("distance_km")', 'pl.col("distance_km") * 2'))
    store = open_store(root)
    plan = store.apply()
    assert [(c.kind, c.old_version, c.new_version) for c in plan.changes] == [("changed", 1, 2)]
    assert [v.version for v in store.registry.versions("driver_stats")] == [1, 2]
    # Back to the original code: back to v1, no v3.
    (root / "features.py").write_text(BASIC_FEATURES)
    plan = open_store(root).apply()
    assert [(c.kind, c.new_version) for c in plan.changes] == [("reverted", 1)]


def test_unapplied_code_is_refused(store):
    root = store.root
    (root / "features.py").write_text(BASIC_FEATURES.replace('pl.col("distance_km")', 'pl.col("distance_km") + 1'))
    fresh = fk.FeatureStore(root, progress=False)
    try:
        with pytest.raises(fk.NotAppliedError, match=r"driver_stats.*featurekit apply"):
            fresh.materialize(ts(0), ts(10))
        with pytest.raises(fk.NotAppliedError, match="driver_stats"):
            fresh.training_set(spine([(1, ts(1))]), ["driver_stats"])
        # A pinned version reads its own data whatever the repo's code is now.
        pinned = fresh.training_set(spine([(1, ts(1))]), ["driver_stats@v1:avg_trip_km"]).to_polars()
        assert pinned["avg_trip_km"].to_list() == [1.0]
    finally:
        fresh.close()


def test_pandas_function_and_sql_source(make_repo, open_store):
    features = """
    from datetime import timedelta
    import pandas as pd
    import featurekit as fk

    driver = fk.Entity("driver", join_keys=["driver_id"])
    src = fk.SqlSource("select driver_id, event_timestamp, distance_km from read_parquet('data/trips.parquet')")

    @fk.feature_view(entity=driver, source=src)
    def km(rows: pd.DataFrame) -> pd.DataFrame:
        out = rows[["driver_id", "event_timestamp"]].copy()
        out["km2"] = rows["distance_km"] * 2
        return out
    """
    root = make_repo(features, data={"data/trips.parquet": trips_table(ROWS)})
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(10))
    frame = store.training_set(spine([(1, ts(1)), (1, ts(30)), (3, ts(2))]), ["km"]).to_polars()
    assert frame["km2"].to_list() == [2.0, 4.0, None]  # no TTL: the latest value ever, never the future


def test_composite_keys_whose_concatenations_collide(make_repo, open_store):
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
            "a": pa.array([1, 12], pa.int64()),
            "b": ["23", "3"],
            "event_timestamp": pa.array([ts(0), ts(0)], pa.timestamp("us", tz="UTC")),
            "value": [1.0, 2.0],
        }
    )
    store = open_store(make_repo(features, data={"data/pairs.parquet": data}))
    store.apply()
    store.materialize(ts(0), ts(1))
    probe = pl.DataFrame(
        {"a": [12, 1, 1, None], "b": ["3", "23", "3", "23"], "event_timestamp": [ts(1)] * 4},
        schema_overrides={"event_timestamp": pl.Datetime("us", "UTC")},
    )
    assert store.training_set(probe, ["pair_value"]).to_polars()["value"].to_list() == [2.0, 1.0, None, None]


def test_empty_window_is_an_explicit_zero_row_result(store):
    (result,) = store.materialize(ts(100), ts(101))
    assert result.rows == 0
    assert result.source_rows == 0


def test_name_clash_between_views_needs_full_names(make_repo, open_store):
    features = (
        BASIC_FEATURES
        + """

@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=1))
def driver_recent(trips: pl.DataFrame) -> pl.DataFrame:
    return trips.select("driver_id", "event_timestamp", "created", conv_rate=pl.col("accepted"))
"""
    )
    store = open_store(make_repo(features, data={"data/trips.parquet": trips_table(ROWS)}))
    store.apply()
    store.materialize(ts(0), ts(10))
    probe = spine([(1, ts(2, 12))])
    with pytest.raises(fk.SchemaError, match="full_names=True"):
        store.training_set(probe, ["driver_stats:conv_rate", "driver_recent:conv_rate"])
    frame = store.training_set(
        probe, ["driver_stats:conv_rate", "driver_recent:conv_rate"], full_names=True
    ).to_polars()
    assert frame.columns[-2:] == ["driver_stats__conv_rate", "driver_recent__conv_rate"]
    assert frame.row(0)[-2:] == (0.5, 2)


def test_pandas_spine_with_date_labels_round_trips(store):
    frame = pd.DataFrame({"driver_id": [2], "event_timestamp": [pd.Timestamp(ts(1, 2))], "note": ["x"]})
    out = store.training_set(frame, ["driver_stats:conv_rate"]).to_pandas()
    assert out["note"].tolist() == ["x"]
    assert out["conv_rate"].tolist() == [0.5]


def test_materialize_rejects_future_and_reversed_windows(store):
    with pytest.raises(fk.WindowError, match="before end"):
        store.materialize(ts(5), ts(1))
    with pytest.raises(fk.WindowError, match="future"):
        store.materialize(ts(0), datetime.now(UTC) + timedelta(days=1))


def test_csv_and_glob_sources(make_repo, open_store):
    features = """
    from datetime import timedelta
    import polars as pl
    import featurekit as fk

    driver = fk.Entity("driver", join_keys=["driver_id"])
    trips = fk.FileSource("data/trips-*.csv", created_timestamp_field="created")

    @fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7))
    def csv_stats(trips: pl.DataFrame) -> pl.DataFrame:
        return trips.select("driver_id", "event_timestamp", "created", km=pl.col("distance_km"))
    """
    root = make_repo(features)
    (root / "data").mkdir()
    import pyarrow.csv as pcsv

    table = trips_table(ROWS)
    pcsv.write_csv(table.slice(0, 2), root / "data" / "trips-a.csv")
    pcsv.write_csv(table.slice(2), root / "data" / "trips-b.csv")
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(10))
    frame = store.training_set(spine([(1, ts(2)), (2, ts(3)), (3, ts(4))]), ["csv_stats"]).to_polars()
    assert frame["km"].to_list() == [2.0, 4.0, 9.0]


def test_relative_repo_path_with_a_glob_source(make_repo, monkeypatch):
    """Found by the benchmarks: a relative repo path doubled under DuckDB's search path for globs."""
    features = BASIC_FEATURES.replace('"data/trips.parquet"', '"data/trips_*.parquet"')
    root = make_repo(
        features, data={"data/trips_1.parquet": trips_table(ROWS[:2]), "data/trips_2.parquet": trips_table(ROWS[2:])}
    )
    monkeypatch.chdir(root.parent)
    with fk.FeatureStore(root.name, progress=False) as store:
        store.apply()
        (result,) = store.materialize(ts(0), ts(10))
    assert result.rows == len(ROWS)
