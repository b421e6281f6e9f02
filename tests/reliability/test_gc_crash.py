"""gc killed at its named crash points: retained data stays readable, and a re-run converges.

gc records the data versions it removes in the registry before deleting any file, under the
view's writer lock. Killed after that record (``gc.recorded``) or halfway through the deletions
(``gc.mid_delete``), it must leave every retained version readable and identical, the store
passing ``verify``, and a second gc must end with exactly the files a gc that was never killed
leaves.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import featurekit as fk
from featurekit import faults
from tests.conftest import BASIC_FEATURES, store_files, trips_table, ts
from tests.reliability.conftest import subprocess_env

GC = "import featurekit as fk, sys\nfk.FeatureStore(sys.argv[1], progress=False).gc(keep_days=0, keep_versions=1)\n"
SPINE = pa.table(
    {
        "driver_id": pa.array([0, 1, 2, 3], pa.int64()),
        "event_timestamp": pa.array([ts(2), ts(4), ts(6), ts(8)], pa.timestamp("us", tz="UTC")),
    }
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two versions; windows materialized three times over, so gc has files of every kind to remove."""
    root = tmp_path_factory.mktemp("gc") / "repo"
    (root / "data").mkdir(parents=True)
    rows = [(d % 4, ts(d % 9, d % 24), ts(d % 9, d % 24), 1 + d % 3, 3, float(d)) for d in range(60)]
    pq.write_table(trips_table(rows), root / "data" / "trips.parquet")
    (root / "features.py").write_text(textwrap.dedent(BASIC_FEATURES))
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        store.materialize(ts(0), ts(9))
    changed = BASIC_FEATURES.replace('pl.col("distance_km")', 'pl.col("distance_km") * 2')
    (root / "features.py").write_text(textwrap.dedent(changed))
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        for _ in range(3):
            store.materialize(ts(0), ts(5))
            store.materialize(ts(5), ts(9))
    return root


def readable(root: Path) -> pa.Table:
    with fk.FeatureStore(root, progress=False) as store:
        return store.training_set(SPINE, ["driver_stats"]).to_arrow()


def data_files(root: Path) -> list[str]:
    return [f for f in store_files(root) if f.startswith(("offline/", "trash/")) and "_delta_log" not in f]


@pytest.mark.slow
@pytest.mark.parametrize("point", [p for p in faults.POINTS if p.startswith("gc.")])
def test_gc_killed_at_a_named_point(base: Path, tmp_path: Path, point: str):
    clean = tmp_path / "clean"
    shutil.copytree(base, clean)
    expected = readable(clean)
    with fk.FeatureStore(clean, progress=False) as store:
        report = store.gc(keep_days=0, keep_versions=1)
    assert report.files > 2
    clean_files = data_files(clean)
    assert readable(clean).equals(expected)

    root = tmp_path / "killed"
    shutil.copytree(base, root)
    before = data_files(root)
    env = subprocess_env(crash_at=point)
    child = subprocess.run(
        [sys.executable, "-c", GC, str(root)], env=env, capture_output=True, timeout=120, check=False
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    left = data_files(root)
    assert set(clean_files) <= set(left) <= set(before)  # only doomed files went, none retained
    if point == "gc.mid_delete":
        assert len(left) < len(before)
    assert readable(root).equals(expected)
    assert fk.verify_store(root).ok, fk.verify_store(root).problems
    with fk.FeatureStore(root, progress=False) as store:
        if point == "gc.view":  # killed before it decided anything: everything is still there
            assert left == before
            assert store.training_set(SPINE, ["driver_stats@v1"]).to_arrow().num_rows == SPINE.num_rows
        else:
            with pytest.raises(fk.RetentionError):  # the record came first: old versions say they are gone
                store.training_set(SPINE, ["driver_stats@v1"])
        store.gc(keep_days=0, keep_versions=1)
    assert data_files(root) == clean_files
    assert readable(root).equals(expected)
