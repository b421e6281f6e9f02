"""``python -m benchmarks http``: the feature server over loopback, against a bare ASGI floor and Feast's server.

Every contender runs in its own server process on 127.0.0.1; the load comes from this process,
bounded in count (sequential latency) and in time (throughput). Keys are drawn at random from all
entities of the scale. Sequential: one keep-alive connection, ``fk.Client`` for featurekit (its
decoding included) and the same raw ``http.client`` loop for every server (Feast's and
featurekit's ``/get-online-features`` take the same body). Throughput: 16 threads, each with its
own keep-alive connection, posting 1-entity lookups for a fixed time to a 2-worker server.
Writes ``results/http.json`` and prints a markdown section for RESULTS.md.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data import FEATURES, LOOKUP_AT, SCALES, ensure
from benchmarks.runner import HERE

TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 (a loopback benchmark's token)
FEATURE_REFS = [f"stats_a:{x}" for x in FEATURES]
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Served:
    """A server process on loopback."""

    def __init__(self, command: list[str], health: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.port = _free_port()
        self.command = [c.replace("{port}", str(self.port)) for c in command]
        log = open(HERE / "results" / f"http-{self.port}.log", "wb")  # noqa: SIM115 (closed in stop)
        self.log = log
        environment = {**os.environ, "PYTHONPATH": str(ROOT), "FEATUREKIT_TOKEN": TOKEN, **(env or {})}
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=cwd)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{' '.join(self.command)} exited with {self.process.returncode}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", health)
                if connection.getresponse().status == 200:
                    connection.close()
                    time.sleep(1.0)  # let every worker finish starting
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise SystemExit(f"{' '.join(self.command)} did not answer within 180 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _summary(samples: list[float]) -> dict[str, float]:
    samples.sort()
    return {
        "p50_ms": statistics.median(samples) * 1e3,
        "p99_ms": samples[int(len(samples) * 0.99) - 1] * 1e3,
        "calls": len(samples),
    }


def _latencies(call: Callable[[int], object], calls: int) -> dict[str, float]:
    for i in range(min(300, calls)):
        call(i)
    samples = []
    for i in range(calls):
        began = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - began)
    return _summary(samples)


def _batches(entities: int, size: int, count: int, seed: int = 5) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, entities, size).tolist() for _ in range(count)]


def _body(path: str, keys: list[int], on_demand: bool = False) -> bytes:
    if path == "/get-online-features":
        return json.dumps({"features": FEATURE_REFS, "entities": {"driver_id": keys}}).encode()
    body: dict[str, Any] = {
        "features": FEATURE_REFS + (["trip_risk"] if on_demand else []),
        "entities": {"driver_id": keys},
    }
    if on_demand:
        body["request"] = {"trip_km": [3.2] * len(keys)}
    body["at"] = LOOKUP_AT.isoformat()
    return json.dumps(body).encode()


def raw_sequential(port: int, path: str, bodies: list[bytes]) -> dict[str, float]:
    """The same keep-alive ``http.client`` loop for every server (status 200 checked).

    A connection the server drops (Feast's gunicorn recycles a worker after ``--max-requests``,
    1,000 by default, and a request in flight then gets a broken pipe) is opened again and the
    request sent once more, inside the timed call; ``reconnects`` counts them.
    """
    connections = [http.client.HTTPConnection("127.0.0.1", port)]
    reconnects = 0
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}

    def send(i: int) -> tuple[int, bytes]:
        connections[0].request("POST", path, bodies[i % len(bodies)], headers)
        answer = connections[0].getresponse()
        return answer.status, answer.read()

    def call(i: int) -> object:
        nonlocal reconnects
        try:
            status, data = send(i)
        except (ConnectionError, http.client.RemoteDisconnected):
            reconnects += 1
            connections[0].close()
            connections[0] = http.client.HTTPConnection("127.0.0.1", port)
            status, data = send(i)
        if status != 200:
            raise SystemExit(f"{path} answered {status}: {data[:300]!r}")
        return data

    result = _latencies(call, len(bodies))
    connections[0].close()
    return {**result, "reconnects": reconnects}


def client_sequential(port: int, batches: list[list[int]], on_demand: bool) -> dict[str, float]:
    import featurekit as fk

    client = fk.Client(f"http://127.0.0.1:{port}", token=TOKEN)
    features = FEATURE_REFS + (["trip_risk"] if on_demand else [])
    request = {"trip_km": [3.2] * len(batches[0])} if on_demand else None
    return _latencies(
        lambda i: client.online_features({"driver_id": batches[i]}, features, request=request, at=LOOKUP_AT),
        len(batches),
    )


def throughput(port: int, path: str, bodies: list[bytes], clients: int = 16, seconds: float = 5.0) -> dict[str, float]:
    """Requests per second of ``clients`` keep-alive connections posting for ``seconds``."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    stop = time.monotonic() + seconds
    counts = [0] * clients
    errors = [0] * clients
    samples: list[list[float]] = [[] for _ in range(clients)]

    def run(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = index
        while time.monotonic() < stop:
            began = time.perf_counter()
            try:
                connection.request("POST", path, bodies[i % len(bodies)], headers)
                answer = connection.getresponse()
                answer.read()
            except (OSError, http.client.HTTPException):  # e.g. a gunicorn worker recycled mid-connection
                errors[index] += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            samples[index].append(time.perf_counter() - began)
            counts[index] += 1
            errors[index] += answer.status != 200
            i += clients

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - began
    merged = [s for series in samples for s in series]
    return {"rps": sum(counts) / took, "errors": sum(errors), **_summary(merged)}


def _feast_prepare(folder: Path) -> Path | None:
    python = os.environ.get("FEAST_PYTHON", "/tmp/feast-venv/bin/python")
    if not Path(python).exists():
        return None
    out = HERE / "results" / "feast-prepare.json"
    subprocess.run([python, "-m", "benchmarks.feast_child", "lookup", str(folder), str(out), "1000", "1", "10"],
                   check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    return Path(python).parent / "feast"


def run_http(scale_name: str = "medium", calls: int = 3000) -> dict[str, Any]:
    from benchmarks.contenders import fk_repo

    scale = SCALES[scale_name]
    folder = ensure(scale)
    repo = fk_repo(folder)
    db = repo / ".featurekit" / "online.db"
    one = _batches(scale.entities, 1, calls)
    hundred = _batches(scale.entities, 100, calls // 3, seed=6)
    results: dict[str, Any] = {"scale": scale_name, "started": datetime.now().isoformat(timespec="seconds")}
    serve = [sys.executable, "-m", "featurekit.cli", "--repo", str(repo), "--quiet", "serve", "--port", "{port}"]
    floor = [sys.executable, "-m", "uvicorn", "benchmarks.http_floor:app", "--port", "{port}", "--no-access-log",
             "--log-level", "warning"]  # fmt: skip
    floor_env = {"FLOOR_DB": str(db)}

    server = Served(serve, "/healthz")
    try:
        results["fk_client_1"] = client_sequential(server.port, one, on_demand=False)
        results["fk_client_100"] = client_sequential(server.port, hundred, on_demand=False)
        results["fk_client_1_on_demand"] = client_sequential(server.port, one, on_demand=True)
        results["fk_raw_1"] = raw_sequential(server.port, "/v1/features", [_body("/v1/features", k) for k in one])
        results["fk_raw_100"] = raw_sequential(server.port, "/v1/features", [_body("/v1/features", k) for k in hundred])
        feast_bodies = [_body("/get-online-features", k) for k in one]
        results["fk_feast_route_1"] = raw_sequential(server.port, "/get-online-features", feast_bodies)
    finally:
        server.stop()
    server = Served(floor, "/healthz", env=floor_env)
    try:
        results["floor_raw_1"] = raw_sequential(server.port, "/v1/features", [_body("/v1/features", k) for k in one])
        results["floor_raw_100"] = raw_sequential(
            server.port, "/v1/features", [_body("/v1/features", k) for k in hundred]
        )
    finally:
        server.stop()
    bodies = [_body("/v1/features", k) for k in one]
    server = Served([*serve, "--workers", "2"], "/healthz")
    try:
        results["fk_throughput"] = throughput(server.port, "/v1/features", bodies)
        results["fk_feast_route_throughput"] = throughput(server.port, "/get-online-features", feast_bodies)
    finally:
        server.stop()
    server = Served([*floor, "--workers", "2"], "/healthz", env=floor_env)
    try:
        results["floor_throughput"] = throughput(server.port, "/v1/features", bodies)
    finally:
        server.stop()
    (HERE / "results" / "http.json").write_text(json.dumps(results, indent=1))  # kept if Feast's part fails
    try:
        _run_feast(folder, feast_bodies, calls, results)
    except (OSError, http.client.HTTPException, subprocess.CalledProcessError, SystemExit) as exc:
        # (Feast's server once broke a keep-alive connection mid-run: its figures are missing, not featurekit's)
        results["feast_error"] = f"{type(exc).__name__}: {exc}"
    (HERE / "results" / "http.json").write_text(json.dumps(results, indent=1))
    return results


def _run_feast(folder: Path, bodies: list[bytes], calls: int, results: dict[str, Any]) -> None:
    """``feast serve`` with 1 worker (sequential) and 2 (throughput), when Feast's venv exists."""
    feast = _feast_prepare(folder)
    if feast is None:
        return
    feast_repo = folder / "feast_repo"
    for workers, key in ((1, "feast_raw_1"), (2, "feast_throughput")):
        command = [str(feast), "serve", "--host", "127.0.0.1", "-p", "{port}", "--workers", str(workers)]
        server = Served(command, "/health", cwd=feast_repo)
        try:
            if workers == 1:
                results[key] = raw_sequential(server.port, "/get-online-features", bodies[: calls // 3])
            else:
                results[key] = throughput(server.port, "/get-online-features", bodies)
        finally:
            server.stop()
    results["feast"] = True


def _ms(entry: dict[str, Any] | None) -> str:
    return "-" if entry is None else f"p50 {entry['p50_ms']:.3f} ms, p99 {entry['p99_ms']:.3f} ms"


def section(results: dict[str, Any], command: str) -> str:
    """The RESULTS.md section of an HTTP run."""
    get = results.get
    rows = [
        ("1 entity x 8 features, fk.Client", get("fk_client_1"), get("floor_raw_1"), get("feast_raw_1")),
        ("1 entity x 8 features, raw http.client", get("fk_raw_1"), get("floor_raw_1"), get("feast_raw_1")),
        ("1 entity, Feast's route and body", get("fk_feast_route_1"), None, get("feast_raw_1")),
        ("100 entities x 8 features, fk.Client", get("fk_client_100"), get("floor_raw_100"), None),
        ("100 entities x 8 features, raw http.client", get("fk_raw_100"), get("floor_raw_100"), None),
        ("1 entity x 8 features + 1 on-demand, fk.Client", get("fk_client_1_on_demand"), None, None),
    ]
    lines = [
        "## HTTP feature server (issue 14)",
        "",
        f"Command: `{command}` ({results['started']}; scale {results['scale']}: keys drawn at random from all",
        "entities; loopback; sequential = one keep-alive connection; the floor is a bare ASGI app under the same",
        "uvicorn doing one SQLite `IN` query on featurekit's own online table, with no auth, types, TTL or metrics).",
        "",
        "| sequential | featurekit | floor (bare ASGI) | Feast `feast serve` |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {_ms(fk)} | {_ms(floor)} | {_ms(feast)} |" for name, fk, floor, feast in rows]
    lines += [
        "",
        "| throughput, 2 workers, 16 keep-alive clients, 1 entity, 5 s | requests/s | p99 | errors |",
        "|---|---|---|---|",
    ]
    for name, key in (
        ("featurekit `/v1/features`", "fk_throughput"),
        ("featurekit `/get-online-features`", "fk_feast_route_throughput"),
        ("floor (bare ASGI)", "floor_throughput"),
        ("Feast `/get-online-features`", "feast_throughput"),
    ):
        entry = get(key)
        if entry is not None:
            lines.append(f"| {name} | {entry['rps']:,.0f} | {entry['p99_ms']:.2f} ms | {entry['errors']} |")
    dropped = {name: entry["reconnects"] for name, entry, _, _ in rows if entry and entry.get("reconnects")}
    for key in ("floor_raw_1", "floor_raw_100", "feast_raw_1"):
        if (get(key) or {}).get("reconnects"):
            dropped[key] = get(key)["reconnects"]
    if dropped:
        counts = ", ".join(f"{name}: {count}" for name, count in dropped.items())
        lines += ["", f"Connections the server dropped mid-run, opened again and the request resent (timed): {counts}."]
    if get("feast_error"):
        lines += ["", f"Feast's part of the run failed ({get('feast_error')}): its missing cells were not measured."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    scale = argv[0] if argv else "medium"
    (HERE / "results").mkdir(exist_ok=True)
    results = run_http(scale)
    print(section(results, f"python -m benchmarks http {scale}"))
    for log in (HERE / "results").glob("http-*.log"):
        log.unlink()
    (HERE / "results" / "feast-prepare.json").unlink(missing_ok=True)
