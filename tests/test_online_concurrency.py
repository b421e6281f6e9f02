"""Lookups in other processes keep answering, with committed values only, while materialize writes."""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.synchronize import Event

import numpy as np
import pyarrow.parquet as pq
import pytest

import featurekit as fk
from tests.conftest import trips_table, ts
from tests.redis_server import online_yaml

DRIVERS = 2000


def _reader(root: str, serving: Event, stop: Event, queue: multiprocessing.Queue) -> None:
    """Look up until told to stop, then a little longer so the last commit is certainly served."""
    seen: set[object] = set()
    errors: list[str] = []
    calls = 0
    after_stop = 0
    with fk.FeatureStore(root, progress=False) as store:
        while after_stop < 50:
            if stop.is_set():
                after_stop += 1
            try:
                row = store.online_features({"driver_id": [7, 1500]}, ["driver_stats:avg_trip_km"], at=ts(6))
                seen.update(row.to_dict()["avg_trip_km"])
                calls += 1
                serving.set()
            except Exception as exc:  # noqa: BLE001 -- the test counts every failure
                errors.append(repr(exc))
    queue.put((calls, sorted(seen, key=str), errors))


def _trips(generation: int):
    ids = np.arange(DRIVERS)
    rows = [(int(d), ts(generation), ts(generation), 1, 1, float(generation)) for d in ids]
    return trips_table(rows)


@pytest.mark.slow
@pytest.mark.parametrize("online", ["redis", "sqlite"])  # stores another process can read
def test_lookups_during_materialize_see_old_or_new_values_and_never_fail(make_repo, open_store, request, online):
    root = make_repo(data={"data/trips.parquet": _trips(1)}, config=online_yaml(online, request))
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(2))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    serving, stop = context.Event(), context.Event()
    reader = context.Process(target=_reader, args=(str(root), serving, stop, queue))
    reader.start()
    # Wait for the reader's first answer (a spawned interpreter importing featurekit can take
    # seconds on a loaded machine), so it certainly sees the first committed value.
    assert serving.wait(120), "the reader process never served a lookup"
    for generation in range(2, 6):
        pq.write_table(_trips(generation), root / "data" / "trips.parquet")
        store.materialize(ts(generation), ts(generation + 1))
        time.sleep(0.2)  # let the reader serve each committed generation for a while
    stop.set()
    calls, seen, errors = queue.get(timeout=60)
    reader.join(60)
    assert errors == []
    assert calls > 100
    assert set(seen) <= {1.0, 2.0, 3.0, 4.0, 5.0}  # committed values only, never a mix or garbage
    assert {1.0, 5.0} <= set(seen)  # the first and the last committed values were both served
