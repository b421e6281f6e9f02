"""A real ``redis-server`` for the tests: started on a free loopback port, stopped at the end.

No fake Redis anywhere: the contract suite, the Redis store's own tests and the end-to-end tests
talk to this server. Each test gets its own key prefix (:func:`redis_prefix`), so tests never see
each other's keys. Without ``redis-server`` on the PATH the tests fail, naming the fix (CI
installs it in ``.ci/run``), rather than skipping silently.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_prefixes = itertools.count()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process without persistence, which a test may stop and start again."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed; the Redis online store is tested against a real server: "
                "apt-get install -y redis-server (.ci/run does this)",
                pytrace=False,
            )
        self.binary = binary
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
            "--logfile",
            str(self.folder / "redis.log"),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.folder / "redis.log").read_text() if (self.folder / "redis.log").exists() else ""
                pytest.fail(f"redis-server exited at start: {log[-2000:]}", pytrace=False)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"redis-server did not answer on port {self.port} within 10 s", pytrace=False)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's Redis server (shared: tests keep apart by key prefix)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test alone, for tests that stop and restart it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def redis_prefix() -> str:
    """A key prefix no other test uses."""
    return f"test{next(_prefixes)}:"


def redis_config(url: str, prefix: str | None = None) -> str:
    """``featurekit.yaml`` text selecting the Redis online store at ``url``."""
    return f'online:\n  type: redis\n  url: "{url}"\n  key_prefix: "{prefix or redis_prefix()}"\n'


def online_yaml(kind: str, request: pytest.FixtureRequest) -> str | None:
    """``featurekit.yaml`` text for an online store kind (``sqlite``: the default, no file)."""
    if kind == "sqlite":
        return None
    if kind == "memory":
        return "online:\n  type: memory\n"
    server: RedisServer = request.getfixturevalue("redis_server")
    return redis_config(server.url)


ONLINE_KINDS = ["memory", "redis", "sqlite"]
