"""The web UI over HTTP (no browser): JSON twins against the Python API, records it reads, errors, auth.

A real ``featurekit ui`` process serves the demo store (the session's ``ui_demo``), and a real
``featurekit serve`` mounts the UI at ``/ui``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

import featurekit as fk
from featurekit.manifest import load_manifest
from featurekit.offline.freshness import KIND, Freshness
from tests.server_helpers import READ_WRITE, start_server
from tests.ui_helpers import DemoUi

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(ui_demo: DemoUi) -> Iterator[fk.FeatureStore]:
    with fk.FeatureStore(ui_demo.repo, progress=False) as opened:
        yield opened


def get(ui_demo: DemoUi, path: str) -> httpx.Response:
    return httpx.get(f"{ui_demo.url}/{path}", timeout=30)


def test_the_training_set_written_is_recorded_with_its_manifest(ui_demo: DemoUi, store: fk.FeatureStore) -> None:
    (record,) = store.registry.training_sets()
    assert Path(record.path) == (ui_demo.repo / "training" / "rides.parquet").resolve()
    assert record.manifest == load_manifest(record.path).to_dict()
    assert record.registry_version == record.head_commit == store.registry.head_commit()
    assert store.registry.training_sets(record.head_commit - 1) == []  # not there yet at an earlier moment
    assert get(ui_demo, "lineage.json?as_of=1").json()["nodes"][-1]["kind"] != "training_set"


def test_freshness_records_hold_the_newest_committed_event(store: fk.FeatureStore) -> None:
    version = store.registry.active()["driver_stats"].version
    (last,) = store.registry.materializations(version.id)
    ((commit, payload),) = store.registry.quality(version.id, KIND)
    record = Freshness.from_record(commit, payload)
    assert commit == last.commit_id
    assert record.started_at < last.committed_at
    trips = str(store.root / "data" / "trips.parquet")
    newest = duckdb.execute(
        "SELECT max(event_timestamp) FROM read_parquet(?) WHERE event_timestamp < ?", [trips, last.window_end]
    ).fetchone()
    assert newest is not None
    assert record.newest_event == newest[0]


def test_view_and_history_twins_equal_the_api(ui_demo: DemoUi, store: fk.FeatureStore) -> None:
    view = get(ui_demo, "views/driver_stats.json").json()
    info = store.show("driver_stats")
    assert view["version"] == info.version.version
    assert view["code_hash"] == info.version.code_hash
    assert [v["source_text"] for v in view["versions"]] == [
        v.source_text for v in store.registry.versions("driver_stats")
    ]
    assert view["definition"]["join_keys"] == ["driver_id"]
    diff = get(ui_demo, "views/driver_stats/diff.json?old=1&new=2").json()
    assert diff["diff"] == store.diff("driver_stats", 1, 2)
    history = get(ui_demo, "history.json").json()
    commits = store.registry.commits()
    assert history["total"] == len(commits)
    assert [c["registry_version"] for c in history["commits"]] == [c.id for c in reversed(commits)]
    assert {c["kind"] for c in history["commits"]} == {"apply", "materialize"}


def test_errors_are_pages_not_crashes(ui_demo: DemoUi) -> None:
    missing = get(ui_demo, "views/driver_stat")
    assert missing.status_code == 404
    assert "did you mean" in missing.text
    assert "driver_stats" in missing.text
    assert get(ui_demo, "views/driver_stat.json").headers["content-type"] == "application/problem+json"
    assert get(ui_demo, "history?page=99").status_code == 404
    assert get(ui_demo, "views?as_of=2999-01-01T00:00:00Z").status_code == 400
    assert get(ui_demo, "views?as_of=10000").status_code == 404
    assert get(ui_demo, "views/driver_stats/diff?old=1&new=x").status_code == 400
    assert get(ui_demo, "training-sets/7").status_code == 404
    assert get(ui_demo, "no/such/page").status_code == 404
    assert httpx.post(f"{ui_demo.url}/views", timeout=30).status_code == 405
    for path in ("static/..%2F..%2Fstore.py", "static/../routes.py", "static/%2Fetc%2Fpasswd"):
        assert get(ui_demo, path).status_code == 404, path


def test_every_response_forbids_scripts(ui_demo: DemoUi) -> None:
    for path in ("views", "views.json", "lineage", "views/nope", "no/such/page"):
        policy = get(ui_demo, path).headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "script-src" not in policy  # no script source at all: default-src 'none' applies


def test_serve_mounts_the_ui_under_the_same_tokens(ui_demo: DemoUi) -> None:
    server = start_server(ui_demo.repo)  # with FEATUREKIT_TOKEN set
    try:
        for path in ("ui/views", "ui/views.json", "ui/lineage", "ui/history", "ui/views/driver_stats"):
            assert httpx.get(f"{server.url}/{path}", timeout=30).status_code == 401, path
            shown = httpx.get(f"{server.url}/{path}", headers={"Authorization": f"Bearer {READ_WRITE}"}, timeout=30)
            assert shown.status_code == 200, path
        page = httpx.get(f"{server.url}/ui/views", headers={"Authorization": f"Bearer {READ_WRITE}"}).text
        assert 'href="/ui/views/driver_stats"' in page
        assert 'href="/ui/static/style.css"' in page
    finally:
        server.stop()


def test_no_auth_is_refused_beyond_loopback(ui_demo: DemoUi) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "featurekit.cli", "--repo", str(ui_demo.repo), "ui", "--host", "0.0.0.0", "--no-auth"],  # noqa: S104
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "only allowed on a loopback address" in done.stderr


def test_a_view_page_shows_its_checks_profile_and_drift_as_the_api_has_them(
    ui_demo: DemoUi, store: fk.FeatureStore
) -> None:
    view = get(ui_demo, "views/driver_stats.json").json()
    newest = store.check_results("driver_stats")[-1]
    assert view["checks"]["status"] == ("passed" if newest.passed else "failed")
    assert [r["check"] for r in view["checks"]["results"]] == [r.check for r in newest.results]
    profile = store.profile("driver_stats")
    shown = {c["name"]: c for c in view["profile"]["columns"]}
    assert set(shown) == set(profile.columns)
    for name, column in profile.columns.items():
        assert shown[name]["rows"] == column.rows
        assert shown[name]["histogram"] == list(column.histogram)
    page = get(ui_demo, "views/driver_stats").text
    assert 'id="checks"' in page
    assert 'id="profile"' in page


def test_the_window_drift_page_over_http_and_its_bad_input(ui_demo: DemoUi, store: fk.FeatureStore) -> None:
    view = next(name for name, info in store.registry.active().items() if info.version.definition["kind"] == "batch")
    page = get(ui_demo, f"views/{view}.json").json()
    span = page["materializations"]
    start, end = span[0]["window_start"], span[-1]["window_end"]
    query = {"reference_start": start, "reference_end": end, "current_start": start, "current_end": end}
    found = httpx.get(f"{ui_demo.url}/views/{view}/drift.json", params=query, timeout=30)
    assert found.status_code == 200, found.text
    drift = found.json()["drift"]
    assert drift.get("error") is None
    assert all(f["status"] == "ok" for f in drift["features"])  # a window against itself does not drift
    shown = httpx.get(f"{ui_demo.url}/views/{view}/drift", params=query, timeout=30)
    assert shown.status_code == 200
    assert "drift between two windows" in shown.text
    bad = httpx.get(f"{ui_demo.url}/views/{view}/drift.json", params={**query, "current_end": "soon"}, timeout=30)
    assert bad.status_code == 400
    assert "?current_end= must be an ISO-8601 time" in bad.json()["detail"]
    backwards = httpx.get(
        f"{ui_demo.url}/views/{view}/drift.json", params={**query, "reference_end": start}, timeout=30
    )
    assert backwards.status_code == 400
    assert "must end after it starts" in backwards.json()["detail"]
