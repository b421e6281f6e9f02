"""One Registry (and one FeatureStore) shared by threads: every call behaves as if it ran alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import featurekit as fk
from featurekit.registry import NewVersion, Registry
from tests.conftest import trips_table, ts

SECONDS = 3.0  # how long the threads hammer the registry


def _new_version(fingerprint: str) -> NewVersion:
    return NewVersion(
        view="clicks",
        fingerprint=fingerprint,
        code_hash=fingerprint,
        definition={"features": ["n"]},
        schema=pa.schema([("user_id", pa.int64()), ("n", pa.int64())]),
        source_schema=None,
        source_text=f"# {fingerprint}",
        location="offline/clicks",
    )


def _run(workers: list[Callable[[], None]], errors: list[str]) -> None:
    """Run each worker in its own thread; any exception is recorded, none escapes."""

    def guarded(work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as exc:  # noqa: BLE001 -- the test counts every failure
            errors.append(repr(exc))

    threads = [threading.Thread(target=guarded, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 120)
    assert not any(t.is_alive() for t in threads), "a thread hung on the registry"


def test_threads_sharing_one_registry_lose_no_commit_and_raise_nothing(tmp_path: Path):
    # A folder name with spaces, '#', '%' and non-ASCII: connections opened by other threads must find it too.
    registry = Registry(tmp_path / "store #1 50% ünïcode" / "registry.db")
    registry.apply([_new_version("f0")], {"clicks": ("f0", {})}, expected_apply=0, summary="first", git_commit=None)
    version_id = registry.version("clicks", 1).id
    deadline = time.monotonic() + SECONDS
    errors: list[str] = []
    materialized: list[int] = []  # commit ids of the materializations that reported success
    applied: list[int] = []
    reads = [0]

    def materialize() -> None:
        while time.monotonic() < deadline:
            last = registry.last_materialization(version_id)
            base = None if last is None else last.data_version
            try:
                done = registry.record_materialization(
                    version_id,
                    base_data_version=base,
                    data_version=(base or 0) + 1,
                    window=(ts(0), ts(1)),
                    rows=1,
                    mode="window",
                    summary="materialize",
                )
            except fk.ConflictError:
                continue  # another thread committed first: the compare-and-set refused this one
            assert done.data_version == (base or 0) + 1
            materialized.append(done.commit_id)
            registry.record_online_load([done.commit_id])

    def apply() -> None:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            fingerprint = f"f{threading.get_ident()}-{n}"
            head = registry.head_apply()
            try:
                applied.append(
                    registry.apply(
                        [_new_version(fingerprint)],
                        {"clicks": (fingerprint, {})},
                        expected_apply=head,
                        summary="apply",
                        git_commit=None,
                    )
                )
            except fk.ConflictError:
                continue

    def read() -> None:
        while time.monotonic() < deadline:
            commits = registry.commits()
            ids = [c.id for c in commits]
            assert ids == list(range(1, len(ids) + 1))
            assert registry.commit(ids[-1]).id == ids[-1]
            assert registry.head_commit() >= ids[-1]
            assert registry.head_apply() >= 1
            assert registry.commit_at(datetime.now(UTC) + timedelta(days=1)) >= ids[-1]
            assert "clicks" in registry.active()
            assert registry.active(as_of=1)["clicks"].version.fingerprint == "f0"
            assert registry.versions("clicks")[0].fingerprint == "f0"
            assert registry.version("clicks", 1).id == version_id
            assert registry.version_by_fingerprint("clicks", "f0").id == version_id
            data_versions = [m.data_version for m in registry.materializations(version_id)]
            assert data_versions == list(range(1, len(data_versions) + 1))  # compare-and-set: no gap, no twin
            registry.last_materialization(version_id)
            registry.data_span(version_id)
            registry.online_pending(version_id)
            registry.pushed(version_id, "no such digest")
            registry.applied_sets()
            registry.removal(version_id, 1)
            registry.removals()
            with pytest.raises(fk.UnknownNameError):
                registry.version("clicks", 10**6)
            reads[0] += 1

    try:
        _run([materialize] * 3 + [apply] * 2 + [read] * 4, errors)
        assert errors == []
        assert materialized, "no materialization committed"
        assert reads[0] > 0
        commits = registry.commits()
        assert len(commits) == 1 + len(materialized) + len(applied)  # every success is one commit, nothing else
        recorded = registry.materializations(version_id)
        assert sorted(materialized) == [m.commit_id for m in recorded]
        assert [m.data_version for m in recorded] == list(range(1, len(recorded) + 1))
        assert sorted(applied) == [c.id for c in commits if c.kind == "apply"][1:]
        assert registry.online_pending(version_id) == []
        assert len(registry.versions("clicks")) == 1 + len(applied)
    finally:
        registry.close()


def test_a_feature_store_answers_registry_reads_while_another_thread_pushes(make_repo, open_store):
    root = make_repo(data={"data/trips.parquet": trips_table([(1, ts(0), ts(0), 1, 2, 1.0)])})
    store = open_store(root)
    store.apply()
    pushes = 12
    done = threading.Event()
    errors: list[str] = []
    results: list[fk.PushResult] = []
    reads = [0]

    def push() -> None:
        try:
            deadline = time.monotonic() + 120
            for n in range(pushes):
                if time.monotonic() > deadline:
                    break
                row = {
                    "driver_id": n,
                    "event_timestamp": ts(1, n),
                    "created": ts(1, n),
                    "accepted": 1,
                    "offered": 2,
                    "distance_km": float(n),
                }
                results.append(store.push("driver_stats", [row], to="online_and_offline"))
        finally:
            done.set()

    def read() -> None:
        while not done.is_set():
            (info,) = store.list_views()
            assert info.name == "driver_stats"
            assert store.show("driver_stats").version.version == 1
            entries = store.history()
            assert entries[0].kind == "apply"
            reads[0] += 1

    _run([push] + [read] * 7, errors)
    assert errors == []
    assert len(results) == pushes
    assert reads[0] > 0
    assert [c.kind for c in store.registry.commits()] == ["apply"] + ["push"] * pushes
    recorded = store.registry.materializations()
    assert [r.data_version for r in results] == [m.data_version for m in recorded]  # Delta versions 0, 1, ...
    assert [m.data_version for m in recorded] == list(range(pushes))
    assert [e.kind for e in store.history()].count("push") == pushes


def test_close_closes_the_connections_of_every_thread(tmp_path: Path):
    path = tmp_path / "registry.db"
    registry = Registry(path)
    registry.apply([_new_version("f0")], {"clicks": ("f0", {})}, expected_apply=0, summary="first", git_commit=None)
    errors: list[str] = []
    _run([lambda: registry.active() and None] * 4, errors)
    assert errors == []
    registry.close()
    registry.close()  # twice is fine
    # SQLite removes the write-ahead log when the file's last connection closes: none is left open.
    assert not Path(f"{path}-wal").exists()
    with pytest.raises(fk.RegistryError, match="closed"):
        registry.head_commit()


def test_a_thread_never_creates_an_empty_registry_in_place_of_a_missing_one(tmp_path: Path):
    path = tmp_path / "registry.db"
    registry = Registry(path)
    path.rename(tmp_path / "moved.db")  # the first connection keeps the file it opened
    errors: list[str] = []
    caught: list[Exception] = []

    def read() -> None:
        try:
            registry.head_commit()
        except fk.FeaturekitError as exc:
            caught.append(exc)

    _run([read], errors)
    registry.close()
    assert errors == []  # the failure was a featurekit error, not a raw sqlite3 one
    assert len(caught) == 1
    assert isinstance(caught[0], fk.RegistryError)
    assert "moved or deleted" in str(caught[0])
    assert not path.exists()
