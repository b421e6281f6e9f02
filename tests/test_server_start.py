"""Starting the feature server: closed by default, readiness, several workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import featurekit as fk
from featurekit.server import auth
from tests.conftest import BASIC_FEATURES, RepoFactory, trips_table, ts
from tests.server_helpers import READ_ONLY, READ_WRITE, TRIP_RISK, TRIPS, start_server, write_tokens


@pytest.fixture
def repo(make_repo: RepoFactory) -> Path:
    root = make_repo(BASIC_FEATURES, data={"data/trips.parquet": trips_table(TRIPS)})
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        store.materialize(ts(0), ts(5))
    return root


def run_serve(repo: Path, *args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FEATUREKIT_TOKEN"}
    if token:
        env["FEATUREKIT_TOKEN"] = token
    command = [sys.executable, "-m", "featurekit.cli", "--repo", str(repo), "serve", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_the_server_refuses_to_start_without_a_token(repo: Path) -> None:
    result = run_serve(repo, "--port", "1")
    assert result.returncode == 1
    assert "does not start without a token" in result.stderr
    assert "FEATUREKIT_TOKEN" in result.stderr


def test_no_auth_is_refused_on_a_non_loopback_host(repo: Path) -> None:
    result = run_serve(repo, "--no-auth", "--host", "0.0.0.0", "--port", "1")  # noqa: S104 (refused)
    assert result.returncode == 1
    assert "only allowed on a loopback address" in result.stderr


def test_weak_tokens_and_bad_token_files_are_refused(repo: Path) -> None:
    weak = run_serve(repo, "--port", "1", token="short")  # noqa: S106 (refused)
    assert weak.returncode == 1
    assert "too weak" in weak.stderr
    assert "short" not in weak.stderr  # tokens are never echoed
    (repo / "featurekit.yaml").write_text("serve:\n  token_file: tokens.txt\n")
    (repo / "tokens.txt").write_text(f"{READ_WRITE} admin\n")
    bad = run_serve(repo, "--port", "1")
    assert bad.returncode == 1
    assert "tokens.txt:1" in bad.stderr
    assert READ_WRITE not in bad.stderr


def test_no_auth_on_loopback_serves_without_a_token(repo: Path) -> None:
    server = start_server(repo, "--no-auth", env={"FEATUREKIT_TOKEN": ""})
    try:
        answer = httpx.post(
            f"{server.url}/v1/features", json={"features": ["driver_stats"], "entities": {"driver_id": [1]}}
        )
        assert answer.status_code == 200, answer.text
    finally:
        server.stop()


def test_tokens_from_a_file_have_their_scopes(repo: Path) -> None:
    write_tokens(repo)
    tokens = auth.Tokens.load(repo, "tokens.txt", environ={})
    assert tokens.scopes(f"Bearer {READ_ONLY}") == auth.READ
    assert tokens.scopes(f"bearer {READ_WRITE}") == auth.READ_WRITE
    with pytest.raises(fk.AuthError):
        tokens.scopes(f"Bearer {READ_ONLY[:-1]}")


LOOPBACK = ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"]
OTHERS = ["0.0.0.0", "::", "10.0.0.5", "example.com", ""]  # noqa: S104 (only checked, never bound)


@pytest.mark.parametrize(("host", "loopback"), [(h, True) for h in LOOPBACK] + [(h, False) for h in OTHERS])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert auth.is_loopback(host) is loopback


def test_readyz_fails_when_the_code_differs_from_the_applied_version(repo: Path) -> None:
    server = start_server(repo)
    try:
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        features = repo / "features.py"
        features.write_text(
            features.read_text().replace('avg_trip_km=pl.col("distance_km")', "avg_trip_km=pl.lit(1.0)")
        )
        with fk.FeatureStore(repo, progress=False) as other:
            other.apply()  # the server still runs the code it imported
        answer = httpx.get(f"{server.url}/readyz")
        assert answer.status_code == 503
        body = answer.json()
        assert body["status"] == "not ready"
        assert any("driver_stats" in p and "featurekit apply" in p for p in body["problems"])
    finally:
        server.stop()


def test_importing_featurekit_imports_no_server_library() -> None:
    code = "import sys, featurekit as fk; fk.Client; print('starlette' in sys.modules or 'uvicorn' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_missing_server_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from featurekit import server

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "uvicorn" else real(name))
    with pytest.raises(fk.ConfigError, match=r"pip install 'featurekit\[server\]'"):
        server.require()


@pytest.mark.slow
def test_two_workers_serve_and_metrics_sum_both(repo: Path) -> None:
    server = start_server(repo, "--workers", "2")
    headers = {"Authorization": f"Bearer {READ_WRITE}"}
    try:
        body = {"features": ["driver_stats"], "entities": {"driver_id": [1]}, "at": "2026-01-04T00:00:00Z"}
        with httpx.Client() as first, httpx.Client() as second:  # two connections: likely two workers
            for _ in range(20):
                assert first.post(f"{server.url}/v1/features", json=body, headers=headers).status_code == 200
                assert second.post(f"{server.url}/v1/features", json=body, headers=headers).status_code == 200
        expected = [
            'featurekit_http_requests_total{route="/v1/features",status="200"} 40',
            "featurekit_workers_reporting 2",
        ]
        deadline = time.monotonic() + 30  # the second worker may still be importing the repo
        text = ""
        while time.monotonic() < deadline:
            text = httpx.get(f"{server.url}/metrics", headers=headers).text
            if all(line in text for line in expected):
                break
            time.sleep(0.5)
        assert all(line in text for line in expected), text
    finally:
        server.stop()


def _polars_threads(pid: int) -> list[str]:
    names = (Path(f"/proc/{pid}/task/{task}/comm").read_text().strip() for task in os.listdir(f"/proc/{pid}/task"))
    return sorted(name for name in names if name.startswith("polars-") and name[len("polars-") :].isdigit())


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread names from /proc")
@pytest.mark.parametrize(("chosen", "threads"), [(None, 1), ("2", 2)])
def test_the_server_runs_polars_on_one_thread_unless_the_environment_says(
    repo: Path, chosen: str | None, threads: int
) -> None:
    (repo / "features.py").write_text(BASIC_FEATURES + TRIP_RISK)
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
    # POLARS_MAX_THREADS="" drops the variable (start_server removes empty values)
    server = start_server(repo, env={"POLARS_MAX_THREADS": chosen or ""})
    try:
        answer = httpx.post(  # an on-demand feature: polars computes it
            f"{server.url}/v1/features",
            json={"features": ["trip_risk"], "entities": {"driver_id": [1, 2]}, "request": {"trip_km": [1.0, 2.0]}},
            headers={"Authorization": f"Bearer {READ_WRITE}"},
        )
        assert answer.status_code == 200, answer.text
        assert _polars_threads(server.process.pid) == [f"polars-{i}" for i in range(threads)]
    finally:
        server.stop()
