"""Time travel: as_of rebuilds, manifests, version pins, known_at, history, diff and gc.

The issue's scenario end to end: v1 applied and materialized, a training set T1 built; then the
function changes (v2), everything is re-materialized, new source data is appended and
materialized incrementally, and a late correction is backfilled. T1 must come back bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import featurekit as fk
from featurekit.manifest import load_manifest
from tests.conftest import store_files, trips_table, ts

HEAD = """
from datetime import timedelta
import polars as pl
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource("data/trips.parquet", timestamp_field="event_timestamp", created_timestamp_field="created")
"""

STATS_V1 = """
@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7))
def driver_stats(trips: pl.DataFrame) -> pl.DataFrame:
    return trips.select(
        "driver_id", "event_timestamp", "created",
        conv_rate=pl.col("accepted") / pl.col("offered"),
        avg_trip_km=pl.col("distance_km"),
    )
"""

STATS_V2 = STATS_V1.replace('pl.col("distance_km")', 'pl.col("distance_km") * 1000')

RISK_V1 = """
@fk.on_demand(inputs=["driver_stats:conv_rate"], request={"trip_km": pl.Float64})
def trip_risk(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(risk=pl.col("conv_rate") * pl.col("trip_km"))
"""

RISK_V2 = RISK_V1.replace('pl.col("trip_km")', '(pl.col("trip_km") + 1)')

ROWS = [
    (1, ts(0), ts(0), 1, 2, 1.0),
    (1, ts(2), ts(2), 2, 4, 2.0),
    (2, ts(1), ts(1), 3, 4, 3.0),
    (3, ts(3), ts(3), 1, 1, 9.0),
]
NEW_DAY = [(1, ts(10, 6), ts(10, 6), 3, 4, 5.0), (4, ts(10, 7), ts(10, 7), 1, 2, 6.0)]
# A backfilled correction of driver 2's ts(1) row, written on day 5: it wins the created tie-break.
CORRECTION = [(2, ts(1), ts(5), 1, 4, 30.0)]
FEATURES = ["driver_stats:conv_rate", "driver_stats:avg_trip_km", "trip_risk"]


def spine() -> pa.Table:
    return pa.table(
        {
            "driver_id": pa.array([1, 2, 3, 1, 4, 2], pa.int64()),
            "event_timestamp": pa.array([ts(3), ts(2), ts(4), ts(11), ts(11), ts(6)], pa.timestamp("us", tz="UTC")),
            "trip_km": pa.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            "label": pa.array([0, 1, 0, 1, 1, 0]),
        }
    )


def write_features(root: Path, *parts: str) -> None:
    (root / "features.py").write_text(textwrap.dedent(HEAD + "".join(parts)))


def write_source(root: Path, rows: list[tuple[int, datetime, datetime, int, int, float]]) -> None:
    pq.write_table(trips_table(rows), root / "data" / "trips.parquet")


def tick() -> datetime:
    """A moment strictly between two registry commits."""
    time.sleep(0.002)
    moment = datetime.now(UTC)
    time.sleep(0.002)
    return moment


@pytest.fixture
def history(make_repo, open_store):
    """The issue's scenario; returns the repo, T1 and what was recorded at t1."""
    root = make_repo(data={"data/trips.parquet": trips_table(ROWS)})
    write_features(root, STATS_V1, RISK_V1)
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(10))
    t1_set = store.training_set(spine(), FEATURES)
    t1 = t1_set.to_arrow()
    manifest = t1_set.manifest
    t1_set.to_parquet(root / "t1.parquet")
    moment = tick()
    store.close()

    write_features(root, STATS_V2, RISK_V2)
    write_source(root, ROWS + CORRECTION)
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(10))
    write_source(root, ROWS + CORRECTION + NEW_DAY)
    store.materialize_incremental(end=ts(12))
    return root, store, t1, manifest, moment


def test_as_of_rebuilds_the_old_training_set_bit_for_bit(history):
    root, store, t1, manifest, moment = history
    write_features(root, STATS_V2, RISK_V1)  # the old on-demand code is importable again
    store = fk.FeatureStore(root, progress=False)
    try:
        assert store.training_set(spine(), FEATURES, as_of=moment).to_arrow().equals(t1)
        assert store.training_set(spine(), FEATURES, as_of=manifest["registry_version"]).to_arrow().equals(t1)
        now = store.training_set(spine(), FEATURES[:2]).to_arrow()
    finally:
        store.close()
    assert now.column("avg_trip_km").to_pylist() != t1.column("avg_trip_km").to_pylist()  # later changes show
    assert now.column("avg_trip_km").to_pylist()[3] == 5000.0  # v2 on the appended day


def test_old_on_demand_code_must_be_importable_and_comes_from_the_archive(history):
    root, store, t1, _, moment = history
    with pytest.raises(fk.NotAppliedError) as caught:
        store.training_set(spine(), FEATURES, as_of=moment)
    message = str(caught.value)
    assert "trip_risk' v1" in message
    assert "no git commit was recorded" in message
    assert "archive" in message
    (root / "archive").mkdir()
    (root / "archive" / "trip_risk_v1.py").write_text(
        textwrap.dedent("import polars as pl\nimport featurekit as fk\n" + RISK_V1)
    )
    store = fk.FeatureStore(root, progress=False)
    try:
        assert store.training_set(spine(), FEATURES, as_of=moment).to_arrow().equals(t1)
    finally:
        store.close()


def test_manifest_reproduces_and_rejects_another_spine(history):
    root, store, t1, manifest, _ = history
    json.dumps(manifest)  # JSON-serializable as is
    assert manifest["registry_version"] == 2  # r1 apply, r2 materialize: T1 read r2
    views = {(v["view"], v["version"], v["kind"]) for v in manifest["views"]}
    assert views == {("driver_stats", 1, "batch"), ("trip_risk", 1, "on_demand")}
    assert manifest["features"] == FEATURES
    write_features(root, STATS_V2, RISK_V1)
    store = fk.FeatureStore(root, progress=False)
    try:
        assert store.training_set(spine(), manifest=manifest).to_arrow().equals(t1)
        from_file = load_manifest(root / "t1.parquet")
        assert from_file.to_dict() == manifest
        assert store.training_set(spine(), manifest=root / "t1.parquet").to_arrow().equals(t1)
        assert pq.read_table(root / "t1.parquet").equals(
            t1.replace_schema_metadata(pq.read_table(root / "t1.parquet").schema.metadata)
        )
        changed = spine().set_column(3, "label", pa.array([1, 1, 0, 1, 1, 0]))
        with pytest.raises(fk.ManifestError, match="same shape, different values"):
            store.training_set(changed, manifest=manifest)
        with pytest.raises(fk.ManifestError, match="5 rows instead of 6"):
            store.training_set(spine().slice(1), manifest=manifest)
        with pytest.raises(fk.ManifestError, match="manifest= alone"):
            store.training_set(spine(), FEATURES, manifest=manifest)
    finally:
        store.close()


def test_spine_digest_ignores_how_the_frame_was_built(history):
    _, store, _, manifest, _ = history
    as_polars = pl.from_arrow(spine())
    as_pandas = spine().to_pandas()
    write_features(history[0], STATS_V2, RISK_V1)
    store = fk.FeatureStore(history[0], progress=False)
    try:
        for frame in (as_polars, as_pandas):
            rebuilt = store.training_set(frame, manifest=manifest)
            assert rebuilt.manifest["spine_digest"] == manifest["spine_digest"]
    finally:
        store.close()


def test_pins_read_each_version_side_by_side_offline_and_online(history):
    _, store, _, _, _ = history
    pinned = ["driver_stats@v1:avg_trip_km", "driver_stats:avg_trip_km"]
    frame = store.training_set(spine(), pinned, full_names=True).to_polars()
    assert frame.columns[-2:] == ["driver_stats_v1__avg_trip_km", "driver_stats__avg_trip_km"]
    # v1 kept its own data (materialized before v2 existed): driver 1 at day 3 -> 2.0; v2 -> 2000.0
    assert frame.row(0, named=True)["driver_stats_v1__avg_trip_km"] == 2.0
    assert frame.row(0, named=True)["driver_stats__avg_trip_km"] == 2000.0
    v2 = store.training_set(spine(), ["driver_stats@v2:avg_trip_km"]).to_polars()
    assert v2["avg_trip_km"].to_list() == frame["driver_stats__avg_trip_km"].to_list()
    online = store.online_features({"driver_id": [1, 2]}, pinned, at=ts(11), full_names=True).to_dict()
    assert online["driver_stats__avg_trip_km"] == [5000.0, None]  # v2 holds the appended day
    assert online["driver_stats_v1__avg_trip_km"] == [None, None]  # v1's newest rows are past the TTL
    old = store.online_features({"driver_id": [1, 2]}, pinned[:1], at=ts(8)).to_dict()
    assert old["avg_trip_km"] == [2.0, 3.0]  # v1's own online rows, as its materialization left them
    with pytest.raises(fk.SchemaError, match="full_names"):
        store.online_features({"driver_id": [1]}, pinned)


def test_materializing_an_old_version_needs_its_code(history):
    root, store, _, _, _ = history
    with pytest.raises(fk.NotAppliedError, match=r"driver_stats' v1 .*archive"):
        store.materialize(ts(0), ts(12), views=["driver_stats@v1"])
    (root / "archive").mkdir()
    (root / "archive" / "stats_v1.py").write_text(textwrap.dedent(HEAD + STATS_V1))
    store = fk.FeatureStore(root, progress=False)
    try:
        (result,) = store.materialize(ts(0), ts(12), views=["driver_stats@v1"])
        assert (result.view, result.version) == ("driver_stats", 1)
        online = store.online_features({"driver_id": [4]}, ["driver_stats@v1:avg_trip_km"], at=ts(11)).to_dict()
        assert online["avg_trip_km"] == [6.0]  # the appended day, computed by v1's code
        current = store.online_features({"driver_id": [4]}, ["driver_stats:avg_trip_km"], at=ts(11)).to_dict()
        assert current["avg_trip_km"] == [6000.0]
    finally:
        store.close()


def test_known_at_excludes_a_late_correction(history):
    _, store, _, _, _ = history
    features = ["driver_stats:conv_rate"]
    probe = pa.table(
        {"driver_id": pa.array([2], pa.int64()), "event_timestamp": pa.array([ts(2)], pa.timestamp("us", tz="UTC"))}
    )
    corrected = store.training_set(probe, features).to_arrow().column("conv_rate").to_pylist()
    as_known = store.training_set(probe, features, known_at=ts(4)).to_arrow().column("conv_rate").to_pylist()
    assert corrected == [0.25]  # the correction (1/4) won the created tie-break
    assert as_known == [0.75]  # known on day 4: only the original row (3/4) existed


def test_known_at_needs_a_created_timestamp(make_repo, open_store):
    no_created = (HEAD + STATS_V1).replace(', created_timestamp_field="created"', "").replace('"created",', "")
    root = make_repo(features=no_created, data={"data/trips.parquet": trips_table(ROWS)})
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(10))
    with pytest.raises(fk.SchemaError, match=r"known_at needs a created .*driver_stats"):
        store.training_set(spine(), ["driver_stats:conv_rate"], known_at=ts(4))


def test_as_of_errors(history):
    _, store, _, _, _ = history
    with pytest.raises(fk.WindowError, match="future"):
        store.training_set(spine(), FEATURES, as_of=datetime.now(UTC) + timedelta(days=1))
    with pytest.raises(fk.UnknownNameError, match="nothing was committed"):
        store.training_set(spine(), FEATURES, as_of=datetime(2000, 1, 1, tzinfo=UTC))
    with pytest.raises(fk.UnknownNameError, match="versions 1 to"):
        store.training_set(spine(), FEATURES, as_of=999)
    with pytest.raises(fk.UnknownNameError, match="after registry version 2"):
        store.training_set(spine(), ["driver_stats@v2:conv_rate"], as_of=2)


def test_history_diff_and_show(history):
    _root, store, _, _, _ = history
    entries = store.history("driver_stats")
    kinds = [(e.kind, e.version) for e in entries]
    assert kinds == [("apply", 1), ("materialize", 1), ("apply", 2), ("materialize", 2), ("incremental", 2)]
    assert entries[0].change == "new"
    assert entries[2].change == "changed"
    assert entries[3].rows == 5
    assert entries[4].window_start == ts(10)
    assert {e.view for e in store.history()} == {"driver_stats", "trip_risk"}
    text = store.diff("driver_stats", 1, 2)
    assert '-        avg_trip_km=pl.col("distance_km"),' in text
    assert '+        avg_trip_km=pl.col("distance_km") * 1000,' in text
    assert "same code" in store.diff("driver_stats", 2, 2)
    old = store.show("driver_stats@v1").describe(code=True)
    assert 'avg_trip_km=pl.col("distance_km"),' in old
    with pytest.raises(fk.UnknownNameError, match="no feature view 'nope'"):
        store.history("nope")


def test_crash_during_materialize_leaves_every_as_of_read_unchanged(history):
    root, store, _, _, _ = history
    write_features(root, STATS_V2, RISK_V1)
    before = {}
    for version in range(1, store.registry.head_commit() + 1):
        try:
            before[version] = store.training_set(spine(), FEATURES[:2], as_of=version).to_arrow()
        except fk.FeaturekitError:
            before[version] = None  # e.g. nothing materialized yet at that version
    store.close()
    write_source(root, ROWS + CORRECTION + NEW_DAY + [(5, ts(11), ts(11), 1, 1, 7.0)])
    for point in ("materialize.data_written", "materialize.before_commit", "materialize.after_commit"):
        script = (
            "import featurekit as fk, sys\n"
            f"fk.FeatureStore({str(root)!r}, progress=False).materialize('2026-01-01', '2026-01-13')\n"
        )
        env = {**os.environ, "FEATUREKIT_CRASH_AT": point}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120, check=False)
        assert done.returncode == -9, done.stderr
        reopened = fk.FeatureStore(root, progress=False)
        try:
            for version, expected in before.items():
                if expected is not None:
                    assert reopened.training_set(spine(), FEATURES[:2], as_of=version).to_arrow().equals(expected)
        finally:
            reopened.close()


def test_gc_keeps_what_it_must_and_removes_the_rest(history):
    root, store, _t1, manifest, _moment = history
    for _ in range(3):  # replaced windows leave unreferenced files behind
        store.materialize(ts(0), ts(12), views=["driver_stats"])
    data_files = lambda: [f for f in store_files(root) if f.startswith("offline/") and "_delta_log" not in f]  # noqa: E731
    before = len(data_files())
    dry = store.gc(keep_days=0, keep_versions=1, dry_run=True)
    assert len(data_files()) == before
    current = store.training_set(spine(), FEATURES[:2]).to_arrow()
    report = store.gc(keep_days=0, keep_versions=1)
    assert report.files == dry.files > 0
    after = len(data_files())
    assert after == before - report.files
    # What the policy keeps still reads: the current data of the applied version.
    assert store.training_set(spine(), FEATURES[:2]).to_arrow().equals(current)
    assert ("driver_stats", 1, 0) in report.removed
    assert "driver_stats__v1" in report.online_tables
    # Time travel into removed data says what was removed and when.
    with pytest.raises(fk.RetentionError, match=r"driver_stats' v1 .*removed by gc at .*keep-days=0"):
        store.training_set(spine(), FEATURES[:2], as_of=manifest["registry_version"])
    assert store.gc(keep_days=0, keep_versions=1).files == 0  # idempotent


def test_gc_keeps_pins_and_the_time_travel_window(history):
    root, store, t1, _manifest, moment = history
    (root / "featurekit.yaml").write_text("pins: ['driver_stats@v1']\n")
    write_features(root, STATS_V2, RISK_V1)
    store = fk.FeatureStore(root, progress=False)
    try:
        store.materialize(ts(0), ts(12), views=["driver_stats"])
        report = store.gc(keep_days=30, keep_versions=1)
        assert report.removed == []  # everything is younger than 30 days
        assert store.training_set(spine(), FEATURES, as_of=moment).to_arrow().equals(t1)
        report = store.gc(keep_days=0, keep_versions=1)
        assert all(view != "driver_stats" or version != 1 for view, version, _ in report.removed)
        pinned = store.training_set(spine(), ["driver_stats@v1:avg_trip_km"]).to_arrow()
        assert pinned.column("avg_trip_km").to_pylist()[0] == 2.0
    finally:
        store.close()
