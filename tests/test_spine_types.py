"""The spine comes back in its own types; a column Parquet cannot hold is a clear error that leaves nothing behind."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import featurekit as fk
from tests.conftest import trips_table, ts


@pytest.fixture
def store(make_repo, open_store) -> fk.FeatureStore:
    rows = [(d, ts(0, h), ts(0, h), 1, 2, float(h)) for d in range(3) for h in range(5)]
    opened = open_store(make_repo(data={"data/trips.parquet": trips_table(rows)}))
    opened.apply()
    opened.materialize(ts(0), ts(1))
    return opened


def awkward_spine() -> pa.Table:
    """A spine whose columns DuckDB hands back in other types (an interval, a plain string, ...)."""
    minutes = [timedelta(minutes=m, microseconds=7) for m in (1, -2)] + [None]
    return pa.table(
        {
            "driver_id": pa.array([0, 1, 2], pa.int64()),
            "event_timestamp": pa.array([ts(0, 4), ts(0, 2), ts(0, 3)], pa.timestamp("ms", tz="UTC")).cast(
                pa.timestamp("ms", tz="Europe/Paris")
            ),
            "waited_us": pa.array(minutes, pa.duration("us")),
            "waited_ns": pa.array([1_001, -3_000, None], pa.duration("ns")),
            "waited_s": pa.array([timedelta(days=200_000), timedelta(seconds=-1), None], pa.duration("s")),
            "note": pa.array(["a", None, "é"], pa.large_string()),
            "tag": pa.array(["x", "y", "x"]).dictionary_encode(),
            # an ordered category with an unused value: order and categories are kept
            "size": pa.DictionaryArray.from_arrays(
                pa.array([2, 0, None], pa.int8()), pa.array(["low", "medium", "high"]), ordered=True
            ),
            "code": pa.array([b"ab", b"cd", None], pa.binary(2)),
            "seen": pa.array([[1], [], None], pa.large_list(pa.int64())),
            "day": pa.array([date(2026, 1, 1)] * 3, pa.date32()),
        }
    )


def test_the_spine_columns_come_back_in_the_types_they_were_given(store: fk.FeatureStore, tmp_path):
    spine = awkward_spine()
    built = store.training_set(spine, ["driver_stats"]).to_arrow()
    assert built.schema.names[: spine.num_columns] == spine.schema.names
    for given in spine.schema:
        assert built.schema.field(given.name).type == given.type, given.name
        assert built.column(given.name).to_pylist() == spine.column(given.name).to_pylist(), given.name
    assert built.column("size").chunk(0).dictionary.to_pylist() == ["low", "medium", "high"]
    # streamed batch by batch, and written to Parquet, the same
    streamed = pa.Table.from_batches(list(store.training_set(spine, ["driver_stats"]).iter_batches(2)))
    assert streamed.schema == built.schema  # (each batch's dictionary holds its own values)
    assert streamed.to_pylist() == built.to_pylist()
    written = pq.read_table(store.training_set(spine, ["driver_stats"]).to_parquet(tmp_path / "t.parquet"))
    for given in spine.schema:
        assert written.column(given.name).to_pylist() == spine.column(given.name).to_pylist(), given.name
    # the features are the same as for the plain spine
    plain = spine.set_column(1, "event_timestamp", spine.column("event_timestamp").cast(pa.timestamp("us", tz=UTC)))
    expected = store.training_set(plain.select(["driver_id", "event_timestamp"]), ["driver_stats"]).to_arrow()
    assert built.select(expected.schema.names[2:]).equals(expected.select(expected.schema.names[2:]))


def test_threads_sharing_a_store_get_the_spine_types_each_gets_alone(store: fk.FeatureStore):
    spine = awkward_spine()
    alone = store.training_set(spine, ["driver_stats"]).to_arrow()
    shared = store.training_set(spine, ["driver_stats"])  # one training set, converted by every thread too

    def build(i: int) -> pa.Table:
        own = store.training_set(spine, ["driver_stats"])
        batches = own.iter_batches(2) if i % 2 else shared.iter_batches(1)
        return pa.Table.from_batches(list(batches))

    with ThreadPoolExecutor(8) as pool:
        for built in pool.map(build, range(16)):
            assert built.schema == alone.schema
            assert built.to_pylist() == alone.to_pylist()


def test_a_category_split_over_chunks_comes_back_on_one_dictionary(store: fk.FeatureStore, tmp_path):
    # Two frames concatenated: each chunk has its own 100-value int8 dictionary, 200 values together.
    def part(first: int) -> pa.Table:
        labels = pa.array([f"c{first + i}" for i in range(100)]).dictionary_encode()
        codes = pa.DictionaryArray.from_arrays(labels.indices.cast(pa.int8()), labels.dictionary)
        times = pa.array([ts(0, 4)] * 100, pa.timestamp("us", tz="UTC"))
        return pa.table({"driver_id": pa.array([i % 3 for i in range(100)], pa.int64()), "event_timestamp": times,
                         "label": codes})  # fmt: skip

    spine = pa.concat_tables([part(0), part(100)])
    for source in (spine, tmp_path / "spine.parquet"):
        if not isinstance(source, pa.Table):
            pq.write_table(spine, source, row_group_size=100)
        built = store.training_set(source, ["driver_stats"]).to_arrow()
        assert built.column("label").to_pylist() == [f"c{i}" for i in range(200)]
        given = pq.read_schema(source).field("label").type if not isinstance(source, pa.Table) else None
        assert built.schema.field("label").type in (spine.schema.field("label").type, given, pa.string())


def test_a_duration_inside_a_struct_is_no_raw_error(store: fk.FeatureStore, tmp_path):
    nested = pa.array([{"wait": timedelta(minutes=1)}, None], pa.struct([("wait", pa.duration("us"))]))
    spine = pa.table(
        {"driver_id": [0, 1], "event_timestamp": pa.array([ts(0, 4)] * 2, pa.timestamp("us", tz="UTC")), "n": nested}
    )
    built = store.training_set(spine, ["driver_stats"]).to_arrow()  # in the engine's type, but whole
    assert built.num_rows == 2
    with pytest.raises(fk.SchemaError, match="cannot be written to Parquet"):
        store.training_set(spine, ["driver_stats"]).to_parquet(tmp_path / "t.parquet")


@pytest.mark.parametrize("computed", [False, True], ids=["streamed", "in_memory"])
@pytest.mark.parametrize("folder", [False, True], ids=["file", "folder"])
def test_a_column_parquet_cannot_hold_is_a_schema_error_and_the_old_output_stays(
    store: fk.FeatureStore, tmp_path, computed: bool, folder: bool
):
    spine = pa.table(
        {
            "driver_id": pa.array([0, 1], pa.int64()),
            "event_timestamp": pa.array([ts(0, 4)] * 2, pa.timestamp("us", tz="UTC")),
            "gap": pa.array([pa.MonthDayNano([1, 2, 3_000]), None], pa.month_day_nano_interval()),
        }
    )
    ok = pa.table({"kept": [1]})
    out = tmp_path / "written"
    out.mkdir()
    target = out / "out"
    if folder:
        store.training_set(spine.drop_columns(["gap"]), ["driver_stats"]).to_parquet(f"{target}/")
        before = sorted(p.name for p in target.iterdir())
    else:
        pq.write_table(ok, target)
    training = store.training_set(spine, ["driver_stats"])
    if computed:
        assert training.to_arrow().column("gap").to_pylist() == spine.column("gap").to_pylist()
    with pytest.raises(fk.SchemaError, match=r"gap \(month_day_nano_interval\).*cast them in the spine"):
        training.to_parquet(f"{target}/" if folder else target)
    if folder:
        assert sorted(p.name for p in target.iterdir()) == before
        assert pq.read_table(target).num_rows == 2
    else:
        assert pq.read_table(target).equals(ok)  # the file written before is intact
    assert [p.name for p in out.iterdir()] == ["out"]  # no partial file or folder
