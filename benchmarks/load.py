"""A bounded HTTP load on one loopback port: threads on keep-alive connections, every answer kept.

The load only ever connects to 127.0.0.1, and it stops at whichever bound comes first: its
duration, its total number of requests, or :meth:`Load.stop`. Each answer records when its
request was sent (seconds since the load began), how long it took, its HTTP status (0 when the
connection failed: refused, reset or timed out) and its body, so a test can say what happened
in any interval (for instance while Redis was down) and check every value served.

``rate=None`` is a closed loop (each client sends its next request when the last one is
answered); a ``rate`` paces every client to that many requests per second, so a slower server
gets the same offered load instead of fewer requests. Latency is timed from the actual send.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Answer:
    """One request's outcome."""

    sent: float  # seconds after the load began
    seconds: float  # until the whole answer was read
    status: int  # the HTTP status; 0 when the connection failed
    body: bytes  # the answer's body (for status 0: the error's text)

    @property
    def done(self) -> float:
        """When the answer was complete (seconds after the load began)."""
        return self.sent + self.seconds


class Load:
    """POSTs of ``bodies`` (in turn) to ``path`` on ``127.0.0.1:port`` from ``clients`` threads."""

    def __init__(
        self,
        port: int,
        bodies: Sequence[bytes],
        *,
        token: str,
        path: str = "/v1/features",
        clients: int = 2,
        seconds: float = 10.0,
        max_requests: int = 50_000,
        rate: float | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not bodies:
            raise ValueError("a load needs at least one request body")
        self.port, self.bodies, self.path = port, list(bodies), path
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        self.clients, self.seconds, self.max_requests = clients, seconds, max_requests
        self.interval = None if rate is None else 1.0 / rate
        self.timeout = timeout
        self._began = 0.0
        self._sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._answers: list[list[Answer]] = [[] for _ in range(clients)]
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def now(self) -> float:
        """Seconds since the load began."""
        return time.perf_counter() - self._began

    def start(self) -> Load:
        self._began = time.perf_counter()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Ask every client to finish after its request in flight."""
        self._stop.set()

    def wait(self) -> list[Answer]:
        """Every answer, in the order the requests were sent, once all clients have finished."""
        for thread in self._threads:
            thread.join()
        return sorted((a for series in self._answers for a in series), key=lambda a: a.sent)

    def _take(self) -> int | None:
        """The number of the next request, or None when a bound is reached."""
        if self._stop.is_set() or self.now() >= self.seconds:
            return None
        with self._lock:
            if self._sent >= self.max_requests:
                return None
            self._sent += 1
            return self._sent - 1

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)

    def _client(self, index: int) -> None:
        connection = self._connect()
        answers = self._answers[index]
        due = self.now() + (0.0 if self.interval is None else self.interval * index / self.clients)
        try:
            while (number := self._take()) is not None:
                if self.interval is not None:
                    pause = due - self.now()
                    if pause > 0:
                        time.sleep(pause)
                    due = max(due + self.interval, self.now())  # a late client does not burst to catch up
                sent = self.now()
                try:
                    connection.request("POST", self.path, self.bodies[number % len(self.bodies)], self.headers)
                    response = connection.getresponse()
                    body = response.read()
                    status = response.status
                except (OSError, http.client.HTTPException) as exc:
                    connection.close()
                    connection = self._connect()
                    status, body = 0, f"{type(exc).__name__}: {exc}".encode()
                answers.append(Answer(sent, self.now() - sent, status, body))
        finally:
            connection.close()


def summary(answers: Sequence[Answer], seconds: float | None = None) -> dict[str, Any]:
    """p50/p99 (ms) of the answered requests, requests per second and the count of each status."""
    times = sorted(a.seconds for a in answers)
    statuses: dict[str, int] = {}
    for answer in answers:
        statuses[str(answer.status)] = statuses.get(str(answer.status), 0) + 1
    span = seconds if seconds is not None else (max(a.done for a in answers) if answers else 0.0)
    found: dict[str, Any] = {"requests": len(answers), "statuses": statuses}
    if times:
        found |= {
            "p50_ms": statistics.median(times) * 1e3,
            "p99_ms": times[max(0, int(len(times) * 0.99) - 1)] * 1e3,
            "max_ms": times[-1] * 1e3,
            "rps": len(answers) / span if span else 0.0,
        }
    return found
