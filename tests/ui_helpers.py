"""The web UI's test repos (the demo repo with two versions and a training set; a repo of hostile
strings) and a real ``featurekit ui`` process on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pyarrow.parquet as pq
import pytest

import featurekit as fk
from featurekit.example import trips

if TYPE_CHECKING:
    from tests.server_helpers import Server

ROOT = Path(__file__).resolve().parent.parent
ARTEFACTS = ROOT / "tests" / "artefacts" / "ui"  # screenshots the browser tests take (not committed)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "ui-token-0123456789abcdef"  # noqa: S105 (the test servers' token)
SCRIPT = "<script>window.__pwned = 1</script>"
IMAGE = '<img src="x" onerror="window.__pwned = 2">'

HOSTILE_FEATURES = f'''
from datetime import timedelta
import polars as pl
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"], description="{SCRIPT}")
trips = fk.FileSource("data/trips.parquet", timestamp_field="event_timestamp", created_timestamp_field="created")


@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7), owner='{IMAGE}',
                 tags={{"team": "{SCRIPT}", "{SCRIPT}": "x"}})
def hostile(trips: pl.DataFrame) -> pl.DataFrame:
    """{SCRIPT} and {IMAGE} in a docstring."""
    marker = "{SCRIPT}"  # the code itself holds one too
    return trips.select("driver_id", "event_timestamp", "created", conv_rate=pl.col("accepted") / pl.col("offered"),
                        marked=pl.lit(len(marker)))


hostile_set = fk.FeatureSet("hostile_set", features=["hostile:conv_rate"], description="{SCRIPT}", owner='{IMAGE}')
'''


def demo_store(base: Path) -> Path:
    """The demo repo (feature_repo/) with data, applied twice (driver_stats changed), materialized,
    pushed to, and one training set written to a file. Returns the repo folder."""
    repo = base / "feature_repo"
    repo.mkdir()
    for name in ("features.py", "featurekit.yaml"):
        shutil.copy(ROOT / "feature_repo" / name, repo / name)
    (repo / "data").mkdir()
    pq.write_table(trips(drivers=50, days=60), repo / "data" / "trips.parquet")
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
        store.materialize("2026-01-01", "2026-02-01")
        store.materialize_incremental("2026-02-20")
    features = repo / "features.py"
    features.write_text(
        features.read_text().replace('avg_trip_km=pl.col("distance_km"),', 'avg_trip_km=pl.col("distance_km") * 1.0,')
    )
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
        store.materialize("2026-01-01", "2026-02-20", views=["driver_stats"])
        spine = pq.read_table(repo / "data" / "trips.parquet").select(["driver_id", "event_timestamp"]).slice(0, 300)
        pq.write_table(spine, repo / "spine.parquet")
        store.training_set(repo / "spine.parquet", ["driver_stats:conv_rate", "driver_daily:trips_1d"]).to_parquet(
            repo / "training" / "rides.parquet"
        )
    return repo


def hostile_store(base: Path) -> Path:
    """A repo whose docstrings, tags, owner and code hold ``<script>`` and ``<img onerror>``, applied."""
    repo = base / "hostile_repo"
    (repo / "data").mkdir(parents=True)
    (repo / "features.py").write_text(HOSTILE_FEATURES)
    pq.write_table(trips(drivers=5, days=3), repo / "data" / "trips.parquet")
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
    return repo


def start_ui(repo: Path, *args: str, token: str | None = None) -> Server:
    """``featurekit --repo REPO ui --port P ARGS`` in a child process; waits until it answers."""
    from tests.server_helpers import Server, free_port  # it imports conftest, which imports this module

    port = free_port()
    log = repo / f"ui-{port}.log"
    environment = {k: v for k, v in os.environ.items() if k != "FEATUREKIT_TOKEN"}
    if token is not None:
        environment["FEATUREKIT_TOKEN"] = token
    command = [sys.executable, "-m", "featurekit.cli", "--repo", str(repo), "ui", "--port", str(port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the UI exited with {process.returncode}: {log.read_text()}")
        try:
            httpx.get(f"{server.url}/static/style.css", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise AssertionError(f"the UI did not answer within 60 s: {log.read_text()}")


def require_chromium() -> None:
    """Fail (never skip) when Debian's chromium is missing: the browser tests are part of the suite."""
    if not CHROMIUM.is_file():
        raise AssertionError(
            f"the web UI's browser tests need Chromium at {CHROMIUM}; install it with "
            "`sudo apt-get install -y chromium` (.ci/run does this when it is missing)"
        )


@dataclass
class DemoUi:
    """The demo repo and a ``featurekit ui --no-auth`` serving it."""

    repo: Path
    server: Server

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="session")
def ui_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoUi]:
    """One demo store and UI process for the whole test session."""
    repo = demo_store(tmp_path_factory.mktemp("ui-demo"))
    server = start_ui(repo, "--no-auth")
    try:
        yield DemoUi(repo, server)
    finally:
        server.stop()
