"""``python -m benchmarks run --scale medium``: featurekit vs the hand-written floor vs Feast, in one run.

Every measurement runs in a fresh child process (so peak memory is per contender) and the
contenders alternate within each repetition. Training-set results of featurekit and the floor
must be identical, or the run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.data import SCALES, ensure, peak_rss_mb

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
FEAST_PYTHON = os.environ.get("FEAST_PYTHON", "/tmp/feast-venv/bin/python")

# workload -> (title, {contender: child arguments}); "fk"/"floor" run in this Python, "feast" in Feast's.
WORKLOADS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "training_1view_arrow": (
        "training set, 1 view, to Arrow",
        {
            "featurekit": ["training", "1", "arrow"],
            "floor": ["floor_training", "1", "arrow"],
            "feast": ["training", "1", "duckdb"],
        },
    ),
    "training_1view_parquet": (
        "training set, 1 view, to Parquet",
        {"featurekit": ["training", "1", "parquet"], "floor": ["floor_training", "1", "parquet"]},
    ),
    "training_3views_arrow": (
        "training set, 3 views, to Arrow",
        {
            "featurekit": ["training", "3", "arrow"],
            "floor": ["floor_training", "3", "arrow"],
            "feast": ["training", "3", "duckdb"],
        },
    ),
    "materialize_offline": (
        "offline materialize (source rows/s)",
        {"featurekit": ["materialize", "offline"], "floor": ["floor_materialize_offline"]},
    ),
    "materialize_online": (
        "materialize to the online store",
        {"featurekit": ["materialize", "online"], "floor": ["floor_online_load"], "feast": ["materialize"]},
    ),
    "online_load_step": (
        "online load step alone (newest row per entity -> SQLite)",
        {"featurekit": ["online_load"], "floor": ["floor_online_load"]},
    ),
    "lookup_1": (
        "online lookup, 1 entity x 8 features",
        {"featurekit": ["lookup", "1", "0"], "floor": ["floor_lookup", "1"], "feast": ["lookup", "1"]},
    ),
    "lookup_1_on_demand": ("online lookup, 1 entity x 8 features + 1 on-demand", {"featurekit": ["lookup", "1", "1"]}),
    "lookup_100": (
        "online lookup, 100 entities",
        {"featurekit": ["lookup", "100", "0"], "floor": ["floor_lookup", "100"], "feast": ["lookup", "100"]},
    ),
    "lookup_1000": (
        "online lookup, 1000 entities",
        {"featurekit": ["lookup", "1000", "0"], "floor": ["floor_lookup", "1000"], "feast": ["lookup", "1000"]},
    ),
    "lookup_during_materialize": (
        "1-entity lookups while another process materializes",
        {"featurekit": ["lookup_during_materialize"]},
    ),
}
CALLS = {"1": 5000, "100": 1000, "1000": 200}
FEAST_CALLS = {"1": 1000, "100": 200, "1000": 40}


def child(argv: list[str]) -> None:
    """Run one contender's workload and write its JSON result (called in a fresh process)."""
    from benchmarks import contenders as c

    kind, scale_name, out, *args = argv
    scale = SCALES[scale_name]
    folder = ensure(scale)
    work = Path(out).parent
    output = work / f"{kind}.parquet"
    result: dict[str, Any]
    if kind == "training":
        result = c.fk_training(folder, int(args[0]), args[1], output)
    elif kind == "floor_training":
        result = c.floor_training(folder, int(args[0]), args[1], output)
    elif kind == "materialize":
        result = c.fk_materialize(folder, online=args[0] == "online")
    elif kind == "floor_materialize_offline":
        result = c.floor_materialize_offline(folder, work)
    elif kind == "online_load":
        result = c.fk_online_load(folder)
    elif kind == "floor_online_load":
        result = c.floor_online_load(folder, work)
    elif kind == "lookup":
        result = c.fk_lookup(folder, scale.entities, int(args[0]), args[1] == "1", CALLS[args[0]])
    elif kind == "floor_lookup":
        result = c.floor_lookup(folder, scale.entities, int(args[0]), CALLS[args[0]])
    elif kind == "lookup_during_materialize":
        result = c.lookups_during_materialize(folder, scale.entities, 20.0)
    else:
        raise SystemExit(f"unknown workload {kind}")
    result["output"] = str(output) if output.exists() else None
    result["rss_mb"] = peak_rss_mb()
    Path(out).write_text(json.dumps(result))


def run_one(contender: str, args: list[str], scale: str, work: Path) -> dict[str, Any]:
    out = work / f"{contender}-{'-'.join(args)}.json"
    out.unlink(missing_ok=True)
    if contender == "feast":
        kind = args[0]
        extra = list(args[1:])
        if kind == "lookup":
            extra = [str(SCALES[scale].entities), args[1], str(FEAST_CALLS[args[1]])]
        folder = ensure(SCALES[scale])
        command = [FEAST_PYTHON, "-m", "benchmarks.feast_child", kind, str(folder), str(out), *extra]
    else:
        command = [sys.executable, "-m", "benchmarks", "child", args[0], scale, str(out), *args[1:]]
    done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:] or ["failed"]}
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [s for s in samples if "error" not in s]
    if not ok:
        return {"error": samples[0]["error"] if samples else "not run"}
    seconds = [s["seconds"] for s in ok]
    summary: dict[str, Any] = {
        "median": statistics.median(seconds),
        "min": min(seconds),
        "max": max(seconds),
        "rss_mb": max(s["rss_mb"] for s in ok),
        "runs": len(ok),
    }
    for key in ("p50_ms", "p99_ms", "rows", "online_rows", "errors", "calls"):
        if key in ok[0]:
            values = [s[key] for s in ok]
            summary[key] = statistics.median(values) if key.startswith("p") else max(values)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmarks and write the results")
    run.add_argument("--scale", choices=sorted(SCALES), default="medium")
    run.add_argument("--only", default="", help="comma-separated workloads (default: all)")
    run.add_argument("--repeat", type=int, default=3)
    run.add_argument("--no-feast", action="store_true")
    run.add_argument("--output", type=Path, default=HERE / "results")
    sub.add_parser("child").add_argument("argv", nargs=argparse.REMAINDER)
    loop = sub.add_parser("materialize-loop")
    loop.add_argument("repo", type=Path)
    loop.add_argument("seconds", type=float)
    options = parser.parse_args()
    if options.command == "child":
        child(options.argv)
        return
    if options.command == "materialize-loop":
        from benchmarks.contenders import materialize_loop

        materialize_loop(options.repo, options.seconds)
        return
    sys.exit(run_all(options))


def run_all(options: argparse.Namespace) -> int:
    from benchmarks.contenders import fk_repo, same_tables
    from benchmarks.report import write_report

    scale = SCALES[options.scale]
    folder = ensure(scale)
    fk_repo(folder)
    feast = not options.no_feast and Path(FEAST_PYTHON).exists()
    chosen = [w for w in WORKLOADS if not options.only or w in options.only.split(",")]
    results: dict[str, dict[str, Any]] = {}
    failures = []
    with tempfile.TemporaryDirectory(prefix="fk-bench-") as tmp:
        work = Path(tmp)
        for workload in chosen:
            title, contenders = WORKLOADS[workload]
            runs = {c: a for c, a in contenders.items() if feast or c != "feast"}
            samples: dict[str, list[dict[str, Any]]] = {c: [] for c in runs}
            repeat = 1 if workload.startswith("lookup") or workload == "materialize_online" else options.repeat
            for _ in range(repeat):
                for contender, args in runs.items():  # alternate contenders within each repetition
                    samples[contender].append(run_one(contender, args, scale.name, work))
                if "featurekit" in samples and "floor" in samples and workload.startswith("training"):
                    mine, floor = samples["featurekit"][-1].get("output"), samples["floor"][-1].get("output")
                    problem = same_tables(Path(mine), Path(floor)) if mine and floor else "no output"
                    if problem:
                        failures.append(f"{workload}: featurekit differs from the floor: {problem}")
                    for path in (mine, floor):
                        if path:
                            Path(path).unlink(missing_ok=True)
            results[workload] = {"title": title, **{c: summarize(s) for c, s in samples.items()}}
            print(f"{workload}: {json.dumps(results[workload], default=str)}", file=sys.stderr)
    options.output.mkdir(parents=True, exist_ok=True)
    previous = options.output / f"{scale.name}.json"
    if previous.exists() and options.only:  # a partial run updates the workloads it ran
        merged = json.loads(previous.read_text())["results"]
        for workload, entry in results.items():  # contenders not re-run keep their earlier numbers
            merged[workload] = {**merged.get(workload, {}), **entry}
        results = {w: merged[w] for w in WORKLOADS if w in merged}
    record = {
        "scale": scale.__dict__,
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": _versions(feast),
        "results": results,
        "correctness": failures or ["featurekit's training sets equal the floor's, row for row"],
    }
    (options.output / f"{scale.name}.json").write_text(json.dumps(record, indent=2, default=str))
    default_output = options.output == HERE / "results"
    write_report(options.output, HERE / "RESULTS.md" if default_output else options.output / "RESULTS.md")
    for failure in failures:
        print(f"CORRECTNESS FAILURE: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _versions(feast: bool) -> dict[str, str]:
    from importlib.metadata import version

    found = {name: version(name) for name in ("featurekit", "duckdb", "deltalake", "polars", "pyarrow")}
    if feast:
        done = subprocess.run(
            [FEAST_PYTHON, "-c", "import feast; print(feast.__version__)"], capture_output=True, text=True, check=False
        )
        found["feast"] = done.stdout.strip() or "unavailable"
    return found


if __name__ == "__main__":
    main()
