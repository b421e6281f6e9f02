"""Store folders with hostile names, gc racing a writer, and TTL / time-precision edges.

Each test is a regression test of a defect found by running featurekit as a user would: a repo
path with a space, ``#`` or a non-ASCII letter failed after the first materialize and gc deleted
the current version's files; gc decided what to keep before taking each view's lock; a nanosecond
spine saw events up to 500 ns after it; ``ttl=timedelta.max`` failed in training sets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import featurekit as fk
from tests.conftest import BASIC_FEATURES, RepoFactory, trips_table, ts

PROJECT = Path(__file__).resolve().parent.parent

ROWS = [
    (1, ts(0, 1), ts(0, 2), 1, 2, 1.0),
    (1, ts(1, 1), ts(1, 2), 2, 2, 2.0),
    (2, ts(1, 5), ts(1, 6), 1, 4, 3.0),
    (2, ts(3, 5), None, 3, 4, 4.0),
]


def data_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / ".featurekit" / "offline").rglob("*.parquet"))


@pytest.mark.parametrize("folder", ["my repo #1 é", "spaces and %zz", "ünï cödé"])
def test_every_command_works_under_a_hostile_folder_name(tmp_path: Path, folder: str):
    root = RepoFactory(tmp_path / folder)
    (tmp_path / folder).mkdir()
    repo = root(data={"data/trips.parquet": trips_table(ROWS)})
    times = pa.array([ts(1, 3), ts(2), ts(4)], pa.timestamp("us", tz="UTC"))
    spine = pa.table({"driver_id": [1, 2, 2], "event_timestamp": times})
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
        store.materialize(ts(0), ts(2))
        first = store.training_set(spine, ["driver_stats"])
        expected = first.to_arrow()
        manifest = first.manifest
        assert expected.column("avg_trip_km").to_pylist() == [2.0, 3.0, 3.0]
        store.materialize(ts(0), ts(4))  # replaces the window: the first version's files become old
        assert store.training_set(spine, ["driver_stats"]).to_arrow().column("avg_trip_km").to_pylist() == [
            2.0,
            3.0,
            4.0,
        ]
        head = store.registry.last_materialization(1)
        assert head is not None
        referenced = {f.path for f in store.tables.data_files("driver_stats", 1, head.data_version)}
        report = store.gc(keep_days=0, keep_versions=1)
        assert report.files >= 1  # the replaced window's files went
        assert set(data_files(repo)) == referenced  # and exactly the current version's stayed
        assert store.check_integrity().ok
        assert store.online_features({"driver_id": [2]}, ["driver_stats:avg_trip_km"], at=ts(4)).to_dict()[
            "avg_trip_km"
        ] == [4.0]
        assert store.training_set(spine, ["driver_stats"]).to_arrow().column("avg_trip_km").to_pylist()[2] == 4.0
        with pytest.raises(fk.RetentionError):  # the old data version was removed: said, not wrong rows
            store.training_set(spine, manifest=manifest).to_arrow()


def test_gc_keeps_every_file_a_retained_version_references(tmp_path: Path):
    folder = tmp_path / "my repo #1 é"
    folder.mkdir()
    repo = RepoFactory(folder)(data={"data/trips.parquet": trips_table(ROWS)})
    spine = pa.table({"driver_id": [1, 2], "event_timestamp": pa.array([ts(2), ts(4)], pa.timestamp("us", tz="UTC"))})
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
        built = []
        for end in (2, 3, 4):
            store.materialize(ts(0), ts(end))
            ts_set = store.training_set(spine, ["driver_stats"])
            built.append((ts_set.manifest, ts_set.to_arrow()))
        before = len(data_files(repo))
        store.gc(keep_days=365, keep_versions=1)  # every data version is inside the time-travel window
        assert len(data_files(repo)) == before
        for manifest, table in built:
            assert store.training_set(spine, manifest=manifest).to_arrow().equals(table)


def test_a_store_folder_with_a_percent_escape_is_refused_naming_it(tmp_path: Path):
    folder = tmp_path / "sales%41"
    folder.mkdir()
    repo = RepoFactory(folder)(data={"data/trips.parquet": trips_table(ROWS)})
    with pytest.raises(fk.ConfigError, match=r"'%41'.*rename the folder"):
        fk.FeatureStore(repo, progress=False)
    assert not (repo / ".featurekit").exists()


GC_SCRIPT = """
import sys
import featurekit as fk
with fk.FeatureStore(sys.argv[1], progress=False) as store:
    print(store.gc(keep_days=0, keep_versions=1))
"""

TWO_VIEWS = BASIC_FEATURES + textwrap.dedent(
    """
    @fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7))
    def zz_trip_km(trips: pl.DataFrame) -> pl.DataFrame:
        return trips.select("driver_id", "event_timestamp", "created", km=pl.col("distance_km"))
    """
)


def test_gc_decides_what_a_view_keeps_under_its_lock(make_repo, tmp_path: Path):
    """A materialization that commits while gc works on another view keeps its files."""
    repo = make_repo(TWO_VIEWS, data={"data/trips.parquet": trips_table(ROWS)})
    spine = pa.table({"driver_id": [1, 2], "event_timestamp": pa.array([ts(2), ts(4)], pa.timestamp("us", tz="UTC"))})
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
        store.materialize(ts(0), ts(2))
        pause = tmp_path / "pause"
        pause.mkdir()
        env = {**os.environ, "FEATUREKIT_PAUSE_AT": "gc.view:2", "FEATUREKIT_PAUSE_DIR": str(pause)}
        with subprocess.Popen([sys.executable, "-c", GC_SCRIPT, str(repo)], cwd=PROJECT, env=env) as gc:
            deadline = time.monotonic() + 60
            while not (pause / "gc.view.reached").exists():  # gc is done with driver_stats, zz_trip_km is next
                assert gc.poll() is None, "gc ended before its second view"
                assert time.monotonic() < deadline, "gc never reached its second view"
                time.sleep(0.02)
            store.materialize(ts(0), ts(4), views=["zz_trip_km"])  # commits while gc runs
            (pause / "gc.view.go").touch()
            assert gc.wait(timeout=60) == 0
        head = store.registry.last_materialization(store.registry.active()["zz_trip_km"].version.id)
        assert head is not None
        for f in store.tables.data_files("zz_trip_km", 1, head.data_version):
            assert f.path.exists(), f"gc removed {f.path}, committed while it ran"
        assert store.training_set(spine, ["zz_trip_km"]).to_arrow().column("km").to_pylist() == [2.0, 4.0]
        assert store.check_integrity().ok


def test_a_nanosecond_spine_never_sees_an_event_after_it(make_repo, open_store):
    store = open_store(make_repo(data={"data/trips.parquet": trips_table(ROWS)}))
    store.apply()
    store.materialize(ts(0), ts(4))
    event = pd.Timestamp(ts(1, 5))  # driver 2's first row
    spine = pd.DataFrame(
        {
            "driver_id": [2, 2, 2, 2],
            "event_timestamp": [
                event - pd.Timedelta(nanoseconds=500),
                event - pd.Timedelta(nanoseconds=1),
                event,
                event + pd.Timedelta(nanoseconds=999),
            ],
        }
    )
    assert spine["event_timestamp"].dtype.unit == "ns"
    got = store.training_set(spine, ["driver_stats:avg_trip_km"]).to_pandas()
    assert got["avg_trip_km"].isna().tolist() == [True, True, False, False]
    assert got["event_timestamp"].tolist() == spine["event_timestamp"].tolist()  # the spine comes back as given


def test_any_ttl_python_can_express_works_offline_and_online(make_repo, open_store):
    features = BASIC_FEATURES.replace("ttl=timedelta(days=7)", "ttl=timedelta.max")
    store = open_store(make_repo(features, data={"data/trips.parquet": trips_table(ROWS)}))
    store.apply()
    store.materialize(ts(0), ts(4))
    spine = pa.table({"driver_id": [1, 2], "event_timestamp": pa.array([ts(400), ts(4)], pa.timestamp("us", tz="UTC"))})
    got = store.training_set(spine, ["driver_stats:avg_trip_km"]).to_arrow()
    assert got.column("avg_trip_km").to_pylist() == [2.0, 4.0]
    online = store.online_features({"driver_id": [1, 2]}, ["driver_stats:avg_trip_km"], at=ts(400))
    assert online.to_dict()["avg_trip_km"] == [2.0, 4.0]


@pytest.mark.slow
def test_the_demo_runs_inside_a_folder_named_my_repo_1_e(tmp_path: Path):
    project = tmp_path / "my repo #1 é"
    ignore = __import__("shutil").ignore_patterns(".featurekit", "data", "__pycache__", "*.parquet")
    __import__("shutil").copytree(PROJECT / "feature_repo", project / "feature_repo", ignore=ignore)
    done = subprocess.run(
        [sys.executable, "feature_repo/scripts/demo.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert pq.read_metadata(next((project / "feature_repo").rglob("*.parquet"))).num_rows > 0


SLOW_VIEW = """
import time
from datetime import timedelta
from pathlib import Path
import polars as pl
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource("data/trips.parquet", timestamp_field="event_timestamp", created_timestamp_field="created")

@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7))
def driver_stats(trips: pl.DataFrame) -> pl.DataFrame:
    if trips.height:
        Path(__file__).with_name("started").touch()
        time.sleep(0.5)
    return trips.select("driver_id", "event_timestamp", "created", km=pl.col("distance_km"))
"""

MATERIALIZE_SCRIPT = """
import sys
import featurekit as fk
from tests.conftest import ts
with fk.FeatureStore(sys.argv[1], progress=False) as store:
    try:
        store.materialize(ts(0), ts(30))
    except KeyboardInterrupt as exc:
        print(exc)
        sys.exit(130)
"""


def test_ctrl_c_stops_a_materialization_promptly_and_commits_nothing(make_repo):
    many = [(d, ts(d % 30, h), ts(d % 30, h), 1, 2, float(h)) for d in range(400) for h in range(10)]
    repo = make_repo(SLOW_VIEW, data={"data/trips.parquet": trips_table(many)}, config="offline: {batch_rows: 100}\n")
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
    with subprocess.Popen(
        [sys.executable, "-c", MATERIALIZE_SCRIPT, str(repo)], cwd=PROJECT, stdout=subprocess.PIPE, text=True
    ) as child:
        deadline = time.monotonic() + 60
        while not (repo / "started").exists():
            assert child.poll() is None, "the materialization ended before it started"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=60)
        took = time.monotonic() - sent
    assert child.returncode == 130
    assert "nothing was committed" in out
    assert took < 5, f"Ctrl-C took {took:.1f} s to stop a materialization of 40 batches x 0.5 s"
    with fk.FeatureStore(repo, progress=False) as store:
        assert store.registry.last_materialization(1) is None
