"""The serving log loses nothing while not full, never blocks a lookup, survives SIGKILL, and
``consistency`` recomputes what was served through the training path."""

from __future__ import annotations

import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC
from pathlib import Path

import duckdb
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import featurekit as fk
from featurekit.cli import cli
from featurekit.quality.serving_log import (
    CHUNK_ROWS,
    FEATURES,
    REQUEST_ID,
    SERVED,
    SERVED_AT,
    log_columns,
    log_files,
    read_log,
)
from tests.conftest import BASIC_FEATURES, trips_table, ts
from tests.redis_server import RedisServer, redis_config
from tests.server_helpers import AT, READ_WRITE, SERVER_FEATURES, TRIPS, items_table, start_server

ROWS = [(1, ts(0), ts(0), 1, 2, 1.0), (2, ts(1), ts(1), 1, 4, 2.0), (3, ts(1), ts(1), 3, 4, 0.5)]
DATA = {"data/trips.parquet": trips_table(ROWS)}


def log_yaml(**settings: object) -> str:
    pairs = ", ".join(f"{k}: {v}" for k, v in {"path": "slog", "sample": 1.0, **settings}.items())
    return f"online:\n  log: {{{pairs}}}\n"


def materialized(open_store, root: Path) -> fk.FeatureStore:
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(2))
    return store


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("{path: slog, sample: 0}", "sample"),
        ("{path: slog, sample: 1.5}", "sample"),
        ("{path: ../elsewhere}", "leaves the repo"),
        ("{path: /tmp/outside-any-repo}", "outside the repo"),
        ("{path: slog, every: 3}", "every"),
        ("{path: slog, queue_rows: 0}", "queue_rows"),
    ],
)
def test_bad_log_settings_are_a_config_error_naming_the_setting(make_repo, settings, message):
    root = make_repo(config=f"online:\n  log: {settings}\n")
    with pytest.raises(fk.ConfigError, match=message):
        fk.FeatureStore(root, progress=False)


@pytest.mark.parametrize("online", ["", "  type: memory\n", "  type: redis\n"])
def test_every_online_store_type_takes_the_log_setting(make_repo, online):
    root = make_repo(config=f"online:\n{online}  log: {{path: slog, sample: 0.5}}\n")
    with fk.FeatureStore(root, progress=False) as store:
        assert store.config.online.log is not None
        assert store.config.online.log.sample == 0.5


def test_without_the_setting_nothing_is_logged(make_repo, open_store):
    store = materialized(open_store, make_repo(data=DATA))
    store.online_features({"driver_id": [1]}, ["driver_stats"], at=ts(3))
    assert store.serving_log is None
    assert not (store.root / "serving_log").exists()


# -- what a log holds ---------------------------------------------------------------------------


def test_each_served_entity_is_a_row_with_keys_instant_versions_and_features(make_repo, open_store):
    store = materialized(open_store, make_repo(data=DATA, config=log_yaml()))
    served = store.online_features({"driver_id": [1, 2, 77]}, ["driver_stats"], at=ts(3)).to_dict()
    store.online_features({"driver_id": [2]}, ["driver_stats:conv_rate"], at=ts(4))
    assert store.serving_log is not None
    assert store.serving_log.flush()
    log = read_log(store.root / "slog").sort_by([(SERVED_AT, "ascending"), ("driver_id", "ascending")])
    assert log.num_rows == 4
    assert log.column("driver_id").to_pylist() == [1, 2, 77, 2]
    assert log.column("driver_stats:conv_rate").to_pylist() == [*served["conv_rate"], 0.25]
    assert log.column("driver_stats:avg_trip_km").to_pylist() == [*served["avg_trip_km"], None]
    assert log.column(SERVED_AT).to_pylist() == [ts(3)] * 3 + [ts(4)]
    assert log.column(FEATURES).to_pylist() == [["driver_stats"]] * 3 + [["driver_stats:conv_rate"]]
    assert log.column(SERVED).to_pylist()[0] == ["driver_stats@v1:conv_rate", "driver_stats@v1:avg_trip_km"]
    assert len(set(log.column(REQUEST_ID).to_pylist())) == 2  # one id per request
    assert read_log(store.root / "slog", window=(ts(3, 12), ts(5))).num_rows == 1
    # Each file keeps min/max statistics of what a reader filters by: the instant and the keys.
    (file, *_) = log_files(store.root / "slog")
    group = pq.ParquetFile(file).metadata.row_group(0)
    with_statistics = {group.column(i).path_in_schema for i in range(group.num_columns) if group.column(i).is_stats_set}
    assert with_statistics == {SERVED_AT, "driver_id"}
    assert fk.read_log is read_log  # public
    with pytest.raises(fk.WindowError, match="before its end"):
        read_log(store.root / "slog", window=(ts(5), ts(3)))


def test_a_file_of_many_buffered_chunks_holds_every_row_in_the_order_served(make_repo, open_store):
    # Lookups append to chunks of CHUNK_ROWS rows (so a lookup never waits for a long list to
    # grow); the writer joins them into one file (one per feature list), every row in order.
    store = materialized(open_store, make_repo(data=DATA, config=log_yaml(flush_rows=100_000, flush_s=600)))
    keys, conv, calls = [], [], 3 * CHUNK_ROWS // 2
    for call in range(calls):
        entities = [1 + call % 3, 77][: 1 + call % 2]
        conv += store.online_features({"driver_id": entities}, ["driver_stats"], at=ts(3)).to_dict()["conv_rate"]
        keys += entities
    log = store.serving_log
    assert log is not None
    assert log.flush()
    assert log.counters().files == 1
    (file,) = log_files(store.root / "slog")
    table = read_log(file)
    assert table.num_rows == len(keys) > 2 * CHUNK_ROWS
    assert table.column("driver_id").to_pylist() == keys
    assert table.column("driver_stats:conv_rate").to_pylist() == conv
    ids = table.column(REQUEST_ID).to_pylist()
    assert len(set(ids)) == calls
    assert ids[1] == ids[2] != ids[0]  # the second call served two entities
    assert set(map(tuple, table.column(FEATURES).to_pylist())) == {("driver_stats",)}
    assert set(map(tuple, table.column(SERVED).to_pylist())) == {
        ("driver_stats@v1:conv_rate", "driver_stats@v1:avg_trip_km")
    }
    # In the file itself the two name lists are dictionary-encoded JSON texts: each distinct list
    # is stored once, and any reader can parse them (here DuckDB, as a user querying the files).
    raw = pq.read_table(file, columns=[FEATURES, SERVED])
    assert pq.ParquetFile(file).schema_arrow.field(FEATURES).type == pa.dictionary(pa.int32(), pa.string())
    assert raw.column(FEATURES).combine_chunks().dictionary.to_pylist() == ['["driver_stats"]']
    parsed = duckdb.sql(f"SELECT DISTINCT CAST({SERVED} AS VARCHAR[]) AS s FROM read_parquet('{file}')").fetchall()
    assert parsed == [(["driver_stats@v1:conv_rate", "driver_stats@v1:avg_trip_km"],)]


def _log_buffer(schema, outputs):
    """A log buffer of a recipe serving ``outputs`` (names of ``schema``) of view ``v`` for key ``driver_id``."""
    from types import SimpleNamespace

    from featurekit.quality import serving_log

    recipe = SimpleNamespace(
        schema=schema, entity_keys=["driver_id"], outputs=[(n, n) for n in outputs],
        served=[("v", 1, n) for n in outputs], request={},
    )  # fmt: skip
    return serving_log._Buffer(recipe)  # type: ignore[arg-type]


def _add(buffer, columns, at_us, number):
    picked = buffer.pick(columns)
    buffer.add(picked, at_us, number, ("v",), None)


def test_files_of_the_earlier_layout_with_lists_in_the_file_read_as_before(make_repo, open_store):
    # Before the names were JSON texts, a file held `__fk_features` / `__fk_served` as lists of
    # strings: read_log combines such files with new ones and returns lists for both.
    store = materialized(open_store, make_repo(data=DATA, config=log_yaml()))
    store.online_features({"driver_id": [1]}, ["driver_stats:conv_rate"], at=ts(3))
    assert store.serving_log is not None
    assert store.serving_log.flush()
    folder = store.root / "slog"
    (new_file,) = log_files(folder)
    earlier = read_log(new_file)
    pq.write_table(earlier, folder / "serving-19700101T000000-1-earlier-000001.parquet")  # lists in the file
    both = read_log(folder)
    assert both.num_rows == 2
    assert both.column(FEATURES).to_pylist() == [["driver_stats:conv_rate"]] * 2
    assert both.column(SERVED).to_pylist() == [["driver_stats@v1:conv_rate"]] * 2
    # A file whose name column is not JSON lists is named, not a raw error.
    broken = earlier.set_column(earlier.schema.get_field_index(FEATURES), FEATURES, pa.array(["not json"]))
    pq.write_table(broken, folder / "serving-19700101T000000-1-broken-000001.parquet")
    with pytest.raises(fk.StorageError, match=r"broken-000001.parquet: its __fk_features column is not JSON"):
        read_log(folder)


def test_full_chunks_are_converted_and_the_table_holds_every_value_as_served(monkeypatch):
    # The lookup that starts a chunk converts the full one to Arrow; the writer joins them. A
    # value of the wrong type leaves its chunk unconverted (the lookup goes on) and the writer's
    # conversion refuses it, as it refuses any, so the rows are counted failed.
    import math

    import pyarrow as pa

    from featurekit.quality import serving_log

    monkeypatch.setattr(serving_log, "CHUNK_ROWS", 2)
    schema = pa.schema([("driver_id", pa.int64()), ("x", pa.float64()), ("name", pa.string())])
    buffer = _log_buffer(schema, ["x", "name"])
    served = [
        ([1], [1.5], ["a"]), ([2, 3], [None, math.nan], [None, "b"]), ([4], [2.0], ["c"]),
        ([5], [0.25], ["d"]), ([6], [None], [None]), ([7], [3.0], ["e"]),
    ]  # fmt: skip
    for number, (keys, xs, names) in enumerate(served):
        _add(buffer, {"driver_id": keys, "x": xs, "name": names}, 1_000 + number, number)
    assert [c.arrow is not None for c in buffer.chunks] == [True, True, False]  # 3, 2 and 2 rows
    table = buffer.table("token")
    assert table.column("driver_id").to_pylist() == [k for row in served for k in row[0]]
    shown = [None if v is None else ("nan" if math.isnan(v) else v) for v in table.column("v:x").to_pylist()]
    assert shown == [1.5, None, "nan", 2.0, 0.25, None, 3.0]
    assert table.column("v:name").to_pylist() == [n for row in served for n in row[2]]
    assert table.column(SERVED_AT).to_pylist()[-1] == pa.scalar(1_005, pa.timestamp("us", tz="UTC")).as_py()
    assert table.column(REQUEST_ID).to_pylist()[:3] == ["token-0", "token-1", "token-1"]
    _add(buffer, {"driver_id": [8], "x": ["text"], "name": ["f"]}, 1_006, 6)
    _add(buffer, {"driver_id": [9], "x": [4.0], "name": ["g"]}, 1_007, 7)
    _add(buffer, {"driver_id": [10], "x": [5.0], "name": ["h"]}, 1_008, 8)
    assert buffer.chunks[-2].arrow is None
    assert [row[3:] for row in buffer.chunks[-2].rows] == [(8, "text", "f"), (9, 4.0, "g")]
    with pytest.raises(pa.ArrowException):
        buffer.table("token")


def _nan_shown(values):
    return ["nan" if isinstance(v, float) and v != v else v for v in values]  # noqa: PLR0124 -- NaN test


_VALUES = {
    "f64": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    "f32": st.one_of(st.none(), st.floats(width=32, allow_nan=False)),
    "i32": st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
    "s": st.one_of(st.none(), st.text(max_size=5)),
    "t": st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 10**6), *_VALUES.values()), min_size=1, max_size=3), min_size=1, max_size=12
    )
)
def test_the_log_table_holds_each_served_value_with_its_registered_type(responses):
    # Whatever the rows of a chunk (tuples converted to one struct array), each column of the
    # table equals the values served, in order, converted column by column to the registered type.
    import pyarrow as pa

    from featurekit.quality import serving_log

    types = {
        "f64": pa.float64(),
        "f32": pa.float32(),
        "i32": pa.int32(),
        "s": pa.string(),
        "t": pa.timestamp("us", tz="UTC"),
    }
    schema = pa.schema([("driver_id", pa.int64()), *types.items()])
    buffer = _log_buffer(schema, list(types))
    original = serving_log.CHUNK_ROWS
    serving_log.CHUNK_ROWS = 4  # several chunks, some converted by an add and one by the table
    try:
        for number, rows in enumerate(responses):
            _add(buffer, dict(zip(schema.names, map(list, zip(*rows, strict=True)), strict=True)), 10 * number, number)
    finally:
        serving_log.CHUNK_ROWS = original
    table = buffer.table("t0")
    flat = [row for rows in responses for row in rows]
    assert table.num_rows == buffer.rows == len(flat)
    for position, name in enumerate(schema.names):
        column = name if name == "driver_id" else f"v:{name}"
        expected = pa.array([row[position] for row in flat], schema.field(name).type)
        logged = table.column(column).combine_chunks()
        assert logged.type == expected.type, name
        assert _nan_shown(logged.to_pylist()) == _nan_shown(expected.to_pylist()), name
    expected_at = [10 * number for number, rows in enumerate(responses) for _ in rows]
    assert table.column(SERVED_AT).cast(pa.int64()).to_pylist() == expected_at
    ids = [f"t0-{number}" for number, rows in enumerate(responses) for _ in rows]
    assert table.column(REQUEST_ID).to_pylist() == ids


def test_two_versions_of_a_view_read_side_by_side_get_a_column_each():
    served = [("v", 1, "x"), ("v", 2, "x"), ("w", 1, "y")]
    assert log_columns(served) == ["v@v1:x", "v@v2:x", "w:y"]


def test_sampling_is_by_request(make_repo, open_store):
    store = materialized(open_store, make_repo(data=DATA, config=log_yaml(sample=0.3)))
    for _ in range(400):
        store.online_features({"driver_id": [1, 2]}, ["driver_stats"], at=ts(3))
    assert store.serving_log is not None
    counters = store.serving_log.counters()
    assert counters.logged % 2 == 0  # both entities of a sampled request, or neither
    assert 160 < counters.logged < 320  # 30% of 400 requests x 2 rows, with room for chance


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_count_in_equals_count_out_from_many_threads(make_repo, open_store, request, backend):
    config = log_yaml(flush_rows=7, flush_s=0.05)
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        config = redis_config(server.url) + config.removeprefix("online:\n")
    store = materialized(open_store, make_repo(data=DATA, config=config))
    failures: list[BaseException] = []

    def serve(worker: int) -> None:
        try:
            for call in range(150):
                keys = [1 + (worker + call) % 3] * (1 + call % 3)
                store.online_features({"driver_id": keys}, ["driver_stats"], at=ts(3))
        except BaseException as exc:  # noqa: BLE001 -- reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=serve, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    sent = 4 * sum(1 + call % 3 for call in range(150))
    log = store.serving_log
    assert log is not None
    assert log.flush()
    counters = log.counters()
    assert (counters.logged, counters.written, counters.dropped, counters.pending) == (sent, sent, 0, 0)
    assert read_log(store.root / "slog").num_rows == sent
    assert len(set(read_log(store.root / "slog").column(REQUEST_ID).to_pylist())) == 4 * 150


def test_a_full_queue_drops_and_counts_and_the_lookup_does_not_wait(make_repo, open_store):
    """A writer that writes nothing for ten minutes: the queue fills, later rows are dropped."""
    stalled = materialized(open_store, make_repo(data=DATA, config=log_yaml(queue_rows=50, flush_s=600)))
    plain = materialized(open_store, make_repo(data=DATA))

    def timings(store: fk.FeatureStore) -> list[float]:
        samples = []
        for call in range(1500):
            began = time.perf_counter()
            store.online_features({"driver_id": [1 + call % 3]}, ["driver_stats"], at=ts(3))
            samples.append(time.perf_counter() - began)
        return samples

    timings(plain)  # warm both
    full, off = [], []
    for _ in range(2):  # interleaved, so a busy machine slows both alike
        full += timings(stalled)
        off += timings(plain)
    log = stalled.serving_log
    assert log is not None
    counters = log.counters()
    total = 2 * 1500
    assert (counters.logged, counters.dropped, counters.pending, counters.written) == (50, total - 50, 50, 0)
    assert statistics.median(full) < 2 * statistics.median(off) + 50e-6
    assert max(full) < 0.5  # never waits for the writer
    stalled.close()  # writes what is waiting
    assert read_log(stalled.root / "slog").num_rows == 50


def test_a_feature_list_whose_only_rows_were_dropped_writes_no_file(make_repo, open_store):
    store = materialized(open_store, make_repo(data=DATA, config=log_yaml(queue_rows=2, flush_s=600)))
    store.online_features({"driver_id": [1, 2]}, ["driver_stats"], at=ts(3))
    store.online_features({"driver_id": [1]}, ["driver_stats:conv_rate"], at=ts(3))  # no room: dropped
    log = store.serving_log
    assert log is not None
    store.close()  # the writer has written every buffer and stopped
    counters = log.counters()
    assert (counters.logged, counters.dropped, counters.written, counters.files) == (2, 1, 2, 1)
    assert len(log_files(store.root / "slog")) == 1
    assert read_log(store.root / "slog").column(FEATURES).to_pylist() == [["driver_stats"]] * 2


def test_a_write_error_counts_the_rows_as_failed_and_the_lookups_go_on(make_repo, open_store):
    root = make_repo(data=DATA, config=log_yaml(flush_rows=1))
    store = materialized(open_store, root)
    store.online_features({"driver_id": [1]}, ["driver_stats"], at=ts(3))
    log = store.serving_log
    assert log is not None
    assert log.flush()
    for file in log_files(root / "slog"):
        file.unlink()
    (root / "slog").rmdir()
    (root / "slog").write_text("a file where the log's folder was: nothing can be created in it")
    store.online_features({"driver_id": [2]}, ["driver_stats"], at=ts(3))
    log.flush()
    counters = log.counters()
    assert (counters.logged, counters.written, counters.failed, counters.pending) == (2, 1, 1, 0)
    assert counters.last_error is not None
    assert "serving log" in counters.last_error


# -- durability -------------------------------------------------------------------------------

LOGGING_CHILD = """
import sys
import featurekit as fk
from tests.conftest import ts

with fk.FeatureStore(sys.argv[1], progress=False) as store:
    print("ready", flush=True)
    while True:
        store.online_features({"driver_id": [1, 2, 3]}, ["driver_stats"], at=ts(3))
"""


@pytest.mark.slow
def test_a_process_killed_mid_logging_leaves_only_readable_files(make_repo, open_store, tmp_path):
    root = make_repo(data=DATA, config=log_yaml(flush_rows=300, flush_s=0.02))
    materialized(open_store, root).close()
    script = tmp_path / "child.py"  # outside the repo, whose modules are its definitions
    script.write_text(textwrap.dedent(LOGGING_CHILD))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    written = 0
    for kill in range(4):
        child = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE, env=env)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 30
        while len(log_files(root / "slog")) < written + 3 + kill and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.013 * kill)  # land at different points of the writer's cycle
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        files = log_files(root / "slog")
        assert len(files) > written
        for file in files:
            table = pq.read_table(file)  # every visible file is whole
            assert table.num_rows % 3 == 0  # whole requests
        written = len(files)
    (root / "slog" / ".serving-torn.parquet.tmp").write_bytes(b"PAR1 half a file")  # what a kill mid-write leaves
    log = read_log(root / "slog")
    assert log.num_rows == sum(pq.read_metadata(f).num_rows for f in log_files(root / "slog"))
    assert set(log.column("driver_id").to_pylist()) == {1, 2, 3}


# -- consistency --------------------------------------------------------------------------------


def demo_store(make_repo, open_store, extra: str = "") -> fk.FeatureStore:
    data = {"data/trips.parquet": trips_table(TRIPS), "data/items.parquet": items_table()}
    store = open_store(make_repo(SERVER_FEATURES, data=data, config=log_yaml() + extra))
    store.apply()
    store.materialize(ts(0), ts(3, 12))
    return store


def serve_traffic(store: fk.FeatureStore) -> None:
    for hours in (0, 5, 30):
        at = ts(3, 12 + hours)
        store.online_features({"driver_id": [1, 2, 3, 99]}, ["driver_stats", "driver_window"], at=at)
        store.online_features({"driver_id": [1, 2]}, ["trip_risk"], request={"trip_km": [3.0, 8.5]}, at=at)
        store.online_features({"driver_id": [3]}, ["fraud_v1"], request={"trip_km": 1.5}, at=at)
        store.online_features({"item_id": [1, 2, 2**63 - 1, 4]}, ["typed"], at=at)


def test_consistency_is_complete_on_a_repo_with_every_kind_of_view_and_value(make_repo, open_store):
    store = demo_store(make_repo, open_store)
    serve_traffic(store)
    report = store.consistency()
    assert report.ok, str(report)
    assert report.rows == 3 * (4 + 2 + 1 + 4)
    features = {f.feature for f in report.features}
    assert {"driver_stats:conv_rate", "driver_window:distance_km_sum_7d", "trip_risk:risk", "typed:info"} <= features
    frame = report.to_pandas()
    assert (frame["match_rate"] == 1.0).all()
    assert (frame[["missing", "extra", "mismatched"]] == 0).all().all()
    assert frame.set_index("feature").loc["driver_stats:conv_rate", "smape"] == 0.0
    by_name = {f.feature: f for f in report.features}
    assert by_name["typed:name"].smape is None  # not numeric
    assert by_name["typed:exact"].smape == 0.0


def test_consistency_finds_values_changed_added_and_removed_behind_the_stores_back(make_repo, open_store):
    store = demo_store(make_repo, open_store)
    store.push("driver_stats", trips_table([(1, ts(3, 13), ts(3, 13), 1, 1, 9.0)]))  # online only: changed
    store.push("driver_stats", trips_table([(5, ts(3, 13), ts(3, 13), 1, 2, 4.0)]))  # online only: new
    online = sqlite3.connect(store.root / ".featurekit" / "online.db")
    with online:
        online.execute("DELETE FROM driver_stats__v1 WHERE __fk_key = ?", (2,))  # gone from serving
    online.close()
    store.online_features({"driver_id": [1, 2, 3, 5]}, ["driver_stats:avg_trip_km"], at=ts(3, 14))
    report = store.consistency(features=["driver_stats:avg_trip_km"])
    (feature,) = report.features
    assert (feature.rows, feature.matched, feature.mismatched, feature.extra, feature.missing) == (4, 1, 1, 1, 1)
    assert feature.match_rate == 0.25
    assert not report.ok
    changed = next(m for m in feature.examples if m.entity == {"driver_id": 1})
    assert (changed.training, changed.serving) == (2.0, 9.0)
    assert feature.smape == pytest.approx((2 * 7 / 11 + 0) / 2)  # drivers 1 and 3 have values on both sides
    assert "mismatched 1" in str(report)
    by_view = store.consistency(features=["driver_stats"])  # a view: all its logged features
    assert [f.feature for f in by_view.features] == ["driver_stats:avg_trip_km"]


def test_consistency_pins_the_served_versions_after_a_new_apply(make_repo, open_store):
    store = materialized(open_store, make_repo(data=DATA, config=log_yaml()))
    store.online_features({"driver_id": [1, 2, 3]}, ["driver_stats"], at=ts(3))
    store.close()  # writes the log
    (store.root / "features.py").write_text(
        textwrap.dedent(BASIC_FEATURES).replace('pl.col("distance_km")', 'pl.col("distance_km") * 1000')
    )
    reopened = open_store(store.root)
    reopened.apply()  # driver_stats v2: other values, never materialized
    report = reopened.consistency(log=store.root / "slog")
    assert report.ok, str(report)
    assert {f.served_from for f in report.features} == {"driver_stats@v1:conv_rate", "driver_stats@v1:avg_trip_km"}


def test_consistency_through_the_http_server_and_its_metrics(make_repo, open_store):
    store = demo_store(make_repo, open_store, extra="  refresh_s: 0\n")
    root = store.root
    store.close()
    server = start_server(root, "--no-auth")
    try:
        for call in range(12):
            body = {"entities": {"driver_id": [1, 2, 3]}, "features": ["driver_stats"], "at": AT.isoformat()}
            assert httpx.post(f"{server.url}/v1/features", json=body, timeout=10).status_code == 200, call
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {READ_WRITE}"}).text
            if 'featurekit_serving_log_rows_total{outcome="written"} 36' in text:
                break
            time.sleep(0.1)
        assert 'featurekit_serving_log_rows_total{outcome="logged"} 36' in text
        assert 'featurekit_serving_log_rows_total{outcome="written"} 36' in text
        assert "featurekit_serving_log_pending_rows 0" in text
    finally:
        server.stop()
    report = open_store(root).consistency()
    assert report.rows == 36
    assert report.ok, str(report)


def test_the_cli_reports_and_exits_1_on_a_mismatch(make_repo, open_store):
    store = materialized(open_store, make_repo(data=DATA, config=log_yaml()))
    store.online_features({"driver_id": [1, 2]}, ["driver_stats"], at=ts(3))
    store.close()
    runner = CliRunner()
    done = runner.invoke(cli, ["--repo", str(store.root), "consistency", "--start", "2026-01-04"])
    assert done.exit_code == 0, done.output
    assert "match 100.00% of 2" in done.output
    store = open_store(store.root)
    store.push("driver_stats", trips_table([(1, ts(3, 1), ts(3, 1), 1, 1, 9.0)]))
    store.online_features({"driver_id": [1]}, ["driver_stats"], at=ts(3, 2))
    store.close()
    done = runner.invoke(cli, ["--repo", str(store.root), "consistency", "-f", "driver_stats:avg_trip_km"])
    assert done.exit_code == 1
    assert "training 2.0 != serving 9.0" not in done.output  # driver 1's trained value is 1.0
    assert "training 1.0 != serving 9.0" in done.output
    done = runner.invoke(cli, ["--repo", str(store.root), "consistency", "--log", str(store.root / "nowhere")])
    assert done.exit_code == 1
    assert "no serving log" in done.output
