"""The web UI's kept profiles and drift under concurrent requests while materializations commit.

Threads request pages of a real ``featurekit ui`` process (and, in-process, of one shared
:class:`~featurekit.ui.data.Reader` whose caches hold only two entries, so they evict all the
time) while this process materializes new windows, re-materializes one inside two earlier ones
(their kept rows are then read, not merged) and pushes rows. Every answer must be a 200 whose
profile equals what ``FeatureStore.profile`` gives as of the registry version the page shows, and
every window drift what ``FeatureStore.drift`` gives for the same windows as of that version (the
windows' files come from the Delta log's add actions, kept per data version in
:class:`~featurekit.offline.tables.OfflineTables` and shared by the threads).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import featurekit as fk
from featurekit.example import trips
from featurekit.quality.sides import ViewData
from featurekit.ui import data
from tests.conftest import RepoFactory, ts
from tests.ui_helpers import start_ui

pytestmark = pytest.mark.slow
PAGES = ["views/driver_stats.json", "views.json", "history.json", "views/driver_stats.json?as_of={early}"]


def _writes(store: fk.FeatureStore) -> None:
    """New windows, a window inside two earlier ones, a push, more windows (checkpoints form and lapse)."""
    for day in range(10, 20):
        store.materialize(ts(day), ts(day + 1))
    store.materialize(ts(3, 12), ts(4, 12))
    row = {"driver_id": 1001, "event_timestamp": ts(15), "created": ts(15), "accepted": 1, "offered": 3}
    store.push("driver_stats", [{**row, "distance_km": 7.5}], to="online_and_offline")
    for day in range(20, 26):
        store.materialize(ts(day), ts(day + 1))


def _hammer(ask: Callable[[str], dict[str, Any]], pages: list[str], done: threading.Event) -> list[Any]:
    """Ask every page in turn until ``done`` (and once more after it); what came back, or the error."""
    seen: list[Any] = []
    last_round = False
    while not last_round:
        last_round = done.is_set()
        for page in pages:
            try:
                seen.append((page, ask(page)))
            except Exception as exc:  # noqa: BLE001 (reported by the test, with the page)
                seen.append((page, exc))
    return seen


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=list)


WINDOWS = ((ts(5), ts(12)), (ts(12), ts(22)))  # the current window grows while the threads read


def _unlabelled(drift: dict[str, Any]) -> str:
    """A drift report without its sides' labels (a page made at the head says no "as of")."""
    return _canonical({k: v for k, v in drift.items() if k not in ("reference", "current")})


def _check_window_drifts(store: fk.FeatureStore, answers: list[Any]) -> set[int]:
    """Every window drift answer is the API's drift of the same windows as of its registry version."""
    expected: dict[int, str] = {}
    for page, found in answers:
        if page != "views/driver_stats/drift":
            continue
        at = found["registry_version"]
        if at not in expected:
            reference, current = (ViewData("driver_stats@v1", *w, as_of=at) for w in WINDOWS)
            expected[at] = _unlabelled(store.drift(reference=reference, current=current).to_dict())
        assert _unlabelled(found["drift"]) == expected[at], (page, at)
    return set(expected)


def _check(store: fk.FeatureStore, answers: list[Any]) -> int:
    """Every answer a page, every profile the API's as of the page's registry version; how many were checked."""
    errors = [(page, found) for page, found in answers if isinstance(found, Exception)]
    assert not errors, errors[:3]
    version = store.registry.active()["driver_stats"].version
    expected: dict[int, str] = {}
    checked = 0
    for page, found in answers:
        if not page.startswith("views/driver_stats") or page.endswith("/drift"):
            continue
        at = found["registry_version"]
        if at not in expected:
            expected[at] = _canonical(store.profile(f"driver_stats@v{version.version}", as_of=at).to_dict())
        assert _canonical(found["profile"]) == expected[at], (page, at)
        shown = sum(1 for m in store.registry.materializations(version.id) if m.commit_id <= at)
        assert found["materializations_total"] == shown
        checked += 1
    return checked


@pytest.fixture
def repo(make_repo: RepoFactory) -> Path:
    root = make_repo(data={"data/trips.parquet": trips(drivers=30, days=30, per_day=6)})
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        for day in range(10):
            store.materialize(ts(day), ts(day + 1))
    return root


def test_ui_pages_on_threads_while_materializations_commit(
    repo: Path, open_store: Callable[[Path], fk.FeatureStore]
) -> None:
    store = open_store(repo)
    early = store.registry.head_commit()
    pages = [p.format(early=early) for p in PAGES]
    server = start_ui(repo, "--no-auth")
    done = threading.Event()
    answers: list[list[Any]] = [[] for _ in range(4)]

    def ask(page: str) -> dict[str, Any]:
        response = httpx.get(f"{server.url}/{page}", timeout=60)
        assert response.status_code == 200, (page, response.status_code, response.text[:500])
        found: dict[str, Any] = response.json()
        return found

    def client(number: int) -> None:
        answers[number] = _hammer(ask, pages, done)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(len(answers))]
    try:
        for thread in threads:
            thread.start()
        _writes(store)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=120)
        server.stop()
    seen = [a for part in answers for a in part]
    assert _check(store, seen) >= 8
    heads = {found["registry_version"] for page, found in seen if page == "views/driver_stats.json"}
    assert len(heads) >= 2  # pages were read between commits, not only before or after them
    assert max(heads) == store.registry.head_commit()


class _SmallReader(data.Reader):
    KEPT = 2
    KEPT_QUALITY = 2


def test_one_reader_shared_by_threads_while_materializations_commit(
    repo: Path, open_store: Callable[[Path], fk.FeatureStore]
) -> None:
    store = open_store(repo)
    reader = _SmallReader(open_store(repo))  # the UI's own store handle, as `featurekit ui` has it
    early = str(store.registry.head_commit())
    calls: dict[str, Callable[[], dict[str, Any]]] = {
        "views/driver_stats": lambda: data.view_page(reader, "driver_stats", None),
        "views/driver_stats?as_of": lambda: data.view_page(reader, "driver_stats", early),
        "views": lambda: data.views_page(reader, None, None),
        "views/driver_stats/drift": lambda: data.window_drift_page(reader, "driver_stats", WINDOWS, None),
    }
    done = threading.Event()
    answers: list[list[Any]] = [[] for _ in range(4)]

    def client(number: int) -> None:
        answers[number] = _hammer(lambda page: calls[page](), list(calls), done)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(len(answers))]
    try:
        for thread in threads:
            thread.start()
        _writes(store)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=120)
    seen = [a for part in answers for a in part]
    assert _check(store, seen) >= 8
    assert len(_check_window_drifts(store, seen)) >= 2  # drifts were computed between commits too
    assert data.view_page(reader, "driver_stats", None)["registry_version"] == store.registry.head_commit()
