"""A spine given as a Parquet file: scanned by DuckDB in the join, pinned to the file planned with.

The file path must give exactly what the same rows as a frame give (values, order, digest), also
across row groups and for column types DuckDB and Arrow name differently; a file replaced while a
training set is built must fail instead of yielding a manifest of other rows; and a training set's
spine must not stay registered on the store's connection once the training set is gone.
"""

from __future__ import annotations

import gc
import os
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import featurekit as fk
from featurekit.manifest import load_manifest
from featurekit.offline.duckdb_engine import DuckDBEngine
from tests.conftest import BASIC_FEATURES, trips_table, ts

ROWS = [(d, ts(day), ts(day), 1, 2, float(day * 10 + d)) for day in range(5) for d in (1, 2, 3)]


@pytest.fixture
def store(make_repo, open_store):
    root = make_repo(BASIC_FEATURES, data={"data/trips.parquet": trips_table(ROWS)})
    opened = open_store(root)
    opened.apply()
    opened.materialize(ts(0), ts(6))
    return opened


def spine_table(rows: int) -> pa.Table:
    """A spine with the types a real one carries: a zoned time, a category, text with nulls."""
    frame = pd.DataFrame(
        {
            "driver_id": [1 + i % 4 for i in range(rows)],  # driver 4 has no features: nulls
            "event_timestamp": pd.Series([ts(i % 6, i % 24) for i in range(rows)]).dt.tz_convert("Europe/Berlin"),
            "segment": pd.Categorical(["a" if i % 3 else "b" for i in range(rows)]),
            "note": [None if i % 5 == 0 else f"n{i}" for i in range(rows)],
            "label": [i % 2 for i in range(rows)],
        }
    )
    return pa.Table.from_pandas(frame, preserve_index=False)


def test_a_file_spine_gives_what_its_frame_gives_across_row_groups(store, tmp_path):
    table = spine_table(1_000)
    path = tmp_path / "spine.parquet"
    pq.write_table(table, path, row_group_size=64)  # 16 row groups: order must hold across them
    from_file = store.training_set(path, ["driver_stats"])
    from_frame = store.training_set(pq.read_table(path), ["driver_stats"])
    assert from_file.to_arrow().equals(from_frame.to_arrow())
    assert from_file.to_arrow().column("label").to_pylist() == table.column("label").to_pylist()
    assert from_file.manifest_model.spine_digest == from_frame.manifest_model.spine_digest
    written = from_file.to_parquet(tmp_path / "out.parquet")
    assert pq.read_table(written).column("avg_trip_km").equals(from_frame.to_arrow().column("avg_trip_km"))


def test_the_digest_of_a_file_read_column_by_column_equals_the_frames(store, tmp_path):
    # Column names pyarrow could take for nested paths, a struct and nulls: the file's digest is
    # computed one column at a time and must still equal the digest of the same rows as a frame.
    table = spine_table(300)
    table = table.append_column("a.b", pa.array(range(300))).append_column(
        "a", pa.array([{"b": i % 7} if i % 11 else None for i in range(300)])
    )
    path = tmp_path / "spine.parquet"
    pq.write_table(table, path, row_group_size=128)
    from_file = store.training_set(path, ["driver_stats"]).manifest_model
    from_frame = store.training_set(table, ["driver_stats"]).manifest_model
    assert (from_file.spine_digest, from_file.spine_rows) == (from_frame.spine_digest, 300)
    assert from_file.spine_columns == table.column_names


def test_a_spine_column_named_like_duckdbs_row_number_is_just_a_column(store, tmp_path):
    table = spine_table(50).append_column("file_row_number", pa.array(range(100, 150)))
    pq.write_table(table, tmp_path / "spine.parquet")
    result = store.training_set(tmp_path / "spine.parquet", ["driver_stats"]).to_arrow()
    assert result.column("file_row_number").to_pylist() == list(range(100, 150))
    assert result.equals(store.training_set(pq.read_table(tmp_path / "spine.parquet"), ["driver_stats"]).to_arrow())
    assert result.to_pylist() == store.training_set(table, ["driver_stats"]).to_arrow().to_pylist()


def replace(path, table: pa.Table) -> None:
    """Write ``table`` over ``path`` the way tools do: a new file renamed into place."""
    fresh = path.with_name("new.parquet")
    pq.write_table(table, fresh)
    os.replace(fresh, path)


def test_a_spine_file_replaced_after_planning_fails_and_writes_nothing(store, tmp_path):
    path = tmp_path / "spine.parquet"
    pq.write_table(spine_table(30), path)
    planned = store.training_set(path, ["driver_stats"])
    replace(path, spine_table(40))
    with pytest.raises(fk.DataError, match=r"spine file .*spine\.parquet was replaced or changed"):
        planned.to_arrow()
    with pytest.raises(fk.DataError, match="was replaced or changed"):
        planned.to_parquet(tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()
    assert [p.name for p in tmp_path.iterdir() if "out" in p.name] == []  # no partial file left
    with pytest.raises(fk.DataError, match="was replaced or changed"):
        list(planned.iter_batches())


def test_the_manifest_of_a_replaced_spine_file_is_refused_not_made_up(store, tmp_path):
    path = tmp_path / "spine.parquet"
    pq.write_table(spine_table(30), path)
    planned = store.training_set(path, ["driver_stats"])
    planned.to_arrow()  # joined the first file
    stat = path.stat()
    pq.write_table(spine_table(30).slice(1), path)  # rewritten in place: size and time change
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(fk.DataError, match="was replaced or changed"):
        _ = planned.manifest


def test_a_manifest_from_a_file_spine_rebuilds_from_the_same_file(store, tmp_path):
    path = tmp_path / "spine.parquet"
    pq.write_table(spine_table(200), path, row_group_size=50)
    first = store.training_set(path, ["driver_stats"])
    written = first.to_parquet(tmp_path / "t1.parquet")
    store.materialize(ts(0), ts(6))  # a later data version: the manifest pins the old one
    again = store.training_set(path, manifest=written)
    assert again.to_arrow().equals(first.to_arrow())
    assert load_manifest(written).spine_rows == 200


def test_a_training_sets_spine_is_released_with_it(store, tmp_path):
    path = tmp_path / "spine.parquet"
    pq.write_table(spine_table(100), path)
    engine = store.engine
    assert isinstance(engine, DuckDBEngine)
    before = engine.open_joins
    kept = store.training_set(spine_table(100), ["driver_stats"])
    for spine in (path, spine_table(100), path, spine_table(50)):
        store.training_set(spine, ["driver_stats"]).to_arrow()  # dropped right away
    gc.collect()
    # A training set's join holds its cursor (and a frame spine registered on it) while the
    # training set lives, and only then.
    assert engine.open_joins == before + 1
    assert len(kept.to_arrow()) == 100  # and it still works
    del kept
    gc.collect()
    assert engine.open_joins == before


def test_releasing_after_the_store_closed_is_silent(make_repo, tmp_path, capfd):
    root = make_repo(BASIC_FEATURES, data={"data/trips.parquet": trips_table(ROWS)})
    with fk.FeatureStore(root, progress=False) as opened:
        opened.apply()
        opened.materialize(ts(0), ts(1) + timedelta(days=1))
        pq.write_table(spine_table(10), tmp_path / "spine.parquet")
        survivor = opened.training_set(tmp_path / "spine.parquet", ["driver_stats"])
        assert len(survivor.to_arrow()) == 10
    del survivor
    gc.collect()
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("", "")
