"""``python -m benchmarks load``: the feature server under a bounded loopback load, idle and disturbed.

For each online store (SQLite, then Redis) one ``featurekit serve`` (1 worker) serves a copy of
the scale's prepared repo, and :class:`benchmarks.load.Load` sends it 1-entity lookups of keys
drawn at random from all entities, paced at ``--rate`` requests per second per client, for
``--seconds`` per phase:

- ``idle``: nothing else runs;
- ``materialize``: another process re-materializes the last week of the view (offline and
  online) in a loop for the whole phase (``python -m benchmarks materialize-loop``); the issue's
  target is zero errors and a p99 at most 3x the idle one;
- ``materialize_niced`` (``--writer-nice N``, default 10; 0 leaves it out): the same with the
  materializing process at that nice value;
- ``materialize_idle`` (``--no-writer-idle`` leaves it out): the same with the materializing
  process at the idle CPU priority (``featurekit materialize --idle``, Linux ``SCHED_IDLE``), as one
  runs a batch job on a serving host;
- ``materialize_pinned`` (``--no-writer-pinned`` leaves it out): the same with the materializing
  process confined to the machine's last CPU at nice 0 (``featurekit materialize --cpus N``), the
  server and the load generator free to use every CPU;
- ``restart`` (Redis only): Redis is stopped a third of the way in (after a SAVE) and started
  again on the same port at two thirds; the target is only 503s while it is down, and 200s with
  the values from before once it is back, with no restart of the feature server.

Latency is timed from each request's actual send (a paced client that falls behind does not
burst). Each phase also records what the server measured itself (its ``/metrics`` histograms of
the handler's time and of the online store's read): how many requests took it over 5, 10 and
25 ms, which tells time spent in the server from time spent waiting for a core. The record goes
to ``results/serving_load.json``; its section replaces "Serving under load" in RESULTS.md in
place (``python -m benchmarks report`` writes the same section).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.load import Answer, Load, summary

HERE = Path(__file__).resolve().parent
RECORD = "serving_load.json"
TITLE = "## Serving under load (issue 14)"
WARM_UP_S = 4.0  # the materializing child's imports and store opening, before the load starts
Result = dict[str, Any]
MATERIALIZE_PHASES = ("materialize", "materialize_niced", "materialize_idle", "materialize_pinned")


def _bodies(entities: int, count: int) -> list[bytes]:
    from benchmarks.http_server import _batches, _body

    return [_body("/v1/features", keys) for keys in _batches(entities, 1, count, seed=11)]


def _load(port: int, bodies: list[bytes], options: argparse.Namespace) -> Load:
    from benchmarks.http_server import TOKEN

    return Load(
        port,
        bodies,
        token=TOKEN,
        clients=options.clients,
        seconds=options.seconds,
        max_requests=int(options.seconds * options.rate * options.clients) + options.clients,
        rate=options.rate,
    )


def _data_version(repo: Path) -> int:
    import featurekit as fk

    with fk.FeatureStore(repo, progress=False) as store:
        version = store.registry.active()["stats_a"].version
        done = store.registry.last_materialization(version.id)
        return -1 if done is None else done.data_version


def _phase(answers: list[Answer], seconds: float) -> Result:
    found = summary(answers, seconds)
    found["errors"] = sum(a.status != 200 for a in answers)
    return found


SERVER_HISTOGRAMS = {  # what the server measures itself (/metrics), by the name the record gives it
    "handler": 'featurekit_http_request_duration_seconds_bucket{route="/v1/features",status="200",',
    "online_read": "featurekit_online_read_seconds_bucket{",
}
TAIL_BOUNDS = ("0.005", "0.01", "0.025")  # seconds


def _server_counts(port: int) -> dict[str, dict[str, float]]:
    """The server's cumulative bucket counts (``le`` -> count) of its request and online-read times."""
    import http.client

    from benchmarks.http_server import TOKEN

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    found: dict[str, dict[str, float]] = {name: {} for name in SERVER_HISTOGRAMS}
    for line in text.splitlines():
        for name, start in SERVER_HISTOGRAMS.items():
            if line.startswith(start):
                bound = line.split('le="', 1)[1].split('"', 1)[0]
                found[name][bound] = float(line.rsplit(" ", 1)[1])
    return found


def _server_tail(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> Result:
    """How many of the phase's requests the server itself took longer than each bound to handle.

    Set against the client's p99, this separates time in the server (its handler, its SQLite or
    Redis read) from time waiting for a core or in the load generator.
    """
    found: Result = {}
    for name, counts in after.items():
        done = {bound: count - before[name].get(bound, 0.0) for bound, count in counts.items()}
        total = done.get("+Inf", 0.0)
        found[name] = {"requests": int(total)} | {
            f"over_{float(bound) * 1e3:g}ms": int(total - done.get(bound, 0.0)) for bound in TAIL_BOUNDS
        }
    return found


def idle(port: int, bodies: list[bytes], options: argparse.Namespace) -> Result:
    counted = _server_counts(port)
    load = _load(port, bodies, options).start()
    found = _phase(load.wait(), options.seconds)
    found["server"] = _server_tail(counted, _server_counts(port))
    return found


def during_materialize(
    repo: Path,
    port: int,
    bodies: list[bytes],
    options: argparse.Namespace,
    *,
    nice: int = 0,
    idle: bool = False,
    cpus: str | None = None,
) -> Result:
    """The load while another process (at ``nice``, idle, or confined to ``cpus``) re-materializes
    the last week in a loop."""
    before = _data_version(repo)
    loop = [
        "materialize-loop",
        str(repo),
        str(WARM_UP_S + options.seconds),
        *(["--idle"] if idle else []),
        *(["--cpus", cpus] if cpus is not None else []),
    ]
    writer = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", *loop],
        cwd=HERE.parent,
        stdout=subprocess.DEVNULL,
        preexec_fn=(lambda: os.nice(nice)) if nice else None,  # noqa: PLW1509 -- no threads in the child yet
    )
    try:
        time.sleep(WARM_UP_S)
        counted = _server_counts(port)
        load = _load(port, bodies, options).start()
        answers = load.wait()
        server = _server_tail(counted, _server_counts(port))
    finally:
        writer.wait(600)
    found = _phase(answers, options.seconds)
    found["server"] = server
    found["commits"] = _data_version(repo) - before
    found["writer_exit"] = writer.returncode
    found["writer_nice"] = nice
    found["writer_idle"] = idle
    found["writer_cpus"] = cpus
    return found


def during_restart(server: Any, port: int, bodies: list[bytes], options: argparse.Namespace) -> Result:
    """The load while Redis stops at a third of the phase and starts again at two thirds."""
    import redis

    client = redis.Redis.from_url(server.url)
    client.save()  # the restarted server loads it: the same rows come back
    client.close()
    load = _load(port, bodies, options).start()
    try:
        time.sleep(options.seconds / 3)
        stopping = load.now()
        server.halt()
        stopped = load.now()
        time.sleep(options.seconds / 3)
        starting = load.now()
        server.start()
        started = load.now()
    finally:
        answers = load.wait()
    parts: dict[str, list[Answer]] = {"before": [], "down": [], "after": [], "edges": []}
    for answer in answers:
        if answer.done <= stopping:
            parts["before"].append(answer)
        elif answer.sent >= stopped and answer.done <= starting:
            parts["down"].append(answer)
        elif answer.sent >= started:
            parts["after"].append(answer)
        else:  # in flight while Redis stopped or started
            parts["edges"].append(answer)
    first_ok = next((a for a in answers if a.sent >= stopped and a.status == 200), None)
    return {
        **_phase(answers, options.seconds),
        "down_s": starting - stopped,
        **{name: summary(part)["statuses"] for name, part in parts.items()},
        "down_max_ms": max((a.seconds for a in parts["down"]), default=0.0) * 1e3,
        # from Redis answering again to the first 200 that was sent after it stopped
        "recovered_ms": None if first_ok is None else max(0.0, first_ok.done - started) * 1e3,
    }


def _materialize_phases(repo: Path, port: int, bodies: list[bytes], options: argparse.Namespace) -> Result:
    """``materialize``, then ``materialize_niced`` and ``materialize_idle`` unless switched off."""
    found = {"materialize": during_materialize(repo, port, bodies, options)}
    if options.writer_nice:
        found["materialize_niced"] = during_materialize(repo, port, bodies, options, nice=options.writer_nice)
    if options.writer_idle:
        found["materialize_idle"] = during_materialize(repo, port, bodies, options, idle=True)
    if options.writer_pinned and (os.cpu_count() or 1) > 1:
        last = str((os.cpu_count() or 1) - 1)
        found["materialize_pinned"] = during_materialize(repo, port, bodies, options, cpus=last)
    return found


def _serve(repo: Path) -> Any:
    from benchmarks.http_server import Served

    command = [sys.executable, "-m", "featurekit.cli", "--repo", str(repo), "--quiet", "serve", "--port", "{port}"]
    return Served(command, "/healthz")


def _sqlite(folder: Path, bodies: list[bytes], options: argparse.Namespace) -> Result:
    from benchmarks.contenders import scratch_repo

    with scratch_repo(folder) as repo:
        served = _serve(repo)
        try:
            found = {"idle": idle(served.port, bodies, options)}
            found.update(_materialize_phases(repo, served.port, bodies, options))
            return found
        finally:
            served.stop()


def _redis(folder: Path, bodies: list[bytes], options: argparse.Namespace) -> Result:
    from benchmarks.redis_online import Server, fk_load

    server = Server()
    try:
        fk_load(folder, server.url)  # a fresh copy of the repo on this Redis, loaded online
        repo = folder / "fk_repo-redis"
        served = _serve(repo)
        try:
            found = {"idle": idle(served.port, bodies, options)}
            found.update(_materialize_phases(repo, served.port, bodies, options))
            found["restart"] = during_restart(server, served.port, bodies, options)
            return found
        finally:
            served.stop()
    finally:
        server.stop()
        shutil.rmtree(folder / "fk_repo-redis", ignore_errors=True)


def run(options: argparse.Namespace) -> int:
    from benchmarks.contenders import fk_repo
    from benchmarks.data import SCALES, ensure
    from benchmarks.redis_online import write_record

    scale = SCALES[options.scale]
    folder = ensure(scale)
    fk_repo(folder)
    bodies = _bodies(scale.entities, 20_000)
    began = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    (HERE / "results").mkdir(exist_ok=True)
    try:
        stores = {"sqlite": _sqlite(folder, bodies, options), "redis": _redis(folder, bodies, options)}
    finally:
        for log in (HERE / "results").glob("http-*.log"):
            log.unlink()
    record = {
        "scale": {"name": scale.name, "rows": scale.rows, "entities": scale.entities},
        "command": " ".join(["python -m benchmarks load", *sys.argv[2:]]),
        "started": began.isoformat(timespec="seconds"),
        "load": {
            "clients": options.clients,
            "rate": options.rate,
            "seconds": options.seconds,
            "writer_nice": options.writer_nice,
            "writer_idle": options.writer_idle,
            "writer_pinned": options.writer_pinned,
        },
        "machine": {"cpus": os.cpu_count() or 0, "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]},
        "stores": stores,
    }
    write_record(record, options.output, RECORD, section(record), TITLE)
    return 0 if all(_met(record).values()) else 1


# -- the report -------------------------------------------------------------------------------


def _met(record: Result) -> dict[str, bool]:
    """Each functional target of the run: zero errors during a materialize, only 503s while Redis is down."""
    found = {}
    for name, phases in record["stores"].items():
        found[f"{name}: no error during a materialize"] = all(
            phases[p]["errors"] == 0 for p in MATERIALIZE_PHASES if p in phases
        )
        restart = phases.get("restart")
        if restart is not None:
            found[f"{name}: only 503s while down, only 200s after"] = (
                set(restart["down"]) == {"503"}
                and set(restart["after"]) == {"200"}
                and set(restart["before"]) == {"200"}
                and set(restart["edges"]) <= {"200", "503"}
            )
    return found


def _tail(found: Result, histogram: str) -> str:
    """``a / b / c`` of the requests the server took over 5, 10 and 25 ms (``-``: not recorded)."""
    counts = found.get("server", {}).get(histogram)
    if counts is None:
        return "-"
    return " / ".join(f"{counts[f'over_{float(b) * 1e3:g}ms']:,}" for b in TAIL_BOUNDS)


def _statuses(counted: dict[str, Any]) -> str:
    return ", ".join(f"{n:,} x {s}" for s, n in sorted(counted.items())) or "none"


def section(record: Result) -> str:
    """The RESULTS.md section of a load run."""
    scale, load, machine = record["scale"], record["load"], record["machine"]
    lines = [
        f"{TITLE}",
        "",
        f"Command: `{record['command']}` (started {record['started']}; scale {scale['name']}: "
        f"{scale['entities']:,} entities)  ",
        f"Machine: {machine['cpus']} CPUs; load average {machine['load_average'][0]} at the start, "
        f"{machine['load_average'][1]} at the end  ",
        f"Load: {load['clients']} keep-alive clients on loopback, each paced at {load['rate']:g} requests/s, "
        f"for {load['seconds']:g} s a phase;",
        "1 entity x 8 features a request (keys at random from all entities); one `featurekit serve` worker.",
        "During `materialize` another process re-materializes the view's last week (offline and online)",
        "in a loop; during `restart` Redis is stopped a third of the way in and started again (same port,",
        "its snapshot) at two thirds. Latency is timed from each request's actual send."
        + (
            f" `materialize_niced`: the same, with the materializing process at nice {load['writer_nice']}."
            if load.get("writer_nice")
            else ""
        )
        + (
            " `materialize_idle`: the same, with the materializing process at the idle CPU priority"
            " (`featurekit materialize --idle`: Linux `SCHED_IDLE`)."
            if load.get("writer_idle")
            else ""
        )
        + (
            " `materialize_pinned`: the same, with the materializing process confined to the last CPU"
            " (`featurekit materialize --cpus N`, nice 0); the server and the load generator may use every CPU."
            if load.get("writer_pinned")
            else ""
        ),
        "The server's columns count the requests its own histograms (`/metrics`) put over 5 / 10 / 25 ms:",
        "the handler's time, and within it the online store's read; the rest of a client's time is the",
        "wait for a core (server, load generator) and the loopback.",
        "",
        "| store | phase | requests | p50 | p99 | max | p99 / idle | server: handler > 5/10/25 ms | "
        "online read > 5/10/25 ms | answers |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    targets = []
    for name, phases in record["stores"].items():
        idle_p99 = phases["idle"].get("p99_ms")
        for phase, found in phases.items():
            ratio = f"{found['p99_ms'] / idle_p99:.2f}x" if idle_p99 and phase != "idle" else "-"
            extra = f" ({found['commits']} materializations committed)" if "commits" in found else ""
            lines.append(
                f"| {name} | {phase} | {found['requests']:,} | {found['p50_ms']:.3f} ms | {found['p99_ms']:.3f} ms | "
                f"{found['max_ms']:.1f} ms | {ratio} | {_tail(found, 'handler')} | {_tail(found, 'online_read')} | "
                f"{_statuses(found['statuses'])}{extra} |"
            )
        for phase in MATERIALIZE_PHASES:
            during = phases.get(phase)
            if idle_p99 and during is not None:
                ratio = during["p99_ms"] / idle_p99
                writer = f" (writer at nice {during['writer_nice']})" if during.get("writer_nice") else ""
                writer = " (writer at the idle priority: --idle)" if during.get("writer_idle") else writer
                writer = (
                    f" (writer confined to CPU {during['writer_cpus']}: --cpus)"
                    if during.get("writer_cpus")
                    else writer
                )
                targets.append(
                    f"- {name}, during a materialize{writer}: {during['errors']} errors in {during['requests']:,} "
                    f"requests; p99 {during['p99_ms']:.3f} ms against {idle_p99:.3f} ms idle = {ratio:.2f}x "
                    f"(target <= 3x: {'met' if ratio <= 3 and during['errors'] == 0 else 'missed'})"
                )
        restart = phases.get("restart")
        if restart is not None:
            recovered = restart["recovered_ms"]
            targets.append(
                f"- {name}, restarted mid-run: before {_statuses(restart['before'])}; "
                f"while down ({restart['down_s']:.1f} s) {_statuses(restart['down'])}"
                + f", slowest {restart['down_max_ms']:.1f} ms"
                + f"; in flight at the stop or the start {_statuses(restart['edges'])}; "
                f"after {_statuses(restart['after'])}; first 200 "
                + ("never" if recovered is None else f"{recovered:.1f} ms after Redis answered again")
            )
    met = _met(record)
    lines += ["", "Targets (issue 14), from this run:", "", *targets, ""]
    lines += [f"- {text}: {'met' if ok else 'missed'}" for text, ok in met.items()]
    if max(machine["load_average"]) > machine["cpus"]:
        lines += [
            "",
            "More jobs than cores ran during this run (the load average above): the p99s and their ratio",
            "measure the scheduler as much as the server.",
        ]
    return "\n".join(lines)


def record_section(results: Path) -> str:
    """The section of the last recorded run (for ``python -m benchmarks report``), or nothing."""
    path = results / RECORD
    return section(json.loads(path.read_text())) if path.exists() else ""
