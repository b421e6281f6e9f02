"""Concurrency suite: writers racing each other in separate processes, with readers running throughout.

* two processes materialize the same view with overlapping windows: each commits or fails with a
  ConflictError naming the view, the registry holds exactly one commit per success, and the final
  data equals a serial replay of the committed windows;
* four processes apply different views at once, then four apply different versions of one view:
  every apply lands, nothing is lost and version numbers are unique;
* an apply races a materialization of the view it changes;
* during all of that, other processes build training sets and look features up online: zero
  errors, and every result is one a committed state gives (training sets whole, online rows per
  entity).

Processes use multiprocessing's "spawn" context; their bodies live in ``_workers.py``.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import featurekit as fk
from tests.conftest import RepoFactory, trips_table, ts
from tests.reliability import _workers
from tests.reliability._workers import canonical
from tests.reliability.conftest import duplicate_rows, offline_rows, online_rows

CONTEXT = multiprocessing.get_context("spawn")
TIMEOUT_S = 120
HOLD_S = 1.0  # a writer's feature function sleeps this long while it holds the view

FEATURES = """
import os
import time
import polars as pl
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource("data/trips.parquet", created_timestamp_field="created")

@fk.feature_view(entity=driver, source=trips)
def driver_stats(trips: pl.DataFrame) -> pl.DataFrame:
    time.sleep(float(os.environ.get("FK_TEST_HOLD_S", "0")))
    return trips.select("driver_id", "event_timestamp", "created", km=pl.col("distance_km") * FACTOR)
"""

EXTRA_VIEW = """

@fk.feature_view(entity=driver, source=trips)
def NAME(trips: pl.DataFrame) -> pl.DataFrame:
    return trips.select("driver_id", "event_timestamp", "created", FEATURE=pl.col("accepted") + 1)
"""

PINNED = ["driver_stats@v1"]  # what the readers read: stays readable whatever gets applied
SPINE = {
    "driver_id": [d for d in range(1, 7) for _ in range(4)],
    "event_timestamp": [t for _ in range(1, 7) for t in (ts(2), ts(5), ts(8.5), ts(9.9))],
}
ENTITIES = {"driver_id": list(range(1, 7))}
AT = ts(30)


def features(factor: int = 1, extra: tuple[str, ...] = ()) -> str:
    text = FEATURES.replace("FACTOR", str(factor))
    for name in extra:
        text += EXTRA_VIEW.replace("NAME", name).replace("FEATURE", f"{name}_accepted")
    return text


def trips() -> pa.Table:
    return trips_table(
        [(d, ts(day, d), ts(day, d), d + day, 10, float(10 * d + day)) for d in range(1, 6) for day in range(10)]
    )


def new_repo(make_repo: RepoFactory, text: str, store: Path | None = None) -> Path:
    config = f"store_dir: {store}\n" if store is not None else None
    return make_repo(text, data={"data/trips.parquet": trips()}, config=config)


def spine_table() -> pa.Table:
    return pa.table(
        {
            "driver_id": pa.array(SPINE["driver_id"], pa.int64()),
            "event_timestamp": pa.array(SPINE["event_timestamp"], pa.timestamp("us", tz="UTC")),
        }
    )


# -- readers ----------------------------------------------------------------------------------------


@dataclass
class ReaderReport:
    reads: int = 0
    offline: set[Any] = field(default_factory=set)
    online: set[Any] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


@contextmanager
def readers(root: Path, count: int = 2) -> Iterator[ReaderReport]:
    """Reader processes building training sets and looking up online features until the block ends."""
    report = ReaderReport()
    stop, queue = CONTEXT.Event(), CONTEXT.Queue()
    started = []
    for index in range(count):
        ready = CONTEXT.Event()
        process = CONTEXT.Process(
            target=_workers.read,
            kwargs={
                "root": str(root),
                "features": PINNED,
                "spine": SPINE,
                "entities": ENTITIES,
                "at": AT,
                "ready": ready,
                "stop": stop,
                "queue": queue,
                "tag": f"reader{index}",
            },
        )
        process.start()
        started.append((process, ready))
    try:
        for _, ready in started:
            assert ready.wait(TIMEOUT_S), "a reader never completed a read"
        yield report
    finally:
        stop.set()
        for _ in started:
            _, reads, offline, online, errors = queue.get(timeout=TIMEOUT_S)
            report.reads += reads
            report.offline |= offline
            report.online |= online
            report.errors += errors
        finish([process for process, _ in started])


@dataclass
class States:
    """What each committed state shows: whole training sets, and each entity's online rows."""

    training: set[Any] = field(default_factory=set)
    online_rows: dict[Any, set[Any]] = field(default_factory=dict)
    final_training: pa.Table | None = None
    final_root: Path | None = None


def replay(make_repo: RepoFactory, windows: list[tuple[datetime, datetime]]) -> States:
    """Serially materialize ``windows`` in a fresh repo, recording what readers see after each commit."""
    root = new_repo(make_repo, features())
    states = States(final_root=root)
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        for start, end in windows:
            store.materialize(start, end)
            table = store.training_set(spine_table(), PINNED).to_arrow()
            states.training.add(canonical(table.to_pydict()))
            states.final_training = table
            looked_up = canonical(store.online_features(ENTITIES, PINNED, at=AT).to_dict())
            for row in looked_up[1:]:
                states.online_rows.setdefault(row[0], set()).add(row)
    return states


def check_reads(report: ReaderReport, states: States) -> None:
    """Readers never failed, and every result was that of a committed state."""
    assert report.errors == []
    assert report.reads > 0
    assert report.offline <= states.training
    for response in report.online:
        for row in response[1:]:
            assert row in states.online_rows.get(row[0], set()), row


def start_all(processes: list[Any]) -> None:
    for process in processes:
        process.start()


def collect(queue: Any, processes: list[Any]) -> dict[str, tuple[Any, ...]]:
    results = {}
    for _ in processes:
        tag, *outcome = queue.get(timeout=TIMEOUT_S)
        results[tag] = tuple(outcome)
    finish(processes)
    assert [p.exitcode for p in processes] == [0] * len(processes)
    return results


def finish(processes: list[Any]) -> None:
    """Join the processes; one still running after the timeout is terminated and fails the test."""
    hung = []
    for process in processes:
        process.join(TIMEOUT_S)
        if process.is_alive():
            process.terminate()
            process.join(10)
            hung.append(process.name)
    assert hung == [], f"processes still running after {TIMEOUT_S}s: {hung}"


# -- two writers, one view ---------------------------------------------------------------------------


@pytest.mark.slow
def test_two_writers_with_overlapping_windows_commit_or_conflict(make_repo: RepoFactory):
    root = new_repo(make_repo, features())
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        store.materialize(ts(0), ts(3))
    rounds = [((ts(1), ts(6)), (ts(4), ts(9))), ((ts(0), ts(5)), (ts(2), ts(10)))]
    outcomes: list[tuple[tuple[datetime, datetime], tuple[Any, ...]]] = []
    with readers(root) as report:
        for windows in rounds:
            barrier, queue = CONTEXT.Barrier(len(windows)), CONTEXT.Queue()
            processes = [
                CONTEXT.Process(
                    target=_workers.materialize,
                    kwargs={
                        "root": str(root),
                        "start": window[0],
                        "end": window[1],
                        "hold_s": HOLD_S,
                        "barrier": barrier,
                        "queue": queue,
                        "tag": f"w{i}",
                    },
                )
                for i, window in enumerate(windows)
            ]
            start_all(processes)
            results = collect(queue, processes)
            outcomes += [(window, results[f"w{i}"]) for i, window in enumerate(windows)]

    for _, outcome in outcomes:
        assert outcome[0] in ("ok", "conflict"), outcome
        if outcome[0] == "conflict":
            assert "driver_stats" in outcome[1]
    successes = [(window, outcome[1][0]) for window, outcome in outcomes if outcome[0] == "ok"]
    assert len(successes) >= len(rounds)  # at least one writer per round commits
    assert len(successes) < len(outcomes), "the writers never overlapped: no conflict was exercised"

    with fk.FeatureStore(root, progress=False) as store:
        commits = store.registry.materializations()[1:]  # after the first window
        assert sorted(m.commit_id for m in commits) == sorted(version for _, version in successes)
        assert Counter((m.window_start, m.window_end) for m in commits) == Counter(w for w, _ in successes)
        data_versions = [m.data_version for m in store.registry.materializations()]
        assert data_versions == sorted(set(data_versions))
        final = store.training_set(spine_table(), PINNED).to_arrow()
        latest = store.registry.materializations()[-1]
        stored = offline_rows(store.store_root, "driver_stats", 1, latest.data_version)
        online = online_rows(store.store_root)

    states = replay(make_repo, [(ts(0), ts(3)), *((m.window_start, m.window_end) for m in commits)])
    assert states.final_training is not None
    assert final.equals(states.final_training)
    assert states.final_root is not None
    with fk.FeatureStore(states.final_root, progress=False) as store:
        replayed = store.registry.materializations()[-1]
        assert stored.equals(offline_rows(store.store_root, "driver_stats", 1, replayed.data_version))
        assert online == online_rows(store.store_root)
    assert duplicate_rows(stored, ["driver_id"], "event_timestamp") == []
    check_reads(report, states)


# -- concurrent applies ------------------------------------------------------------------------------


def shared_store_base(make_repo: RepoFactory, tmp_path: Path) -> tuple[Path, Path]:
    """A repo whose store lives outside it (other repos share it); driver_stats v1 applied and materialized."""
    store = tmp_path / "shared_store"
    root = new_repo(make_repo, features(), store)
    with fk.FeatureStore(root, progress=False) as handle:
        handle.apply()
        handle.materialize(ts(0), ts(5))
    return root, store


def run_applies(roots: list[Path]) -> dict[str, tuple[Any, ...]]:
    barrier, queue = CONTEXT.Barrier(len(roots)), CONTEXT.Queue()
    processes = [
        CONTEXT.Process(
            target=_workers.apply, kwargs={"root": str(root), "barrier": barrier, "queue": queue, "tag": f"a{i}"}
        )
        for i, root in enumerate(roots)
    ]
    start_all(processes)
    return collect(queue, processes)


@pytest.mark.slow
def test_four_processes_apply_different_views_at_once(make_repo: RepoFactory, tmp_path: Path):
    base, store_dir = shared_store_base(make_repo, tmp_path)
    names = [f"view_{i}" for i in range(4)]
    roots = [new_repo(make_repo, features(extra=(name,)), store_dir) for name in names]
    states = replay(make_repo, [(ts(0), ts(5))])
    with readers(base) as report:
        results = run_applies(roots)

    assert all(outcome[0] == "ok" for outcome in results.values()), results
    versions = {tag: outcome[1] for tag, outcome in results.items()}
    assert len(set(versions.values())) == 4  # four distinct registry versions
    with fk.FeatureStore(base, progress=False) as store:
        registry = store.registry
        applies = [c.id for c in registry.commits() if c.kind == "apply"]
        assert sorted(versions.values()) == applies[1:]  # one commit per success, none lost
        for i, name in enumerate(names):
            active = registry.active(as_of=versions[f"a{i}"])
            assert {n: a.version.version for n, a in active.items()} == {"driver_stats": 1, name: 1}
            assert [v.version for v in registry.versions(name)] == [1]
            announced = {(view, kind): number for view, kind, number in results[f"a{i}"][2]}
            assert announced[(name, "new")] == 1
        every = [(v.view.lower(), v.version) for v in registry.versions()]
        assert len(every) == len(set(every)) == 5
    check_reads(report, states)


@pytest.mark.slow
def test_four_processes_apply_versions_of_one_view_at_once(make_repo: RepoFactory, tmp_path: Path):
    base, store_dir = shared_store_base(make_repo, tmp_path)
    roots = [new_repo(make_repo, features(factor=i + 2), store_dir) for i in range(4)]
    states = replay(make_repo, [(ts(0), ts(5))])
    with readers(base) as report:
        results = run_applies(roots)

    assert all(outcome[0] == "ok" for outcome in results.values()), results
    with fk.FeatureStore(base, progress=False) as store:
        registry = store.registry
        versions = registry.versions("driver_stats")
        assert [v.version for v in versions] == [1, 2, 3, 4, 5]
        assert len({v.fingerprint for v in versions}) == 5
        applies = [c.id for c in registry.commits() if c.kind == "apply"]
        assert sorted(outcome[1] for outcome in results.values()) == applies[1:]
        for outcome in results.values():
            number = registry.active(as_of=outcome[1])["driver_stats"].version.version
            assert outcome[2] == [("driver_stats", "changed", number)]  # the plan announced the registered number
    check_reads(report, states)


# -- an apply racing a materialization ---------------------------------------------------------------


@pytest.mark.slow
def test_apply_racing_a_materialization(make_repo: RepoFactory, tmp_path: Path):
    base, store_dir = shared_store_base(make_repo, tmp_path)
    changed = new_repo(make_repo, features(factor=2), store_dir)
    windows = [(ts(0), ts(5))]
    with readers(base) as report:
        for race in range(2):
            if race:  # back to v1 (from the base repo), so that the race starts from the same head
                with fk.FeatureStore(base, progress=False) as store:
                    assert store.apply().has_changes
            barrier, queue = CONTEXT.Barrier(2), CONTEXT.Queue()
            # The first race starts both at once (the materialization passes its applied-code check
            # before the apply commits); in the second the materialization starts late, after it.
            processes = [
                CONTEXT.Process(
                    target=_workers.materialize,
                    kwargs={
                        "root": str(base),
                        "start": ts(2),
                        "end": ts(10),
                        "hold_s": HOLD_S,
                        "barrier": barrier,
                        "queue": queue,
                        "tag": "m",
                        "delay_s": 2.0 * race,
                    },
                ),
                CONTEXT.Process(
                    target=_workers.apply, kwargs={"root": str(changed), "barrier": barrier, "queue": queue, "tag": "a"}
                ),
            ]
            start_all(processes)
            results = collect(queue, processes)
            assert results["a"][0] == "ok", results
            assert results["m"][0] in ("ok", "not_applied"), results
            if results["m"][0] == "not_applied":
                assert "driver_stats" in results["m"][1]
            else:
                windows.append((ts(2), ts(10)))
                with fk.FeatureStore(base, progress=False) as store:
                    (version,) = results["m"][1]
                    recorded = [m for m in store.registry.materializations() if m.commit_id == version]
                    assert [m.version_id for m in recorded] == [store.registry.version("driver_stats", 1).id]

    with fk.FeatureStore(base, progress=False) as store:
        registry = store.registry
        assert [v.version for v in registry.versions("driver_stats")] == [1, 2]
        assert len(registry.materializations()) == len(windows)
        final = store.training_set(spine_table(), PINNED).to_arrow()
    states = replay(make_repo, windows)
    assert states.final_training is not None
    assert final.equals(states.final_training)
    check_reads(report, states)


def test_registry_compare_and_set_conflict_names_the_view(make_repo: RepoFactory):
    """The registry's second guard (a writer that got past the lock) must name the view like the first."""
    root = new_repo(make_repo, features())
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        store.materialize(ts(0), ts(3))
        version = store.registry.version("driver_stats", 1)
        with pytest.raises(fk.ConflictError) as caught:
            store.registry.record_materialization(
                version.id,
                base_data_version=None,
                data_version=99,
                window=(ts(0), ts(1)),
                rows=0,
                mode="window",
                summary="a stale writer",
            )
    assert "driver_stats" in str(caught.value)


def test_an_apply_announces_the_version_number_it_registered(make_repo: RepoFactory, tmp_path: Path):
    """The race of store.apply, step by step: plan, two other applies land, then the commit."""
    store_dir = tmp_path / "shared_store"
    first, late, other = (new_repo(make_repo, features(factor=f), store_dir) for f in (1, 2, 3))
    with fk.FeatureStore(first, progress=False) as store:
        store.apply()
    with fk.FeatureStore(late, progress=False) as store:
        plan = store.plan()  # what store.apply() does first...
        for root in (other, first):  # ...meanwhile v2 is registered, then the head goes back to v1
            with fk.FeatureStore(root, progress=False) as meanwhile:
                meanwhile.apply()
        # ...then store.apply() commits the plan: it is stale (an apply landed since), even though the
        # head's fingerprints are back to what it planned against (A-B-A), so it must not commit.
        with pytest.raises(fk.ConflictError, match="another apply"):
            store.registry.apply(
                plan.new_versions,
                plan.active,
                expected_apply=plan.expected_apply,
                summary="late apply",
                git_commit=None,
            )
        applied = store.apply()  # what store.apply() does next: plan again, then commit
        (change,) = applied.changes
        registered = store.registry.active()["driver_stats"].version.version
    assert change.new_version == registered == 3, (
        f"the plan announced v{change.new_version}, the registry has v{registered}"
    )
