"""The registry: append-only history, reads as of a past version, concurrent applies."""

from __future__ import annotations

import multiprocessing

import pytest

import featurekit as fk
from tests.conftest import BASIC_FEATURES, trips_table, ts

ROWS = [(1, ts(0), ts(0), 1, 2, 1.0), (2, ts(1), ts(1), 1, 1, 2.0)]


def test_history_is_append_only_and_readable_as_of_any_version(make_repo, open_store):
    root = make_repo(data={"data/trips.parquet": trips_table(ROWS)})
    store = open_store(root)
    first = store.apply().registry_version
    store.materialize(ts(0), ts(5))
    (root / "features.py").write_text(BASIC_FEATURES.replace("avg_trip_km=", "km="))
    second = open_store(root).apply().registry_version
    assert first is not None
    assert second is not None
    assert second > first
    assert store.registry.active(as_of=first)["driver_stats"].version.features == ["conv_rate", "avg_trip_km"]
    assert store.registry.active(as_of=second)["driver_stats"].version.features == ["conv_rate", "km"]
    assert store.registry.active(as_of=0) == {}
    commits = store.registry.commits()
    assert [c.kind for c in commits] == ["apply", "materialize", "apply"]
    assert [c.id for c in commits] == [1, 2, 3]
    times = [c.committed_at for c in commits]
    assert times == sorted(times)
    assert len(set(times)) == 3
    assert store.registry.commit_at(times[1]) == 2
    v1 = store.registry.version("driver_stats", 1)
    assert "avg_trip_km=" in v1.source_text
    assert v1.code_hash != store.registry.version("driver_stats", 2).code_hash
    m = store.registry.last_materialization(v1.id)
    assert m is not None
    assert (m.window_start, m.window_end, m.rows) == (ts(0), ts(5), 2)


def test_unknown_version_lists_the_known_ones(make_repo, open_store):
    store = open_store(make_repo(data={"data/trips.parquet": trips_table(ROWS)}))
    store.apply()
    with pytest.raises(fk.UnknownNameError, match="registered versions: v1"):
        store.registry.version("driver_stats", 7)
    with pytest.raises(fk.UnknownNameError, match="did you mean 'driver_stats'"):
        store.registry.version("driver_stat", 1)


def test_helper_function_and_constant_changes_make_new_versions(make_repo, open_store):
    features = (
        BASIC_FEATURES.replace('avg_trip_km=pl.col("distance_km"),', 'avg_trip_km=scale(pl.col("distance_km")),')
        + "\n\nFACTOR = 2\n\ndef scale(column):\n    return column * FACTOR\n"
    )
    root = make_repo(features, data={"data/trips.parquet": trips_table(ROWS)})
    assert open_store(root).apply().changes[0].kind == "new"
    (root / "features.py").write_text(features.replace("FACTOR = 2", "FACTOR = 3"))
    assert open_store(root).apply().changes[0].kind == "changed"
    (root / "features.py").write_text(features.replace("return column * FACTOR", "return column * FACTOR + 0"))
    assert open_store(root).apply().changes[0].kind == "changed"


def _apply_in_process(root: str, queue: multiprocessing.Queue) -> None:
    with fk.FeatureStore(root, progress=False) as store:
        plan = store.apply()
        queue.put([c.kind for c in plan.changes])


@pytest.mark.slow
def test_concurrent_applies_lose_nothing(make_repo, open_store):
    root = make_repo(data={"data/trips.parquet": trips_table(ROWS)})
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_apply_in_process, args=(str(root), queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    kinds = sorted(queue.get(timeout=5)[0] for _ in workers)
    assert kinds == ["new", "unchanged", "unchanged", "unchanged"]
    store = open_store(root)
    assert [c.kind for c in store.registry.commits()] == ["apply"]
    assert [v.version for v in store.registry.versions()] == [1]
