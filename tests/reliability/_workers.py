"""Process bodies for the concurrency suite (run with multiprocessing's "spawn" context).

They import only featurekit and report through a queue: what they committed, the error they got,
or (readers) every distinct result they read. Writers wait on a barrier after their imports and
their repo is loaded, so they really start their commands at the same moment.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

Row = tuple[Any, ...]


def canonical(columns: dict[str, list[Any]]) -> tuple[Row, ...]:
    """A hashable form of a result (rows as tuples, in order), to compare with committed states."""
    names = list(columns)
    return (tuple(names), *zip(*(columns[n] for n in names), strict=True))


def _outcome(exc: BaseException) -> tuple[str, str]:
    import featurekit as fk

    if isinstance(exc, fk.ConflictError):
        return ("conflict", str(exc))
    if isinstance(exc, fk.NotAppliedError):
        return ("not_applied", str(exc))
    return ("error", f"{type(exc).__name__}: {exc}")


def materialize(
    *,
    root: str,
    start: datetime,
    end: datetime,
    hold_s: float,
    barrier: Any,
    queue: Any,
    tag: str,
    delay_s: float = 0.0,
) -> None:
    """Materialize ``[start, end)`` of every view ``delay_s`` after the barrier; the function sleeps ``hold_s``."""
    os.environ["FK_TEST_HOLD_S"] = str(hold_s)
    import featurekit as fk

    try:
        with fk.FeatureStore(root, progress=False) as store:
            _ = store.definitions
            barrier.wait(timeout=120)
            time.sleep(delay_s)
            results = store.materialize(start, end)
        queue.put((tag, "ok", [r.registry_version for r in results]))
    except Exception as exc:  # noqa: BLE001 -- every outcome is reported to the test
        queue.put((tag, *_outcome(exc)))


def apply(*, root: str, barrier: Any, queue: Any, tag: str) -> None:
    """Apply the repo; report the registry version and each new version number the plan announced."""
    import featurekit as fk

    try:
        with fk.FeatureStore(root, progress=False) as store:
            _ = store.definitions
            barrier.wait(timeout=120)
            plan = store.apply()
        changes = [(c.view, c.kind, c.new_version) for c in plan.changes]
        queue.put((tag, "ok", plan.registry_version, changes))
    except Exception as exc:  # noqa: BLE001 -- every outcome is reported to the test
        queue.put((tag, *_outcome(exc)))


def read(
    *,
    root: str,
    features: list[str],
    spine: dict[str, list[Any]],
    entities: dict[str, list[Any]],
    at: datetime,
    ready: Any,
    stop: Any,
    queue: Any,
    tag: str,
) -> None:
    """Read training sets and online lookups in a loop until ``stop``; report distinct results and errors."""
    import pyarrow as pa

    import featurekit as fk

    offline: set[tuple[Row, ...]] = set()
    online: set[tuple[Row, ...]] = set()
    errors: list[str] = []
    reads = 0
    spine_table = pa.table(
        {
            "driver_id": pa.array(spine["driver_id"], pa.int64()),
            "event_timestamp": pa.array(spine["event_timestamp"], pa.timestamp("us", tz="UTC")),
        }
    )
    deadline = time.monotonic() + 300  # never outlive a broken test
    with fk.FeatureStore(Path(root), progress=False) as store:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                table = store.training_set(spine_table, features).to_arrow()
                offline.add(canonical(table.to_pydict()))
                online.add(canonical(store.online_features(entities, features, at=at).to_dict()))
            except Exception as exc:  # noqa: BLE001 -- the test counts every failure
                errors.append(f"{type(exc).__name__}: {exc}")
            reads += 1
            ready.set()
            time.sleep(0.005)  # two cores are shared with the writers: leave them room
    queue.put((tag, reads, offline, online, errors))
