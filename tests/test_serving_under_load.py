"""The feature server under a bounded loopback load: while another process materializes, and while
its Redis goes away and comes back.

Functional assertions only (every answer's status and values); the latencies of the same
scenarios are measured by ``python -m benchmarks load`` (benchmarks/serving_load.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

import featurekit as fk
from benchmarks.load import Answer, Load
from tests.conftest import BASIC_FEATURES, RepoFactory, trips_table, ts
from tests.redis_server import RedisServer, redis_config, redis_prefix
from tests.server_helpers import READ_WRITE, Server, start_server

DRIVERS = 300
FEATURES = ["driver_stats:conv_rate", "driver_stats:avg_trip_km"]
AT = ts(10)
AUTH = {"Authorization": f"Bearer {READ_WRITE}"}


def trips() -> list[tuple[object, ...]]:
    """20 trips of each driver over 10 days (values depend on the driver and the trip)."""
    return [
        (driver, ts(trip / 2), ts(trip / 2), 1 + (driver + trip) % 5, 5, float(driver * 100 + trip))
        for driver in range(DRIVERS)
        for trip in range(20)
    ]


def bodies() -> list[bytes]:
    """One request per driver, then one of 7 drivers at a time (every driver in turn)."""
    single = [[d] for d in range(DRIVERS)]
    several = [[(d + i * 41) % DRIVERS for i in range(7)] for d in range(DRIVERS)]
    return [
        json.dumps({"features": FEATURES, "entities": {"driver_id": keys}, "at": AT.isoformat()}).encode()
        for keys in single + several
    ]


def expected(repo: Path) -> dict[int, tuple[object, object]]:
    """Each driver's (conv_rate, avg_trip_km) as the in-process API answers it."""
    with fk.FeatureStore(repo, progress=False) as store:
        found = store.online_features({"driver_id": list(range(DRIVERS))}, FEATURES, at=AT).to_dict()
    assert all(v is not None for v in found["avg_trip_km"])
    return dict(zip(found["driver_id"], zip(found["conv_rate"], found["avg_trip_km"], strict=True), strict=True))


def wrong_values(answers: list[Answer], truth: dict[int, tuple[object, object]]) -> list[str]:
    """The 200 answers whose values differ from the in-process API's (empty: all equal)."""
    wrong = []
    for answer in answers:
        if answer.status != 200:
            continue
        columns = json.loads(answer.body)["features"]
        got = zip(columns["driver_id"], zip(columns["conv_rate"], columns["avg_trip_km"], strict=True), strict=True)
        wrong += [f"driver {key}: {values} != {truth[key]}" for key, values in got if truth[key] != values]
    return wrong


def statuses(answers: list[Answer]) -> dict[int, int]:
    counted: dict[int, int] = {}
    for answer in answers:
        counted[answer.status] = counted.get(answer.status, 0) + 1
    return counted


def materialize(repo: Path) -> subprocess.CompletedProcess[str]:
    """``featurekit materialize`` of the whole window again, in its own process."""
    command = [sys.executable, "-m", "featurekit.cli", "--repo", str(repo), "--quiet", "materialize"]
    window = ["--start", ts(0).isoformat(), "--end", ts(10).isoformat()]
    return subprocess.run([*command, *window], capture_output=True, text=True, check=False, timeout=120)


def served_repo(factory: RepoFactory, config: str | None) -> Path:
    repo = factory(BASIC_FEATURES, data={"data/trips.parquet": trips_table(trips())}, config=config)  # type: ignore[arg-type]
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
        store.materialize(ts(0), ts(10))
    return repo


def port(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


# -- a materialize in another process -----------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def under_writes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Server]]:
    config = None
    if request.param == "redis":
        config = redis_config(request.getfixturevalue("redis_server").url)
    repo = served_repo(RepoFactory(tmp_path_factory.mktemp(f"load-{request.param}")), config)
    server = start_server(repo)
    yield repo, server
    server.stop()


@pytest.mark.slow
def test_lookups_while_another_process_materializes_all_succeed_with_the_right_values(
    under_writes: tuple[Path, Server],
) -> None:
    repo, server = under_writes
    truth = expected(repo)
    with fk.FeatureStore(repo, progress=False) as store:
        version = store.registry.active()["driver_stats"].version
        before = store.registry.last_materialization(version.id)
    load = Load(port(server), bodies(), token=READ_WRITE, clients=3, seconds=90, max_requests=40_000).start()
    windows = []
    try:
        for _ in range(2):
            began = load.now()
            done = materialize(repo)
            windows.append((began, load.now()))
            assert done.returncode == 0, done.stderr[-2000:]
    finally:
        load.stop()
        answers = load.wait()
    with fk.FeatureStore(repo, progress=False) as store:
        after = store.registry.last_materialization(version.id)
    assert before is not None
    assert after is not None
    assert after.data_version >= before.data_version + 2  # both materializations committed
    assert statuses(answers) == {200: len(answers)}, [a.body[:300] for a in answers if a.status != 200][:3]
    assert wrong_values(answers, truth) == []
    for began, ended in windows:  # the load really ran during each materialization
        assert sum(began <= a.sent and a.done <= ended for a in answers) >= 20


# -- Redis stopped and started again --------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Server, RedisServer]]:
    """A server on a Redis of this module alone, which the tests stop and start (its data saved first)."""
    own = RedisServer(tmp_path_factory.mktemp("own-redis"))
    own.start()
    config = redis_config(own.url, redis_prefix()) + "  socket_timeout_s: 0.3\n  connect_timeout_s: 0.3\n"
    repo = served_repo(RepoFactory(tmp_path_factory.mktemp("load-restart")), config)
    client = redis.Redis.from_url(own.url)
    client.save()  # the restarted server loads this snapshot: the same rows come back
    client.close()
    server = start_server(repo)
    yield repo, server, own
    server.stop()
    own.stop()


@pytest.fixture
def redis_up(redis_served: tuple[Path, Server, RedisServer]) -> tuple[Path, Server, RedisServer]:
    """The module's server with its Redis running (a failed test may have left it stopped)."""
    if redis_served[2].process is None:
        redis_served[2].start()
    return redis_served


def test_a_stopped_redis_is_a_503_naming_it_on_every_route_then_service_resumes(
    redis_up: tuple[Path, Server, RedisServer],
) -> None:
    repo, server, own = redis_up
    truth = expected(repo)
    body = {"features": FEATURES, "entities": {"driver_id": [1, 2]}, "at": AT.isoformat()}
    feast_body = {"features": FEATURES, "entities": {"driver_id": [1, 2]}}
    own.stop()
    answers = {
        route: httpx.post(f"{server.url}{route}", json=sent, headers=AUTH, timeout=10)
        for route, sent in (("/v1/features", body), ("/get-online-features", feast_body))
    }
    for route, answer in answers.items():
        assert answer.status_code == 503, (route, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem = answer.json()
        assert problem["error"] == "StorageError"
        assert own.url in problem["detail"], problem["detail"]
        assert "did not answer" in problem["detail"], problem["detail"]
        assert "Traceback" not in answer.text
    ready = httpx.get(f"{server.url}/readyz", timeout=10)
    assert ready.status_code == 503
    assert any(p.startswith("online store:") and own.url in p for p in ready.json()["problems"])
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    with fk.Client(server.url, token=READ_WRITE) as client, pytest.raises(fk.StorageError, match="did not answer"):
        client.online_features({"driver_id": [1]}, FEATURES, at=AT)
    own.start()
    again = httpx.post(f"{server.url}/v1/features", json=body, headers=AUTH, timeout=10)
    assert again.status_code == 200, again.text
    columns = again.json()["features"]
    assert list(zip(columns["conv_rate"], columns["avg_trip_km"], strict=True)) == [truth[1], truth[2]]
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200


def test_a_push_while_redis_is_down_is_a_503_and_its_retry_lands_once(
    redis_up: tuple[Path, Server, RedisServer],
) -> None:
    _, server, own = redis_up
    driver = DRIVERS + 5  # a driver of this test alone
    rows = trips_table([(driver, ts(9.5), ts(9.5), 3, 4, 42.5)])
    with fk.Client(server.url, token=READ_WRITE) as client:
        own.stop()
        with pytest.raises(fk.StorageError, match="did not answer"):
            client.push("driver_stats", rows, to="online_and_offline")
        own.start()
        assert client.online_features({"driver_id": [driver]}, FEATURES, at=AT).to_dict()["avg_trip_km"] == [None]
        first = client.push("driver_stats", rows, to="online_and_offline")  # the retry
        again = client.push("driver_stats", rows, to="online_and_offline")
        looked = client.online_features({"driver_id": [driver]}, FEATURES, at=AT).to_dict()
    assert (first.rows, first.online_rows) == (1, 1)
    assert again.data_version == first.data_version  # committed offline once, by the push that failed online
    assert looked == {"driver_id": [driver], "conv_rate": [0.75], "avg_trip_km": [42.5]}


@pytest.mark.slow
def test_redis_restarted_mid_load_gives_only_503s_while_it_is_down_then_full_recovery(
    redis_up: tuple[Path, Server, RedisServer],
) -> None:
    repo, server, own = redis_up
    truth = expected(repo)
    load = Load(port(server), bodies(), token=READ_WRITE, clients=2, seconds=60, max_requests=40_000).start()
    try:
        time.sleep(1.0)
        stopping = load.now()
        own.stop()
        stopped = load.now()
        time.sleep(1.5)
        starting = load.now()
        own.start()
        started = load.now()
        time.sleep(1.5)
    finally:
        load.stop()
        answers = load.wait()
    assert set(statuses(answers)) <= {200, 503}, statuses(answers)  # never a 500, a reset or a hang
    before = [a for a in answers if a.done <= stopping]
    down = [a for a in answers if a.sent >= stopped and a.done <= starting]
    after = [a for a in answers if a.sent >= started]
    assert before, "no answer before Redis stopped"
    assert down, "no request sent and answered while Redis was down"
    assert after, "no request sent after Redis was back"
    assert statuses(before) == {200: len(before)}
    assert statuses(down) == {503: len(down)}
    assert all(json.loads(a.body)["error"] == "StorageError" for a in down)
    assert statuses(after) == {200: len(after)}  # recovered at once: no restart of the server
    assert wrong_values(answers, truth) == []


@pytest.mark.slow
def test_redis_frozen_mid_load_gives_503s_within_the_timeouts_then_the_right_values(
    redis_up: tuple[Path, Server, RedisServer],
) -> None:
    # A frozen server (SIGSTOP) accepts connections and never answers: each lookup must give up
    # after the socket timeouts, whatever the number of lookups waiting, and the process must stay
    # responsive meanwhile (a lookup waiting on the event loop's thread once held up every request,
    # /healthz included, for seconds). No reply a lookup missed may be read later as another's.
    repo, server, own = redis_up
    assert own.process is not None
    truth = expected(repo)
    load = Load(port(server), bodies(), token=READ_WRITE, clients=8, seconds=60, max_requests=40_000, timeout=4)
    load.start()
    try:
        time.sleep(1.0)
        freezing = load.now()
        own.process.send_signal(signal.SIGSTOP)
        frozen = load.now()
        time.sleep(1.0)
        health = [httpx.get(f"{server.url}/healthz", timeout=2).status_code for _ in range(3)]
        time.sleep(1.0)
        thawing = load.now()
        own.process.send_signal(signal.SIGCONT)
        thawed = load.now()
        time.sleep(1.5)
    finally:
        own.process.send_signal(signal.SIGCONT)
        load.stop()
        answers = load.wait()
    assert health == [200, 200, 200]
    assert set(statuses(answers)) <= {200, 503}, statuses(answers)  # 0: the client gave up after 4 s
    during = [a for a in answers if a.sent >= frozen and a.done <= thawing]
    assert during, "no request sent and answered while Redis was frozen"
    assert statuses(during) == {503: len(during)}
    assert all("did not answer" in json.loads(a.body)["detail"] for a in during)
    assert statuses([a for a in answers if a.done <= freezing]) == {200: sum(a.done <= freezing for a in answers)}
    after = [a for a in answers if a.sent >= thawed]
    assert after, "no request sent after Redis was thawed"
    assert statuses(after) == {200: len(after)}
    assert wrong_values(answers, truth) == []
