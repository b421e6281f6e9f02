"""store.drift and `featurekit drift` over a real store: view windows, versions, training sets, the serving log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

import featurekit as fk
from featurekit.errors import DataError
from tests.conftest import ts
from tests.test_profiles import FEATURES, reads_no_data, trips, write_source


@pytest.fixture
def store(make_repo, open_store):
    """Ten days of trips, then ten days with distances twice as long (the km feature drifts)."""
    root = make_repo(FEATURES, {"data/trips.parquet": trips(1, (0, 10), 4000)})
    write_source(root, trips(1, (0, 10), 4000), trips(2, (10, 20), 4000, scale=2.0))
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(0) + timedelta(days=10))
    store.materialize(ts(0) + timedelta(days=10), ts(0) + timedelta(days=20))
    return store


FIRST = ("driver_stats", ts(0), ts(0) + timedelta(days=10))
SECOND = ("driver_stats", ts(0) + timedelta(days=10), ts(0) + timedelta(days=20))


def by_feature(report: fk.DriftReport) -> dict[str, str]:
    return {f.feature: f.status for f in report.features}


def test_two_windows_of_a_view_drift_where_the_data_changed(store):
    report = store.drift(reference=FIRST, current=SECOND)
    status = by_feature(report)
    assert status["km"] == "drift"
    assert status["conv_rate"] == "ok"
    assert status["offered"] == "ok"
    assert status["city"] == "ok"
    km = next(f for f in report.features if f.feature == "km")
    assert km.score is not None
    assert km.score > 0.2
    same = store.drift(["driver_stats:km", "conv_rate"], reference=FIRST, current=FIRST)
    assert [f.status for f in same.features] == ["ok", "ok"]
    assert all(s.value == pytest.approx(0.0, abs=1e-12) for f in same.features for s in f.statistics)


def test_a_training_set_file_is_a_reference_through_its_manifest_profile(store, tmp_path):
    rng = np.random.default_rng(0)
    times = ts(0) + timedelta(days=9, hours=23)
    spine = pa.table({"driver_id": rng.integers(0, 200, 2000), "event_timestamp": pa.array([times] * 2000)})
    path = store.training_set(spine, ["driver_stats:km", "driver_stats:conv_rate"]).to_parquet(tmp_path / "t.parquet")
    report = store.drift(reference=path, current=SECOND)
    assert by_feature(report) == {"km": "drift", "conv_rate": "ok"}
    assert store.drift(reference=str(path), current=FIRST).features[0].status in ("ok", "drift")


def test_an_other_version_is_profiled_on_the_references_bins(store, open_store):
    root = store.root
    changed = FEATURES.replace('km=pl.col("distance_km"),', 'km=pl.col("distance_km") * 1.0001,')
    (root / "features.py").write_text(changed)
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(0) + timedelta(days=20))
    v1 = store.profile("driver_stats@v1")
    v2 = store.profile("driver_stats@v2")
    assert v1.columns["km"].edges != v2.columns["km"].edges  # each version fixed its own edges
    report = store.drift(["km", "conv_rate"], reference="driver_stats@v1", current="driver_stats@v2")
    assert by_feature(report) == {"km": "ok", "conv_rate": "ok"}  # comparable: the current side was re-binned

    # v1's edges are bucket boundaries: v2's stored states count its rows on them exactly, no read
    edges = {name: column.edges for name, column in v1.columns.items() if column.edges}
    whole = (ts(-1), ts(21))
    read = store.profile("driver_stats@v2", window=whole, edges=edges)  # a window is always read
    quiet = open_store(root)
    reads_no_data(quiet)
    merged = quiet.profile("driver_stats@v2", edges=edges)
    for name, bins in edges.items():
        assert merged.columns[name].histogram == read.columns[name].histogram
        assert merged.columns[name].edges == bins
    stored = quiet.drift(["km", "conv_rate"], reference="driver_stats@v1", current="driver_stats@v2")
    from_read = store.drift(["km", "conv_rate"], reference="driver_stats@v1", current=read)
    for a, b in zip(stored.features, from_read.features, strict=True):
        assert (a.feature, a.status) == (b.feature, b.status)
        assert [s.value for s in a.statistics] == pytest.approx([s.value for s in b.statistics], rel=1e-9, abs=1e-12)


def test_the_serving_log_is_a_side(make_repo, open_store):
    config = "online:\n  type: sqlite\n  log: {path: served, sample: 1.0}\n"
    root = make_repo(FEATURES, {"data/trips.parquet": trips(3, (0, 10), 3000)}, config=config)
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(0) + timedelta(days=10))
    for start in range(0, 200, 20):
        store.online_features(
            {"driver_id": list(range(start, start + 20))}, ["driver_stats:km"], at=ts(0) + timedelta(days=10)
        )
    store.serving_log.flush()
    report = store.drift(["km"], reference="driver_stats", current=fk.ServedValues())
    assert report.features[0].current_count > 150
    assert report.features[0].status in ("ok", "insufficient data")
    with pytest.raises(DataError, match="no feature 'nope'"):
        store.drift(["nope"], reference="driver_stats", current=fk.ServedValues())


def test_cli_drift_fails_on_a_score_writes_html_and_json(store, tmp_path):
    runner = CliRunner()
    base = ["--repo", str(store.root), "drift", "--reference", "driver_stats", "--current", "driver_stats"]
    windows = ["--reference-window", FIRST[1].isoformat(), FIRST[2].isoformat()]
    windows += ["--current-window", SECOND[1].isoformat(), SECOND[2].isoformat()]
    html = tmp_path / "drift.html"
    failed = runner.invoke(main_group(), [*base, *windows, "--fail-on", "0.2", "--html", str(html)])
    assert failed.exit_code == 1, failed.output
    assert "km" in failed.output
    assert "drift" in failed.output
    assert "<svg" in html.read_text()
    calm = runner.invoke(main_group(), [*base, *windows, "conv_rate", "--fail-on", "0.2", "--json"])
    assert calm.exit_code == 0, calm.output
    assert json.loads(calm.output)["features"][0]["status"] == "ok"


def main_group():
    import featurekit.cli_quality  # noqa: F401  (registers the quality commands, as main() does)
    from featurekit.cli import cli

    return cli


DRIFT_SCRIPT = """
import json, sys
from datetime import datetime, timedelta, UTC
import featurekit as fk
start = datetime.fromisoformat(sys.argv[2])
side = ("driver_stats", start, start + timedelta(days=20))
with fk.FeatureStore(sys.argv[1], progress=False) as store:
    report = store.drift(["km"], reference=side, current=side)
print(json.dumps([(f.reference_count, f.current_count) for f in report.features]))
"""


def test_both_sides_of_a_drift_are_read_at_one_registry_version(make_repo, open_store, tmp_path):
    """A materialization committing between the two sides' reads changes neither side."""
    root = make_repo(FEATURES, {"data/trips.parquet": trips(1, (0, 10), 4000)})
    write_source(root, trips(1, (0, 10), 4000), trips(2, (10, 20), 4000, scale=2.0))
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(0) + timedelta(days=10))
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {**os.environ, "FEATUREKIT_PAUSE_AT": "drift.between_sides", "FEATUREKIT_PAUSE_DIR": str(pause)}
    project = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-c", DRIFT_SCRIPT, str(root), ts(0).isoformat()]
    with subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, text=True) as drift:
        deadline = time.monotonic() + 60
        while not (pause / "drift.between_sides.reached").exists():
            assert drift.poll() is None, "the drift ended before its current side"
            assert time.monotonic() < deadline, "the drift never reached its current side"
            time.sleep(0.02)
        store.materialize(ts(0) + timedelta(days=10), ts(0) + timedelta(days=20))  # commits between the reads
        (pause / "drift.between_sides.go").touch()
        out, _ = drift.communicate(timeout=60)
    assert drift.returncode == 0
    [(reference, current)] = json.loads(out)
    assert reference == current > 0
    later = store.drift(["km"], reference=FIRST, current=("driver_stats", ts(0), ts(0) + timedelta(days=20)))
    assert later.features[0].current_count > reference  # the second window is there for a report made now
