"""A serving process settles before its first request: the repo imported and the objects alive
then frozen out of the garbage collector's full collections (featurekit.server.process)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

import featurekit as fk
from featurekit.example import trips
from featurekit.server.app import create_app
from featurekit.ui.routes import create_ui
from tests.conftest import RepoFactory


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give the test process's collector back as it was (the servers' own processes keep it frozen)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def _frozen_after_start(app: object) -> int:
    async def start() -> int:
        async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
            return gc.get_freeze_count()

    return asyncio.run(start())


@pytest.mark.parametrize("make_app", [create_ui, create_app], ids=["ui", "server"])
def test_start_up_imports_the_repo_and_freezes_what_is_alive(
    make_repo: RepoFactory, make_app: Callable[..., object], unfrozen: None
) -> None:
    store = fk.FeatureStore(make_repo(), progress=False)  # the server's lifespan closes it
    try:
        assert gc.get_freeze_count() == 0
        frozen = _frozen_after_start(make_app(store, tokens=None))
        assert frozen > 1_000  # the interpreter's modules, featurekit's and the repo's definitions
        assert "driver_stats" in store.definitions.views
    finally:
        store.close()


def test_the_library_alone_never_freezes(make_repo: RepoFactory, unfrozen: None) -> None:
    with fk.FeatureStore(make_repo(data={"data/trips.parquet": trips(drivers=3, days=2)}), progress=False) as store:
        store.apply()
        store.materialize(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC))
        store.online_features([{"driver_id": 1}], ["driver_stats"])
    assert gc.get_freeze_count() == 0
