"""What the web UI reads that the store records for it: each commit's freshness record (through a
backfill and a push) and each training set written to a file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

import featurekit as fk
from featurekit.manifest import load_manifest
from featurekit.offline.freshness import KIND, Freshness
from featurekit.ui.data import Reader, history_page
from featurekit.ui.html import Links
from featurekit.ui.pages import history_html
from tests.conftest import RepoFactory, trips_table, ts

TRIPS = [(1, ts(0, 1), ts(0, 1), 1, 2, 1.0), (2, ts(3, 5), ts(3, 5), 2, 4, 2.0), (1, ts(6, 2), ts(6, 2), 3, 4, 3.0)]


def records(store: fk.FeatureStore) -> list[Freshness]:
    version = store.registry.active()["driver_stats"].version
    return [Freshness.from_record(c, p) for c, p in store.registry.quality(version.id, KIND)]


def test_the_newest_event_survives_a_backfill_and_a_push(
    make_repo: RepoFactory, open_store: Callable[[Path], fk.FeatureStore]
) -> None:
    store = open_store(make_repo(data={"data/trips.parquet": trips_table(TRIPS)}))
    store.apply()
    store.materialize(ts(5), ts(7))
    store.materialize(ts(0), ts(5))  # a backfill of older rows
    row = {"driver_id": 3, "event_timestamp": ts(4), "created": ts(4), "accepted": 1, "offered": 2, "distance_km": 1.0}
    store.push("driver_stats", [row], to="online_and_offline")
    first, backfill, push = records(store)
    commits = [m.commit_id for m in store.registry.materializations()]
    assert [first.commit_id, backfill.commit_id, push.commit_id] == commits
    assert first.newest_event == ts(6, 2)
    assert backfill.newest_event == ts(6, 2)  # its own rows are older: the newest committed event stays
    assert push.newest_event == ts(6, 2)
    version_id = store.registry.active()["driver_stats"].version.id
    assert {v: c for v, (c, _) in store.registry.latest_quality(KIND).items()} == {version_id: push.commit_id}
    for record, m in zip((first, backfill, push), store.registry.materializations(), strict=True):
        assert record.started_at < m.committed_at


def test_each_training_set_written_is_recorded_at_its_moment(
    make_repo: RepoFactory, open_store: Callable[[Path], fk.FeatureStore], tmp_path: Path
) -> None:
    root = make_repo(data={"data/trips.parquet": trips_table(TRIPS)})
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(7))
    spine = tmp_path / "spine.parquet"
    pq.write_table(trips_table(TRIPS).select(["driver_id", "event_timestamp"]), spine)
    built = store.training_set(spine, ["driver_stats:conv_rate"])
    built.to_arrow()
    assert store.registry.training_sets() == []  # only files are recorded
    first = built.to_parquet(tmp_path / "sets" / "a.parquet")
    store.materialize(ts(0), ts(7))
    again = store.training_set(spine, ["driver_stats:conv_rate"], as_of=2).to_parquet(tmp_path / "b.parquet")
    a, b = store.registry.training_sets()
    assert (Path(a.path), Path(b.path)) == (first.resolve(), again.resolve())
    assert a.manifest == load_manifest(first).to_dict()
    assert (a.registry_version, b.registry_version) == (2, 2)  # b was rebuilt as of version 2 ...
    assert (a.head_commit, b.head_commit) == (2, 3)  # ... after version 3 was committed
    assert store.registry.training_sets(2) == [a]
    assert store.registry.training_set(b.id) == b


def test_history_lists_gc_runs_beside_the_commits(
    make_repo: RepoFactory, open_store: Callable[[Path], fk.FeatureStore]
) -> None:
    store = open_store(make_repo(data={"data/trips.parquet": trips_table(TRIPS)}))
    store.apply()
    store.materialize(ts(0), ts(7))
    store.materialize(ts(0), ts(7))  # replaces the window: data version 0 is only history now
    before = store.registry.head_commit()
    report = store.gc(keep_days=0, keep_versions=1)
    reader = Reader(store)
    (run,) = history_page(reader, None, 1)["gc_runs"]
    assert run["removed"] == len(report.removed) >= 1
    assert history_page(reader, None, 1)["total"] == before  # gc records removals, not a commit
    assert "Garbage collections" in history_html(history_page(reader, None, 1), Links(""))
