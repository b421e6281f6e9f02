"""Soak: materialize, push, apply and lookups from several processes at once, then verify and replay.

For a bounded time one process alternates materializations and pushes of one view, another
applies new versions of a second view and materializes them, and two readers run online lookups
and registry-pinned training sets. Then: no reader saw an error, ``verify`` finds nothing, and a
serial replay of every command that succeeded, in order, gives the same offline and online state.
"""

from __future__ import annotations

import multiprocessing
import queue
import shutil
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import featurekit as fk
from tests.conftest import BASIC_FEATURES, trips_table
from tests.reliability import _soak_workers as workers
from tests.reliability.conftest import online_rows

pytestmark = pytest.mark.slow

SECONDS = 25.0
SPINE = pa.table(
    {
        "driver_id": pa.array([0, 1, 2, 3, 0], pa.int64()),
        "event_timestamp": pa.array(
            [workers.T0 + timedelta(days=d) for d in (2, 5, 8, 9.5, 9.9)], pa.timestamp("us", tz="UTC")
        ),
    }
)
RIDER_SPINE = pa.table(
    {
        "rider_id": pa.array([0, 1, 2], pa.int64()),
        "event_timestamp": pa.array([workers.T0 + timedelta(days=8)] * 3, pa.timestamp("us", tz="UTC")),
    }
)


def make_repo(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "features.py").write_text(textwrap.dedent(BASIC_FEATURES))
    (root / "rides.py").write_text(workers.RIDES_A.format(factor=1))
    trips = [
        (
            d % 4,
            workers.T0 + timedelta(days=d % 9, hours=d % 24),
            workers.T0 + timedelta(days=d % 9, hours=d % 24),
            1 + d % 3,
            3,
            float(d),
        )
        for d in range(90)
    ]
    pq.write_table(trips_table(trips), root / "data" / "trips.parquet")
    rides = pa.table(
        {
            "rider_id": pa.array([r % 3 for r in range(30)], pa.int64()),
            "event_timestamp": pa.array(
                [workers.T0 + timedelta(hours=5 * r) for r in range(30)], pa.timestamp("us", tz="UTC")
            ),
            "fare": pa.array([float(r) for r in range(30)]),
        }
    )
    pq.write_table(rides, root / "data" / "rides.parquet")
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        store.materialize(workers.T0, workers.T0 + timedelta(days=9))  # readers start from committed data
    return root


def drain(q: Any) -> list[Any]:
    items = []
    while True:
        try:
            items.append(q.get(timeout=0.5))
        except queue.Empty:
            return items


def final_state(root: Path) -> dict[str, Any]:
    with fk.FeatureStore(root, progress=False) as store:
        head = store.registry.head_commit()
        return {
            "drivers": store.training_set(SPINE, ["driver_stats"], as_of=head).to_arrow(),
            "riders": store.training_set(RIDER_SPINE, ["rider_stats"], as_of=head).to_arrow(),
            "online": online_rows(root / ".featurekit"),
        }


def replay(root: Path, log: list[tuple[str, int]], rides: list[tuple[str, int]]) -> None:
    """The successful commands, serially: the rider applies first, then the driver commands."""
    for _, factor in rides:
        (root / "rides.py").write_text(workers.RIDES_A.format(factor=factor))
        with fk.FeatureStore(root, progress=False) as store:
            store.apply()
            store.materialize(workers.T0, workers.T0 + timedelta(days=9), views=["rider_stats"])
    with fk.FeatureStore(root, progress=False) as store:
        for kind, value in log:
            if kind == "materialize":
                start = workers.T0 + timedelta(days=value)
                store.materialize(start, start + timedelta(days=1), views=["driver_stats"])
            else:
                store.push("driver_stats", workers.pushed_rows(value), to="online_and_offline")


def test_soak_then_verify_and_replay(tmp_path: Path):
    root = make_repo(tmp_path / "soak")
    pristine = tmp_path / "pristine"
    shutil.copytree(root, pristine)
    context = multiprocessing.get_context("spawn")
    writes, applies, errors, reads = context.Queue(), context.Queue(), context.Queue(), context.Queue()
    until = time.time() + SECONDS
    processes = [
        context.Process(target=workers.materialize_and_push, args=(str(root), until, writes, errors)),
        context.Process(target=workers.apply_and_materialize, args=(str(root), until, applies, errors)),
        *(context.Process(target=workers.read, args=(str(root), until, reads, errors)) for _ in range(2)),
    ]
    for process in processes:
        process.start()
    log: list[tuple[str, int]] = []
    rides: list[tuple[str, int]] = []
    failures: list[str] = []
    while any(p.is_alive() for p in processes):  # keep every queue drained, or a full pipe blocks a child's exit
        log += drain(writes)
        rides += drain(applies)
        failures += drain(errors)
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    log += drain(writes)
    rides += drain(applies)
    failures += drain(errors)
    assert failures == [], f"{len(failures)} errors, the first: {failures[:3]}"
    counts = drain(reads)
    assert len(counts) == 2
    assert min(counts) > 10  # the readers really read during the writes
    assert sum(kind == "push" for kind, _ in log) > 2
    assert sum(kind == "materialize" for kind, _ in log) > 2
    assert len(rides) > 1
    report = fk.verify_store(root)
    assert report.ok, report.problems
    replay(pristine, log, rides)
    soaked, serial = final_state(root), final_state(pristine)
    assert soaked["drivers"].equals(serial["drivers"])
    assert soaked["riders"].equals(serial["riders"])
    assert soaked["online"] == serial["online"]
