"""Profiles against a direct DuckDB computation over the committed data, through window replacement."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featurekit as fk
from featurekit.cli import cli
from featurekit.manifest import load_manifest
from featurekit.offline.engine import local_path
from featurekit.quality import data_profiles
from featurekit.quality.inspection import BACKGROUND_ROWS, Inspection
from featurekit.quality.profile import PERCENTILES, ColumnProfile, Profile
from featurekit.quality.profiling import ProfileState, RowsProfiler, choose_edges, merge, profile_table
from featurekit.quality.sketches import COUNTS_CAP, DISTINCT_CAP, RELATIVE_ERROR
from featurekit.registry import Materialization
from featurekit.transform import run_view
from tests.conftest import T0, ts

FEATURES = """
from datetime import timedelta
import polars as pl
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource("data/trips.parquet", timestamp_field="event_timestamp", created_timestamp_field="created")

@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7))
def driver_stats(trips: pl.DataFrame) -> pl.DataFrame:
    return trips.select(
        "driver_id", "event_timestamp", "created",
        conv_rate=pl.col("accepted") / pl.col("offered"),
        km=pl.col("distance_km"),
        offered=pl.col("offered"),
        city=pl.col("city"),
        long_trip=pl.col("distance_km") > 10.0,
    )
"""
COLUMNS = ["conv_rate", "km", "offered", "city", "long_trip"]
CITIES = ["berlin", "paris", "rome", "oslo", "lima", None]


def trips(seed: int, days: tuple[float, float], rows: int, *, scale: float = 1.0) -> pa.Table:
    """Random trips in ``[T0 + days[0], T0 + days[1])``: NaN rates (0 / 0), null distances and cities."""
    rng = np.random.default_rng(seed)
    start = np.datetime64(T0.replace(tzinfo=None), "us").astype(np.int64)
    event = start + rng.integers(int(days[0] * 86_400e6), int(days[1] * 86_400e6), rows)
    offered = rng.integers(0, 12, rows)
    accepted = np.minimum(rng.integers(0, 12, rows), offered)
    distance = rng.lognormal(1.5, 0.8, rows) * scale
    cities = rng.choice(np.array(CITIES, dtype=object), rows)
    return pa.table(
        {
            "driver_id": rng.integers(0, 200, rows),
            "event_timestamp": pa.array(event, pa.timestamp("us", tz="UTC")),
            "created": pa.array(event + 1_000_000, pa.timestamp("us", tz="UTC")),
            "accepted": accepted,
            "offered": offered,
            "distance_km": pa.array(distance, mask=rng.random(rows) < 0.05),
            "city": pa.array(list(cities), pa.string()),
        }
    )


def write_source(root: Path, *parts: pa.Table) -> None:
    pq.write_table(pa.concat_tables(parts), root / "data" / "trips.parquet")


# -- the oracle: DuckDB over the committed files -------------------------------------------------


def committed(store: fk.FeatureStore, view: str = "driver_stats") -> tuple[list[str], dict[str, tuple[float, ...]]]:
    version = store.registry.active()[view].version
    last = store.registry.last_materialization(version.id)
    assert last is not None
    files = [local_path(f) for f in store.tables.files(view, version.version, last.data_version)]
    edges = json.loads(store.registry.view_quality(version.id, "edges") or '{"columns": {}}')["columns"]
    return files, {k: tuple(v) for k, v in edges.items()}


def oracle(files: list[str], column: str, edges: tuple[float, ...], window: tuple[Any, Any] | None = None) -> dict:
    """Every statistic of one column by SQL over the Parquet files."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    where = "TRUE" if window is None else "event_timestamp >= ? AND event_timestamp < ?"
    # Into a table first: DuckDB 2.0.1 prunes row groups by statistics that leave NaNs out, so
    # `WHERE isnan(x)` pushed into a Parquet scan finds none.
    con.execute(f"CREATE TABLE committed AS SELECT * FROM read_parquet(?) WHERE {where}", [files, *(window or ())])
    params: list[Any] = []
    rows = "committed"
    kind = con.execute(f"SELECT typeof({column}) FROM {rows} LIMIT 1", params).fetchone()
    dtype = kind[0] if kind else "DOUBLE"
    floating = dtype in ("DOUBLE", "FLOAT")
    value = f"(SELECT {column} AS v FROM {rows} WHERE {column} IS NOT NULL"
    value += " AND NOT isnan(v))" if floating else ")"
    found: dict[str, Any] = {}
    found["rows"], found["nulls"] = con.execute(
        f"SELECT count(*), count(*) - count({column}) FROM {rows}", params
    ).fetchone()
    found["nans"] = (
        con.execute(f"SELECT count(*) FROM {rows} WHERE isnan({column})", params).fetchone()[0] if floating else 0
    )
    found["distinct"] = con.execute(f"SELECT count(DISTINCT v) FROM {value}", params).fetchone()[0]
    if dtype in ("VARCHAR", "BOOLEAN"):
        top = con.execute(
            f"SELECT CAST(v AS VARCHAR) AS s, count(*) AS n FROM {value} GROUP BY s ORDER BY n DESC, s LIMIT 100",
            params,
        ).fetchall()
        found["top"] = tuple((str(s), int(n)) for s, n in top)
        return found
    stats = con.execute(
        f"SELECT count(v), min(v), max(v), avg(v), stddev_samp(v), quantile_cont(v, ?) FROM {value}",
        [[p / 100 for p in PERCENTILES], *params],
    ).fetchone()
    found |= dict(zip(["count", "min", "max", "mean", "std", "quantiles"], stats, strict=True))
    found["sorted"] = np.sort(np.asarray([r[0] for r in con.execute(f"SELECT v FROM {value}", params).fetchall()]))
    if edges:
        cases = " ".join(f"WHEN v < ? THEN {i}" for i in range(len(edges)))
        bins = con.execute(
            f"SELECT CASE {cases} ELSE {len(edges)} END AS b, count(*) FROM {value} GROUP BY b",
            [*edges, *params],
        ).fetchall()
        counts = dict(bins)
        found["histogram"] = tuple(int(counts.get(i, 0)) for i in range(len(edges) + 1))
    return found


def assert_column(column: ColumnProfile, expected: dict) -> None:
    """Exact statistics exactly, mean and std to float rounding, percentiles within their bound."""
    where = column.name
    assert (column.rows, column.nulls, column.nans) == (expected["rows"], expected["nulls"], expected["nans"]), where
    if expected["distinct"] < DISTINCT_CAP:
        assert column.distinct == expected["distinct"], where
    else:
        assert abs(column.distinct - expected["distinct"]) <= 0.07 * expected["distinct"], where  # 3 sigma
    if "top" in expected:
        assert column.top == expected["top"], where
        return
    assert column.count == expected["count"], where
    assert (column.min, column.max) == (expected["min"], expected["max"]), where
    assert column.mean == pytest.approx(expected["mean"], rel=1e-9, abs=1e-12), where
    assert column.std == pytest.approx(expected["std"], rel=1e-9, abs=1e-12), where
    values = expected["sorted"]
    for p, exact in zip(PERCENTILES, expected["quantiles"], strict=True):
        position = p / 100 * (len(values) - 1)
        neighbours = values[math.floor(position)], values[math.ceil(position)]
        bound = RELATIVE_ERROR * max(abs(neighbours[0]), abs(neighbours[1])) + 1e-12
        assert abs(column.percentiles[p] - exact) <= bound, (where, p, column.percentiles[p], exact)
    if "histogram" in expected:
        assert column.histogram == expected["histogram"], where


def assert_profile(store: fk.FeatureStore, profile: Profile, window: tuple[Any, Any] | None = None) -> None:
    files, edges = committed(store)
    assert set(profile.columns) == set(COLUMNS)
    for name in COLUMNS:
        expected = oracle(files, name, edges.get(name, ()), window)
        assert profile.rows == expected["rows"]
        assert_column(profile.columns[name], expected)
        if name in edges:
            assert profile.columns[name].edges == edges[name]


@pytest.fixture
def repo(make_repo) -> Path:
    root = make_repo(FEATURES, {"data/trips.parquet": trips(1, (0, 10), 3000)})
    return root


def reads_no_data(store: fk.FeatureStore) -> None:
    """Make every read of committed rows fail: a profile that needs one shows it."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("read committed rows")

    store.engine.committed_rows = refuse  # type: ignore[method-assign]


def test_profiles_follow_windows_rematerializations_backfills_and_pushes(repo, open_store):
    store = open_store(repo)
    store.apply()
    for start, end in [(0, 3), (3, 6), (6, 10)]:
        store.materialize(ts(start), ts(end))
    version = store.registry.active()["driver_stats"].version
    edges = store.registry.view_quality(version.id, "edges")
    assert edges is not None  # fixed by the first materialization
    assert_profile(store, store.profile("driver_stats"))

    # A re-materialized window with changed source data, then a backfill before everything.
    write_source(repo, trips(1, (0, 3), 900), trips(7, (3, 6), 1100, scale=3.0), trips(3, (6, 10), 1200))
    store.materialize(ts(3), ts(6))
    assert_profile(store, store.profile("driver_stats"))
    write_source(repo, trips(9, (-5, 0), 700), trips(1, (0, 3), 900), trips(7, (3, 6), 1100, scale=3.0))
    store.materialize(ts(-5), ts(0))
    reads_no_data(store)  # whole windows replaced or added: the stored records suffice
    assert_profile(store, store.profile("driver_stats"))
    assert store.registry.view_quality(version.id, "edges") == edges  # later commits never move them

    # A push adds rows; a window partly inside earlier ones makes their kept rows be read.
    other = open_store(repo)
    other.push("driver_stats", trips(11, (8, 9), 50), to="online_and_offline")
    assert_profile(other, other.profile("driver_stats"))
    other.materialize(ts(1), ts(2))
    other.materialize(ts(8.5), ts(12))  # overlaps the push, the last window and what follows
    assert_profile(other, other.profile("driver_stats"))
    window = (ts(2), ts(7))
    assert_profile(other, other.profile("driver_stats", window=window), window)


def test_batches_profiled_on_the_inspections_two_workers_equal_the_oracle_and_one_thread(make_repo, open_store):
    # Batches of BACKGROUND_ROWS rows or more are profiled a column per task on two workers,
    # several batches in a row (each in several chunks): the state is the one-threaded pass's.
    rows = 3 * BACKGROUND_ROWS
    config = f"offline:\n  batch_rows: {BACKGROUND_ROWS + 1000}\n"
    root = make_repo(FEATURES, {"data/trips.parquet": trips(5, (0, 10), rows)}, config=config)
    store = open_store(root)
    store.apply()
    (result,) = store.materialize(ts(0), ts(10))
    assert result.rows == rows
    assert_profile(store, store.profile("driver_stats"))

    version = store.registry.active()["driver_stats"].version
    view = store.definitions.views["driver_stats"]
    output = run_view(view, trips(6, (0, 10), 2 * BACKGROUND_ROWS), expected=version.schema)
    output = pa.Table.from_batches(output.to_batches(max_chunksize=50_000))
    halves = [output.slice(0, BACKGROUND_ROWS + 7), output.slice(BACKGROUND_ROWS + 7)]
    inspection = Inspection(view, version, store.registry, window=(ts(0), ts(10)), mode="window")
    one_thread = ProfileState.empty(version.schema, COLUMNS)
    for half in halves:
        inspection.add(half)
        one_thread.add(half)
    inspection.conclude()
    assert inspection.profile.state.to_json() == one_thread.to_json()
    inspection.records()


def test_checkpoints_bound_the_merge_and_give_the_profile_every_state_merged_gives(make_repo, open_store, monkeypatch):
    root = make_repo(FEATURES, {"data/trips.parquet": trips(1, (0, 40), 8000)})
    store = open_store(root)
    store.apply()
    version = store.registry.active()["driver_stats"].version

    def without_checkpoints() -> dict:
        with monkeypatch.context() as patched:
            patched.setattr(data_profiles, "CHECKPOINT", "no such kind")
            return store.profile("driver_stats").to_dict()

    def checkpoints() -> list[int]:
        return [c for c, _ in store.registry.quality(version.id, data_profiles.CHECKPOINT)]

    commits = [store.materialize(ts(day), ts(day + 1))[0].registry_version for day in range(20)]
    every = data_profiles.CHECKPOINT_EVERY
    assert checkpoints() == [commits[every - 1], commits[2 * every - 1]]
    quiet = open_store(root)
    reads_no_data(quiet)  # whole windows: the checkpoint and the stored states after it suffice
    decoded: list[str] = []
    real = ProfileState.from_json
    with monkeypatch.context() as counted:
        counted.setattr(ProfileState, "from_json", lambda text: decoded.append(text) or real(text))
        profile = quiet.profile("driver_stats").to_dict()
    assert len(decoded) == 20 - 2 * every  # the commits after the newest checkpoint, not all 20
    assert profile == without_checkpoints()
    assert_profile(store, store.profile("driver_stats"))
    early = store.profile("driver_stats", as_of=commits[every + 2])
    assert early.rows == sum(r.rows for r in store.registry.materializations(version.id)[: every + 3])

    # A window inside two days cuts their commits (their kept rows are read): the checkpoints
    # that merged them no longer apply, and the next ones merge what is still whole.
    cut = store.materialize(ts(4.5), ts(5.5))[0].registry_version
    assert checkpoints()[-1] == cut
    store.push("driver_stats", trips(5, (12, 13), 40), to="online_and_offline")
    for day in range(20, 30):
        store.materialize(ts(day), ts(day + 1))
    assert len(checkpoints()) == 4
    assert store.profile("driver_stats").to_dict() == without_checkpoints()
    assert_profile(store, store.profile("driver_stats"))


def test_profile_as_of_an_earlier_registry_version_and_of_a_pinned_version(repo, open_store):
    store = open_store(repo)
    store.apply()
    (first,) = store.materialize(ts(0), ts(5))
    store.materialize(ts(5), ts(10))
    earlier = store.profile("driver_stats@v1", as_of=first.registry_version)
    assert earlier.rows == first.rows
    assert store.profile("driver_stats").rows == 3000


def test_an_empty_window_fixes_no_edges_and_the_next_one_does(repo, open_store):
    store = open_store(repo)
    store.apply()
    store.materialize(ts(20), ts(21))
    version = store.registry.active()["driver_stats"].version
    assert store.registry.view_quality(version.id, "edges") is None
    assert store.profile("driver_stats").rows == 0
    store.materialize(ts(0), ts(10))
    assert store.registry.view_quality(version.id, "edges") is not None
    assert_profile(store, store.profile("driver_stats"))


def test_training_sets_carry_the_profile_of_their_features_in_the_manifest(repo, open_store, tmp_path):
    store = open_store(repo)
    store.apply()
    store.materialize(ts(0), ts(10))
    rng = np.random.default_rng(5)
    spine = pa.table(
        {
            "driver_id": rng.integers(0, 200, 500),
            "event_timestamp": pa.array([ts(1 + 9 * x) for x in rng.random(500)], pa.timestamp("us", tz="UTC")),
        }
    )
    path = store.training_set(spine, ["driver_stats:km", "driver_stats:city"]).to_parquet(tmp_path / "ts.parquet")
    manifest = load_manifest(path)
    assert manifest.profile is not None
    written = Profile.from_dict(manifest.profile)
    _, edges = committed(store)
    table = pq.read_table(path)
    assert written == profile_table(table, columns=["km", "city"], edges={"km": edges["km"]}, source="training set")
    in_memory = store.training_set(spine, ["driver_stats:km", "driver_stats:city"])
    assert in_memory.profile() == written
    assert in_memory.manifest["profile"] == manifest.profile
    # to_arrow() profiles the rows in memory only when asked (profile(), the manifest, to_parquet)
    arrow = store.training_set(spine, ["driver_stats:km", "driver_stats:city"])
    assert arrow.to_arrow().equals(table.replace_schema_metadata(None))
    assert arrow.manifest["profile"] == manifest.profile
    folder = store.training_set(spine, ["driver_stats:km", "driver_stats:city"]).to_parquet(f"{tmp_path}/parts/")
    assert load_manifest(folder).profile == manifest.profile  # profiled beside the parts' writer, the same
    # float features are written without a dictionary (it held every value); the others keep theirs
    encodings = {c.path_in_schema: c.encodings for c in (pq.ParquetFile(path).metadata.row_group(0).column(i)
                                                        for i in range(table.num_columns))}  # fmt: skip
    assert "RLE_DICTIONARY" not in encodings["km"]
    assert "RLE_DICTIONARY" in encodings["city"]


def test_cli_profile_prints_a_table_and_json(repo, open_store):
    store = open_store(repo)
    store.apply()
    store.materialize(ts(0), ts(10))
    store.close()
    run = CliRunner()
    text = run.invoke(cli, ["--repo", str(repo), "profile", "driver_stats"], catch_exceptions=False)
    assert text.exit_code == 0
    assert "conv_rate" in text.output
    assert "berlin" in text.output
    window = ["--start", ts(0).isoformat(), "--end", ts(2).isoformat(), "--json"]
    found = run.invoke(cli, ["--repo", str(repo), "profile", "driver_stats", *window], catch_exceptions=False)
    assert Profile.from_dict(json.loads(found.output)).rows < 3000
    alone = run.invoke(cli, ["--repo", str(repo), "profile", "driver_stats", "--start", ts(0).isoformat()])
    assert alone.exit_code == 1
    assert "--end" in alone.output
    unknown = run.invoke(cli, ["--repo", str(repo), "profile", "driver_stat"])
    assert unknown.exit_code == 1
    assert "driver_stats" in unknown.output


WINDOW_FEATURES = """
from datetime import timedelta
import polars as pl
import featurekit as fk
from featurekit import agg

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource("data/trips.parquet", timestamp_field="event_timestamp", created_timestamp_field="created")

@fk.window_view(entity=driver, source=trips, windows=[timedelta(days=1)], aggregations=[agg.sum("distance_km")])
def activity(trips: pl.DataFrame) -> pl.DataFrame:
    return trips.select("driver_id", "event_timestamp", "created", "distance_km")
"""


def test_a_window_view_profiles_the_events_it_commits(make_repo, open_store):
    root = make_repo(WINDOW_FEATURES, {"data/trips.parquet": trips(1, (0, 10), 2000)})
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(4))
    store.materialize(ts(4), ts(10))
    profile = store.profile("activity")
    files, edges = committed(store, "activity")
    assert list(profile.columns) == ["distance_km"]
    assert_column(profile.columns["distance_km"], oracle(files, "distance_km", edges["distance_km"]))
    spine = pa.table({"driver_id": [1, 2, 3], "event_timestamp": pa.array([ts(5)] * 3, pa.timestamp("us", tz="UTC"))})
    training = store.training_set(spine, ["activity"])
    feature = training.profile().columns["distance_km_sum_1d"]
    assert feature.rows == 3
    assert feature.min == pc.min(training.to_arrow().column("distance_km_sum_1d")).as_py()


# -- the mergeable state --------------------------------------------------------------------------


def test_high_cardinality_columns_stay_within_their_bounds():
    rng = np.random.default_rng(3)
    words = np.array([f"w{i}" for i in range(20_000)], dtype=object)
    weights = 1.0 / np.arange(1, 20_001)
    picked = rng.choice(words, 200_000, p=weights / weights.sum())
    table = pa.table({"x": rng.normal(0, 1, 200_000), "word": pa.array(list(picked), pa.string())})
    halves = [ProfileState.empty(table.schema, ["x", "word"]) for _ in range(2)]
    halves[0].add(table.slice(0, 120_000))
    halves[1].add(table.slice(120_000))
    profile = merge(halves).profile(choose_edges(halves[0]))
    true_distinct = len(set(picked))
    assert true_distinct > COUNTS_CAP
    for name, truth in (("x", 200_000), ("word", true_distinct)):
        assert abs(profile.columns[name].distinct - truth) <= 0.07 * truth  # 3 standard errors
    counts: dict[str, int] = {}
    for word in picked:
        counts[word] = counts.get(word, 0) + 1
    slack = 200_000 / (COUNTS_CAP + 1)
    for value, count in profile.columns["word"].top:
        assert counts[value] - slack <= count <= counts[value]


def plain_live_segments(commits: list[Materialization], removed: dict[int, Any]) -> list[data_profiles.Segment]:
    """The definition, commit by commit: every materialization's window cuts every earlier commit's rows."""
    segments: list[data_profiles.Segment] = []
    previous = None
    for commit in commits:
        window = (commit.window_start, commit.window_end)
        gone = removed.get(previous.data_version) if previous is not None else None
        if gone is not None and gone <= commit.committed_at and commit.mode != "push":
            segments = []
        if commit.mode != "push":
            for segment in segments:
                kept = data_profiles.subtract(segment.live, window)
                if kept != segment.live:
                    segment.live, segment.whole = kept, False
            segments = [s for s in segments if s.live]
        segments.append(data_profiles.Segment(commit, [window]))
        previous = commit
    return segments


@settings(max_examples=200, deadline=None)
@given(
    windows=st.lists(
        st.tuples(st.integers(0, 40), st.integers(1, 12), st.sampled_from(["window", "push"])), max_size=40
    ),
    gone=st.dictionaries(st.integers(0, 40), st.integers(0, 40), max_size=3),
)
def test_live_segments_follow_the_definition(windows, gone):
    """Windows over and inside each other, pushes anywhere, gc'd bases: the same live rows as the definition."""
    commits = [
        Materialization(n + 1, ts(0, n), 1, n, ts(start), ts(start + length), None, 1, mode)
        for n, (start, length, mode) in enumerate(windows)
    ]
    removed = {version: ts(0, hour) for version, hour in gone.items()}
    fast = data_profiles.live_segments(commits, removed)
    plain = plain_live_segments(commits, removed)
    assert [(s.commit, s.live, s.whole) for s in fast] == [(s.commit, s.live, s.whole) for s in plain]


values = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=False, width=32), st.integers(-5, 5))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(values, st.sampled_from(["a", "b", "c", None]), st.integers(-3, 3)), max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=5),
)
def test_any_split_of_the_rows_gives_the_same_profile(rows, cuts):
    table = pa.table(
        {
            "x": pa.array([None if r[0] is None else float(r[0]) for r in rows], pa.float64()),
            "s": pa.array([r[1] for r in rows], pa.string()),
            "n": pa.array([r[2] for r in rows], pa.int64()),
        }
    )
    whole = ProfileState.empty(table.schema, table.column_names)
    whole.add(table)
    edges = choose_edges(whole)
    bounds = sorted({0, len(rows), *(min(c, len(rows)) for c in cuts)})
    pieces = []
    for begin, end in itertools.pairwise(bounds):
        piece = ProfileState.empty(table.schema, table.column_names)
        piece.add(table.slice(begin, end - begin))
        pieces.append(ProfileState.from_json(piece.to_json()))  # through the stored form
    split = merge(pieces).profile(edges) if pieces else whole.profile(edges)
    expected = whole.profile(edges)
    for name, column in expected.columns.items():
        got = split.columns[name]
        assert got.mean == (None if column.mean is None else pytest.approx(column.mean, rel=1e-9, abs=1e-9))
        assert got.std == (None if column.std is None else pytest.approx(column.std, rel=1e-6, abs=1e-9))
        exact = {k: v for k, v in column.to_dict().items() if k not in ("mean", "std")}
        assert {k: v for k, v in got.to_dict().items() if k not in ("mean", "std")} == exact
    assert split.rows == expected.rows == len(rows)


def test_profile_table_with_edges_off_the_bucket_grid_counts_values_directly():
    table = pa.table({"x": [0.1, 0.2, 0.3, 0.45, float("nan"), None]})
    profile = profile_table(table, edges={"x": (0.15, 0.3)})
    assert profile.columns["x"].histogram == (1, 1, 2)
    assert profile.columns["x"].nans == 1
    assert profile.columns["x"].nulls == 1


def test_profile_dict_round_trip():
    rng = np.random.default_rng(0)
    table = pa.table({"x": rng.random(1000), "flag": rng.random(1000) < 0.5})
    profile = profile_table(table, source="t")
    assert Profile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile
    assert profile.columns["flag"].top[0][0] in ("true", "false")
    assert set(profile.to_pandas()["name"]) == {"x", "flag"}


def test_rows_profiled_beside_the_writer_equal_rows_profiled_inline():
    # add_beside profiles each batch on a worker while the caller writes it, one batch in flight:
    # the same profile as add, over many batches (and an error is raised, not lost).
    rng = np.random.default_rng(8)
    table = pa.table({"x": rng.normal(0, 1, 40_000), "word": pa.array(rng.choice(["a", "b", None], 40_000))})
    inline, beside = (RowsProfiler(["x", "word"], {}, "training set") for _ in range(2))
    try:
        for batch in table.to_batches(max_chunksize=1_000):
            inline.add(pa.Table.from_batches([batch]))
            beside.add_beside(pa.Table.from_batches([batch]))
        assert beside.result() == inline.result()
        beside.add_beside(pa.table({"x": [1.0]}))  # no column "word": the worker's KeyError
        with pytest.raises(KeyError, match="word"):
            beside.add(table)
    finally:
        beside.close()


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.floats(allow_nan=False) | st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1e-310, math.inf, -math.inf]),
        min_size=1,
        max_size=300,
    )
)
def test_one_values_bucket_key_and_counts_to_the_top_key_equal_the_vectorized_ones(values: list[float]) -> None:
    from featurekit.quality.sketches import ValueBuckets, bucket_key, bucket_keys

    array = np.asarray(values, dtype=np.float64)
    keys = bucket_keys(array)
    assert [bucket_key(v) for v in values] == keys.tolist()
    low, high = bucket_key(min(values)), bucket_key(max(values))
    counted = ValueBuckets.of(keys.copy(), low, high)  # np.add.at into counts of the keys' span
    scanned = ValueBuckets.of(keys.copy(), low)  # np.bincount, which finds the span itself
    assert counted.low == scanned.low
    assert counted.counts.tolist() == scanned.counts.tolist()
