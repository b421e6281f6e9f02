"""``python -m benchmarks redis``: featurekit's Redis online store against hand-written redis-py, in one run.

Workloads (each measurement a fresh child process, contenders alternating within each round):

- ``materialize``: featurekit's whole ``materialize`` of one view (offline Delta commit, then the
  online load) into Redis, on a copy of the scale's prepared repo, against the floor's offline
  Delta write (as in the main harness) plus the floor's load below; next to it the same
  materialize with ``online=False``, so the online share can be read off.
- ``load``: featurekit's online load step alone (newest committed row per entity, encoded, written
  by the newest-only script) against the floor: the same DuckDB newest-row query plus a pipeline
  of one ``HSET key ts f0 .. f7`` per entity (no age check: a fresh load).
- ``lookup_1`` / ``lookup_100``: ``online_features`` of 1 or 100 random entities (drawn from all
  of them) x 8 features, p50/p99, against the floor's ``HMGET`` (one, or 100 pipelined).

A ``redis-server`` without persistence is started on a free loopback port for the run (or
``--url`` names one; its database is flushed before each featurekit load). The record goes to
``results/redis.json`` and its section replaces the "Redis online store" section of RESULTS.md
in place (the other sections stay as they are; ``python -m benchmarks report`` writes the same
section from the JSON). With another ``--output`` both go to that folder instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.data import END, FEATURES, LOOKUP_AT, SCALES, START, ensure, peak_rss_mb, restore
from benchmarks.timing import Stopwatch

HERE = Path(__file__).resolve().parent
RECORD = "redis.json"
TITLE = "## Redis online store"
PREFIX = "bench:"
FLOOR_PREFIX = "floor:stats_a:"
CALLS = {"1": 5000, "100": 1000}
Result = dict[str, Any]


# -- children ---------------------------------------------------------------------------------


def _client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def _repo(folder: Path, url: str) -> Path:
    """A fresh copy of the scale's prepared repo whose online store is the Redis at ``url``."""
    from benchmarks.contenders import fk_repo

    copy = folder / "fk_repo-redis"
    restore(fk_repo(folder), copy)
    (copy / ".featurekit" / "online.db").unlink(missing_ok=True)
    (copy / "featurekit.yaml").write_text(f'online:\n  type: redis\n  url: "{url}"\n  key_prefix: "{PREFIX}"\n')
    return copy


def fk_materialize(folder: Path, url: str, online: bool) -> Result:
    import featurekit as fk

    if online:
        _client(url).flushdb()  # an empty store, as for the load (the floor's keys go too; it reloads them)
    with fk.FeatureStore(_repo(folder, url), progress=False) as store:
        watch = Stopwatch()
        (result,) = store.materialize(START, END, views=["stats_a"], online=online)
        timing = watch.result()
    return {**timing, "rows": result.source_rows, "online_rows": result.online_rows}


def fk_load(folder: Path, url: str) -> Result:
    import featurekit as fk

    _client(url).flushdb()
    with fk.FeatureStore(_repo(folder, url), progress=False) as store:
        version = store.registry.active()["stats_a"].version
        materialized = store.registry.last_materialization(version.id)
        assert materialized is not None
        watch = Stopwatch()
        rows = store._materializer().load_online(version, materialized.data_version, None)
        timing = watch.result()
    return {**timing, "online_rows": rows}


def floor_load(folder: Path, url: str) -> Result:
    """DuckDB's newest row per entity (as the SQLite floor), then pipelined HSETs of raw values."""
    import duckdb

    client = _client(url)
    client.unlink(*(f"{FLOOR_PREFIX}{key}" for key in range(SCALES[folder.name].entities)))  # keys are 0..n-1
    watch = Stopwatch()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    packed = ", ".join(["t := event_timestamp", "c := created", *(f"{x} := {x}" for x in FEATURES)])
    table = con.sql(
        f"SELECT driver_id, epoch_us(v.t) AS ts, {', '.join(f'v.{x} AS {x}' for x in FEATURES)} FROM "
        f"(SELECT driver_id, max(struct_pack({packed})) AS v FROM read_parquet(?) GROUP BY driver_id)",
        params=[str(folder / "sources" / "stats_a.parquet")],
    ).to_arrow_table()
    names = ["ts", *FEATURES]
    columns = [table.column(c).to_pylist() for c in ["driver_id", *names]]
    pipe = client.pipeline(transaction=False)
    for count, (key, *values) in enumerate(zip(*columns, strict=True), 1):
        pipe.hset(f"{FLOOR_PREFIX}{key}", mapping=dict(zip(names, values, strict=True)))
        if count % 5000 == 0:
            pipe.execute()
    pipe.execute()
    return {**watch.result(), "online_rows": table.num_rows}


def floor_materialize(folder: Path, url: str) -> Result:
    """What featurekit's materialize does, by hand: the floor's offline Delta write, then its Redis load."""
    from benchmarks.contenders import floor_materialize_offline

    with tempfile.TemporaryDirectory(prefix="fk-bench-redis-floor-") as work:
        offline = floor_materialize_offline(folder, Path(work))
    online = floor_load(folder, url)
    seconds, cpu = (offline[k] + online[k] for k in ("seconds", "cpu_seconds"))
    return {"seconds": seconds, "cpu_seconds": cpu, "rows": offline["rows"], "online_rows": online["online_rows"]}


def _latencies(call: Callable[[int], object], calls: int) -> Result:
    from benchmarks.contenders import _latencies as measure

    return measure(call, calls)


def _batches(entities: int, size: int, count: int) -> list[list[int]]:
    from benchmarks.contenders import _entity_batches

    return _entity_batches(entities, size, count)


def fk_lookup(folder: Path, url: str, entities: int, size: int) -> Result:
    import featurekit as fk

    repo = folder / "fk_repo-redis"  # loaded by the load workload before the lookups run
    batches = _batches(entities, size, CALLS[str(size)])
    features = [f"stats_a:{x}" for x in FEATURES]
    with fk.FeatureStore(repo, progress=False) as store:
        probe = store.online_features({"driver_id": list(range(100))}, features, at=LOOKUP_AT).to_dict()
        assert any(v is not None for v in probe["f0"]), "the Redis store is not loaded"
        return _latencies(
            lambda i: store.online_features({"driver_id": batches[i]}, features, at=LOOKUP_AT).to_dict(),
            len(batches),
        )


def floor_lookup(url: str, entities: int, size: int) -> Result:
    client = _client(url)
    batches = _batches(entities, size, CALLS[str(size)])
    names = ["ts", *FEATURES]
    assert client.exists(*(f"{FLOOR_PREFIX}{key}" for key in range(100))), "the floor is not loaded"
    if size == 1:
        return _latencies(lambda i: client.hmget(f"{FLOOR_PREFIX}{batches[i][0]}", names), len(batches))

    def call(i: int) -> object:
        pipe = client.pipeline(transaction=False)
        for key in batches[i]:
            pipe.hmget(f"{FLOOR_PREFIX}{key}", names)
        return pipe.execute()

    return _latencies(call, len(batches))


def child(argv: list[str]) -> None:
    """``redis-child KIND SCALE URL OUT``: one measurement, written as JSON to OUT."""
    kind, scale_name, url, out = argv
    scale = SCALES[scale_name]
    folder = ensure(scale)
    if kind == "fk_materialize":
        result = fk_materialize(folder, url, online=True)
    elif kind == "floor_materialize":
        result = floor_materialize(folder, url)
    elif kind == "fk_materialize_offline":
        result = fk_materialize(folder, url, online=False)
    elif kind == "fk_load":
        result = fk_load(folder, url)
    elif kind == "floor_load":
        result = floor_load(folder, url)
    elif kind.startswith("fk_lookup_"):
        result = fk_lookup(folder, url, scale.entities, int(kind.rsplit("_", 1)[1]))
    elif kind.startswith("floor_lookup_"):
        result = floor_lookup(url, scale.entities, int(kind.rsplit("_", 1)[1]))
    else:
        raise SystemExit(f"unknown Redis workload {kind}")
    result["rss_mb"] = peak_rss_mb()
    Path(out).write_text(json.dumps(result))


# -- the run ----------------------------------------------------------------------------------

# (workload, title, featurekit child, floor child); the loads run before the lookups, which read
# what they loaded (featurekit's rows under PREFIX, the floor's hashes under FLOOR_PREFIX).
WORKLOADS = [
    ("materialize", "materialize 1 view to Redis (offline + online)", "fk_materialize", "floor_materialize"),
    ("materialize_offline", "the same materialize, online=False", "fk_materialize_offline", None),
    ("load", "online load step into Redis", "fk_load", "floor_load"),
    ("lookup_1", "lookup 1 entity x 8 features", "fk_lookup_1", "floor_lookup_1"),
    ("lookup_100", "lookup 100 entities x 8 features", "fk_lookup_100", "floor_lookup_100"),
]


class Server:
    """A ``redis-server`` without persistence on a free loopback port, for the run."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (apt-get install -y redis-server), or pass --url")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = Path(tempfile.mkdtemp(prefix="fk-bench-redis-"))
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [binary, *options, "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        for _ in range(500):
            try:
                if _client(self.url).ping():
                    return
            except Exception:  # noqa: BLE001 -- redis-py's ConnectionError until the server listens
                time.sleep(0.02)
        raise SystemExit("redis-server did not start")

    def version(self) -> str:
        return str(_client(self.url).info("server")["redis_version"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


def _measure(kind: str, scale: str, url: str, work: Path) -> Result:
    out = work / f"{kind}.json"
    out.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "redis-child", kind, scale, url, str(out)],
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        return {"error": ((done.stderr or done.stdout).strip().splitlines() or ["failed"])[-1]}
    result: Result = json.loads(out.read_text())
    return result


def _summary(samples: list[Result]) -> Result:
    ok = [s for s in samples if "error" not in s]
    if not ok:
        return {"error": samples[0]["error"] if samples else "not run"}
    seconds = [s["seconds"] for s in ok]
    summary: Result = {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "runs": len(ok)}
    summary["rss_mb"] = max(s["rss_mb"] for s in ok)
    for key in ("p50_ms", "p99_ms", "cpu_seconds"):
        if key in ok[0]:
            summary[key] = statistics.median(s[key] for s in ok)
    for key in ("rows", "online_rows", "calls"):
        if key in ok[0]:
            summary[key] = max(s[key] for s in ok)
    return summary


def run(options: argparse.Namespace) -> int:
    scale = SCALES[options.scale]
    folder = ensure(scale)
    from benchmarks.contenders import fk_repo

    fk_repo(folder)  # prepared once per scale (the other workloads share it)
    server = None if options.url else Server()
    url = server.url if server is not None else options.url
    versions = {"redis-server": server.version() if server is not None else f"external ({options.url})"}
    began = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    samples: dict[str, dict[str, list[Result]]] = {name: {"featurekit": [], "floor": []} for name, *_ in WORKLOADS}
    try:
        with tempfile.TemporaryDirectory(prefix="fk-bench-redis-") as tmp:
            for _ in range(options.repeat):
                for name, _, mine, floor in WORKLOADS:
                    samples[name]["featurekit"].append(_measure(mine, scale.name, url, Path(tmp)))
                    if floor is not None:
                        samples[name]["floor"].append(_measure(floor, scale.name, url, Path(tmp)))
    finally:
        if server is not None:
            server.stop()
    import redis

    import featurekit

    record = {
        "scale": {"name": scale.name, "rows": scale.rows, "entities": scale.entities},
        "command": " ".join(["python -m benchmarks redis", *sys.argv[2:]]),
        "started": began.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count() or 0,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # at the start and the end
        },
        "versions": {**versions, "redis-py": redis.__version__, "featurekit": featurekit.__version__},
        "results": {
            name: {"title": title, **{k: _summary(v) for k, v in samples[name].items() if v}}
            for name, title, *_ in WORKLOADS
        },
    }
    results = options.output
    results.mkdir(parents=True, exist_ok=True)
    (results / RECORD).write_text(json.dumps(record, indent=2))
    target = HERE / "RESULTS.md"
    if results != HERE / "results":  # a run elsewhere (the smoke test) writes its own copy
        target = results / "RESULTS.md"
        if not target.exists():
            shutil.copy(HERE / "RESULTS.md", target)
    replace_section(target, section(record), HERE / "results" / "NOTES.md")
    failed = [n for n, r in record["results"].items() if any("error" in s for s in r.values() if isinstance(s, dict))]
    return 1 if failed else 0


# -- the report -------------------------------------------------------------------------------


def _cell(entry: Result | None) -> str:
    if entry is None:
        return "-"
    if "error" in entry:
        return f"failed: {entry['error']}"
    if "p50_ms" in entry:
        return f"p50 {entry['p50_ms']:.3f} ms, p99 {entry['p99_ms']:.3f} ms"
    return f"{entry['median']:.3f} s ({entry['min']:.3f}-{entry['max']:.3f})"


def _ratio(mine: Result, floor: Result | None) -> str:
    if floor is None or "error" in mine or "error" in floor:
        return "-"
    key = "p99_ms" if "p99_ms" in mine else "median"
    return f"{mine[key] / floor[key]:.2f}x" + (" (p99)" if key == "p99_ms" else "")


# Issue 14's targets: (workload, what is compared, the bound, how it reads)
TARGETS = [
    ("load", "ratio", 1.5, "online load into Redis <= 1.5x the hand-written pipelined loader"),
    ("materialize", "ratio", 1.5, "materialize to Redis <= 1.5x the hand-written offline write + loader"),
    ("lookup_1", "p99_ms", 0.5, "lookup of 1 entity: p99 <= 0.5 ms"),
    ("lookup_100", "p99_ms", 2.0, "lookup of 100 entities: p99 <= 2 ms"),
]


def _targets(results: Result) -> list[str]:
    lines = []
    for name, measure, bound, text in TARGETS:
        mine, floor = results.get(name, {}).get("featurekit", {}), results.get(name, {}).get("floor")
        if "error" in mine or not mine or (measure == "ratio" and (floor is None or "error" in floor)):
            continue
        if measure == "ratio":
            value = mine["median"] / floor["median"]  # type: ignore[index]
            shown = f"{value:.2f}x"
        else:
            value = mine[measure]
            shown = f"{value:.3f} ms (p50 {mine['p50_ms']:.3f} ms)"
        lines.append(f"- {text}: {shown}, {'met' if value <= bound else 'missed'}")
    return lines


def section(record: Result) -> str:
    """The RESULTS.md section of a Redis run."""
    scale = record["scale"]
    machine = record["machine"]
    load = machine.get("load_average")
    lines = [
        f"{TITLE} ({scale['name']}: {scale['rows']:,} feature rows, {scale['entities']:,} entities)",
        "",
        f"Command: `{record['command']}` (started {record['started']})  ",
        f"Machine: {machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}"
        + (f"; load average {load[0]} at the start, {load[1]} at the end" if load else "")
        + "  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()) + "  ",
        "Floor: redis-py by hand on the same server (loopback, no persistence): DuckDB's newest row per",
        "entity and one pipelined `HSET key ts f0 .. f7` per entity (no age check: a fresh load); its",
        "materialize adds the main harness's offline floor (DuckDB reads the window, deltalake writes it).",
        "Lookups by `HMGET` (100: pipelined), keys drawn at random from all entities. Every measurement",
        "is a fresh child process, contenders alternating; seconds are medians (min-max), p50/p99 the",
        "median over the runs.",
        "",
        "| workload | featurekit | floor | fk / floor | peak RSS fk | extra |",
        "|---|---|---|---|---|---|",
    ]
    for result in record["results"].values():
        mine, floor = result.get("featurekit", {}), result.get("floor")
        extra = []
        if "cpu_seconds" in mine and "p50_ms" not in mine:  # the client's own CPU; Redis' is not in it
            extra.append(
                f"client CPU {mine['cpu_seconds']:.2f} s"
                + (f" / {floor['cpu_seconds']:.2f} s" if floor and "cpu_seconds" in floor else "")
            )
        if "online_rows" in mine:
            extra.append(f"{mine['online_rows']:,} entities online")
        if "calls" in mine:
            extra.append(f"{mine['calls']:,} calls a run")
        lines.append(
            f"| {result['title']} | {_cell(mine)} | {_cell(floor)} | {_ratio(mine, floor)} | "
            f"{mine.get('rss_mb', 0):.0f} MB | {'; '.join(extra)} |"
        )
    targets = _targets(record["results"])
    if targets:
        lines += ["", "Targets (issue 14), from this run:", "", *targets]
        if load and max(load) > machine["cpus"]:
            lines += [
                "",
                "More jobs than cores ran during this run (the load average above): a p99 then measures the",
                "scheduler (the hand-written floor's p99 moves with featurekit's); the p50s are what one",
                "lookup costs.",
            ]
    return "\n".join(lines)


def replace_section(target: Path, text: str, notes: Path, title: str = TITLE) -> None:
    """Put ``text`` in place of RESULTS.md's section ``title`` (Redis), or before the notes when it has none."""
    current = target.read_text()
    start = current.find(title)
    if start >= 0:
        end = current.find("\n## ", start + len(title))
        updated = current[:start] + text + ("\n" + current[end:] if end >= 0 else "\n")
    else:
        first_note = notes.read_text().splitlines()[0] if notes.exists() else None
        at = current.find(first_note) if first_note else -1
        updated = current[:at] + text + "\n\n" + current[at:] if at >= 0 else current.rstrip() + "\n\n" + text + "\n"
    target.write_text(updated)


def record_section(results: Path) -> str:
    """The section of the last recorded run (for ``python -m benchmarks report``), or nothing."""
    path = results / RECORD
    return section(json.loads(path.read_text())) if path.exists() else ""
