"""Run the chosen workloads of one scale, contenders alternating, and record the results as JSON.

Every measurement runs in a fresh child process (so peak memory is per contender) and the
contenders alternate within each repetition. Workloads whose featurekit run takes under a second
get at least ``--quick-repeat`` repetitions (default 9). Training-set results of featurekit and the
floor must be identical, or the run fails.
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

from benchmarks.data import SCALES, ensure
from benchmarks.workloads import FEAST_CALLS, QUICK_SECONDS, WORKLOADS, Workload

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
FEAST_PYTHON = os.environ.get("FEAST_PYTHON", "/tmp/feast-venv/bin/python")
CORRECT = "featurekit's training sets equal the floor's, row for row"
FEAST_MISSING = "skipped: Feast is not installed"


def run_one(contender: str, args: list[str], scale: str, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """One measurement of one contender in a fresh process; ``{"error": ...}`` when it failed."""
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
    done = subprocess.run(
        command, cwd=PROJECT, capture_output=True, text=True, check=False, timeout=3600, env={**os.environ, **env}
    )
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
    for key in ("p50_ms", "p99_ms", "cpu_seconds", "rows", "window_rows", "online_rows", "errors", "calls", "views"):
        if key in ok[0]:
            values = [s[key] for s in ok]
            summary[key] = statistics.median(values) if key.startswith(("p", "cpu")) else max(values)
    return summary


def _measure(
    workload: Workload, runs: dict[str, list[str]], scale: str, work: Path, *, repeat: int, quick_repeat: int
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    from benchmarks.contenders import same_tables

    samples: dict[str, list[dict[str, Any]]] = {c: [] for c in runs}
    failures = []
    rounds, done = (1 if workload.once else repeat), 0
    while done < rounds:
        for contender, args in runs.items():  # alternate contenders within each repetition
            samples[contender].append(run_one(contender, args, scale, work, workload.env))
        done += 1
        first = samples.get("featurekit", [{}])[0].get("seconds")
        if done == 1 and workload.repeat_if_quick and not workload.once and first is not None and first < QUICK_SECONDS:
            rounds = max(rounds, quick_repeat)
        if workload.contenders.get("featurekit", [""])[0] == "training" and "floor" in samples:
            mine, floor = samples["featurekit"][-1].get("output"), samples["floor"][-1].get("output")
            problem = same_tables(Path(mine), Path(floor)) if mine and floor else "no output"
            if problem:
                failures.append(f"{workload.title}: featurekit differs from the floor: {problem}")
            for path in (mine, floor):
                if path:
                    Path(path).unlink(missing_ok=True)
    return samples, failures


def run_all(options: argparse.Namespace) -> int:
    """Measure the chosen workloads at ``options.scale``, merge into its JSON record, rewrite the report."""
    from benchmarks.contenders import fk_repo
    from benchmarks.report import write_report

    scale = SCALES[options.scale]
    folder = ensure(scale)
    fk_repo(folder)
    feast = not options.no_feast and Path(FEAST_PYTHON).exists()
    if not feast and not options.no_feast:
        print(f"Feast skipped: no Python at {FEAST_PYTHON} (see benchmarks/requirements-feast.txt)", file=sys.stderr)
    wanted = [w for w in options.only.split(",") if w]
    unknown = [w for w in wanted if w not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workloads {unknown}; choose from {list(WORKLOADS)}")
    command = " ".join(["python -m benchmarks", *sys.argv[1:]])
    results: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fk-bench-") as tmp:
        for name, workload in WORKLOADS.items():
            if wanted and name not in wanted:
                continue
            if workload.views > scale.views:
                print(f"{name}: skipped, scale {scale.name} has {scale.views} view(s)", file=sys.stderr)
                continue
            runs = {c: a for c, a in workload.contenders.items() if feast or c != "feast"}
            samples, problems = _measure(
                workload, runs, scale.name, Path(tmp), repeat=options.repeat, quick_repeat=options.quick_repeat
            )
            failures += problems
            results[name] = {"title": workload.title, "command": command}
            results[name] |= {c: summarize(s) for c, s in samples.items()}
            if "feast" in workload.contenders and "feast" not in runs and not options.no_feast:
                results[name]["feast"] = {"error": FEAST_MISSING}
            print(f"{name}: {json.dumps(results[name], default=str)}", file=sys.stderr)
    options.output.mkdir(parents=True, exist_ok=True)
    path = options.output / f"{scale.name}.json"
    versions = _versions(feast)
    if path.exists() and wanted:  # a partial run updates the workloads it ran
        previous = json.loads(path.read_text())
        versions = {**previous.get("versions", {}), **versions}  # kept numbers keep their versions
        merged = previous["results"]
        for name, entry in results.items():  # contenders not re-run keep their earlier numbers
            earlier = merged.get(name, {})
            merged[name] = {
                **earlier,
                **{c: e for c, e in entry.items() if e != {"error": FEAST_MISSING} or c not in earlier},
            }
        results = {w: merged[w] for w in WORKLOADS if w in merged}
    record = {
        "scale": scale.__dict__,
        "command": command,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": versions,
        "results": results,
        "correctness": failures or [CORRECT],
    }
    path.write_text(json.dumps(record, indent=2, default=str))
    target = HERE / "RESULTS.md" if options.output == HERE / "results" else options.output / "RESULTS.md"
    write_report(options.output, target)
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
