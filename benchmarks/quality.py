"""``python -m benchmarks quality --scale medium``: what the quality pass adds to an offline materialize.

The same materialization of stats_a (the scale's rows, 8 float features, ``online=False``; the
view declares 18 checks, :data:`CHECKS`) runs with the quality pass (the profile and the view's
checks, computed from the output batches inside the materialization's own pass and stored with
the commit) and without it (the pass replaced by one that does nothing, checks included), each in
a fresh child process, the two alternating within every round so that the machine's drift hits
both alike. One more child, not recorded, runs first: the first materialization of a run pays
for reading the source and the libraries from disk (it took 4-11 s where the others took under
1 s, always in the mode measured first). Target (issue 15): the pass adds at most 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.data import END, SCALES, START, ensure, peak_rss_mb
from benchmarks.redis_online import replace_section
from benchmarks.runner import HERE, PROJECT

RECORD = "quality.json"
TITLE = "## Quality pass (issue 15)"
TARGET = 1.10
Result = dict[str, Any]


class _NoInspection:
    """The quality pass switched off: the baseline of the same materialization."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        return None

    def add(self, table: object) -> None:
        return None

    def conclude(self) -> None:
        return None

    def committed(self) -> None:
        return None

    def records(self) -> dict[str, str]:
        return {}

    def view_records(self) -> dict[str, str]:
        return {}


def child(argv: list[str]) -> None:
    """``quality-child on|off SCALE OUT``: one materialization, timed, its result as JSON."""
    mode, scale_name, out = argv
    import featurekit as fk
    from benchmarks.contenders import scratch_repo
    from benchmarks.timing import Stopwatch

    if mode == "off":
        from featurekit.offline import materialize

        materialize.Inspection = _NoInspection  # type: ignore[misc,assignment]
    folder = ensure(SCALES[scale_name])
    with scratch_repo(folder) as repo:
        _declare_checks(repo)
        with fk.FeatureStore(repo, progress=False) as store:
            store.apply()  # a checks-only change: metadata, no new data version
            _materialize(store, out, Stopwatch)


# The view's checks in the "on" mode: one of each built-in that can run on any batch, all passing
# on the benchmark data (f0..f7 are uniform in [0, 1), never null; (key, time, created) unique).
CHECKS = (
    "checks=[*[fk.check.not_null(f'f{i}') for i in range(8)], *[fk.check.between(f'f{i}', 0, 1) for i in range(8)], "
    "fk.check.unique_keys(), fk.check.row_count(min=1)], "
)


def _declare_checks(repo: Path) -> None:
    features = repo / "features.py"
    text = features.read_text()
    declared = text.replace("fk.feature_view(entity=driver, ", "fk.feature_view(entity=driver, " + CHECKS)
    assert declared != text, "benchmarks.contenders.FEATURES_PY no longer says fk.feature_view(entity=driver, "
    features.write_text(declared)


def _materialize(store: Any, out: str, stopwatch: Any) -> None:
    """Time the materialization of stats_a; write its result (time, rows, stored profile bytes) to ``out``."""
    watch = stopwatch()
    (result,) = store.materialize(START, END, views=["stats_a"], online=False)
    timing = watch.result()
    version = store.registry.active()["stats_a"].version
    records = store.registry.quality(version.id, "profile")
    stored = len(records[-1][1]) if records and records[-1][0] == result.registry_version else 0
    found = store.check_results("stats_a")
    passed = sum(bool(r.passed) for r in found[-1].results) if found else 0
    measured = {**timing, "rows": result.rows, "record_bytes": stored, "checks_passed": passed}
    Path(out).write_text(json.dumps({**measured, "rss_mb": peak_rss_mb()}))


def _measure(mode: str, scale: str, work: Path) -> Result:
    out = work / f"{mode}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "benchmarks", "quality-child", mode, scale, str(out)]
    done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        return {"error": ((done.stderr or done.stdout).strip().splitlines() or ["failed"])[-1]}
    result: Result = json.loads(out.read_text())
    return result


def _summary(samples: list[Result]) -> Result:
    ok = [s for s in samples if "error" not in s]
    if not ok:
        return {"error": samples[0]["error"] if samples else "not run"}
    seconds = [s["seconds"] for s in ok]
    return {
        "median": statistics.median(seconds),
        "min": min(seconds),
        "max": max(seconds),
        "runs": len(ok),
        "cpu_seconds": statistics.median(s["cpu_seconds"] for s in ok),
        "rss_mb": max(s["rss_mb"] for s in ok),
        "rows": max(s["rows"] for s in ok),
        "record_bytes": max(s["record_bytes"] for s in ok),
        "checks_passed": min(s.get("checks_passed", 0) for s in ok),
    }


def run(options: argparse.Namespace) -> int:
    """Measure both modes ``--repeat`` times, alternating, and record them (JSON and RESULTS.md)."""
    scale = SCALES[options.scale]
    folder = ensure(scale)
    from benchmarks.contenders import fk_repo

    fk_repo(folder)  # prepared once per scale
    began = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    samples: dict[str, list[Result]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="fk-bench-quality-") as tmp:
        _measure("off", scale.name, Path(tmp))  # warm-up (see the module docstring), not recorded
        for round_ in range(options.repeat):
            order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
            for mode in order:
                samples[mode].append(_measure(mode, scale.name, Path(tmp)))
    on, off = _summary(samples["on"]), _summary(samples["off"])
    rounds = zip(samples["on"], samples["off"], strict=True)
    pairs = [(a, b) for a, b in rounds if "error" not in a and "error" not in b]
    ratios = [a["seconds"] / b["seconds"] for a, b in pairs]
    cpu_ratios = [a["cpu_seconds"] / b["cpu_seconds"] for a, b in pairs]
    import featurekit

    record = {
        "scale": {"name": scale.name, "rows": scale.rows, "features": 8},
        "command": " ".join(["python -m benchmarks quality", *sys.argv[2:]]),
        "started": began.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count() or 0,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        },
        "versions": {"featurekit": featurekit.__version__},
        "results": {
            "on": on,
            "off": off,
            "ratio_median": statistics.median(ratios) if ratios else None,
            "cpu_ratio_median": statistics.median(cpu_ratios) if cpu_ratios else None,
        },
    }
    results = options.output
    results.mkdir(parents=True, exist_ok=True)
    records = _load(results)
    records[scale.name] = record
    (results / RECORD).write_text(json.dumps(records, indent=2))
    target = HERE / "RESULTS.md"
    if results != HERE / "results":  # a run elsewhere (the smoke test) writes its own copy
        target = results / "RESULTS.md"
        if not target.exists():
            shutil.copy(HERE / "RESULTS.md", target)
    replace_section(target, section(records), HERE / "results" / "NOTES.md", TITLE)
    return 0 if ratios and not any("error" in s for s in (on, off)) else 1


def _load(results: Path) -> dict[str, Result]:
    path = results / RECORD
    found: dict[str, Result] = json.loads(path.read_text()) if path.exists() else {}
    return found


def _seconds(entry: Result) -> str:
    if "error" in entry:
        return f"error: {entry['error']}"
    return f"{entry['median']:.3f} s ({entry['min']:.3f}-{entry['max']:.3f}, {entry['runs']} runs)"


def section(records: dict[str, Result]) -> str:
    """The RESULTS.md section of the recorded runs, one row per scale."""
    lines = [
        TITLE,
        "",
        "Offline materialize of stats_a (every row, 8 float features) with the quality pass (profile",
        "and checks, in the materialization's own pass, stored with its commit) and without it; fresh",
        "child processes, the two alternating in every round. The ratio is the median of the rounds'",
        f"ratios (each round measures both back to back). Target: at most {TARGET:.2f}x.",
        "",
        "CPU seconds (all threads of the child) move less than wall time on a busy machine: both are shown,",
        "the CPU ratio as the median of the rounds' ratios (the pass runs beside the Delta write, so on a",
        "quiet machine its CPU hides in a spare core and the wall ratio is below the CPU ratio).",
        "",
        "| scale | with the pass | without | with / without | met | CPU with / without | profile record "
        "| command (started, load) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("small", "medium", "large", "xlarge"):
        record = records.get(name)
        if record is None:
            continue
        on, off, ratio = record["results"]["on"], record["results"]["off"], record["results"]["ratio_median"]
        met = "-" if ratio is None else ("yes" if ratio <= TARGET else "no")
        if ratio is not None and max(record["machine"]["load_average"]) > record["machine"]["cpus"]:
            met += ", unsettled (more jobs than cores)"
        size = f"{on.get('record_bytes', 0) / 1024:.0f} KiB" if "error" not in on else "-"
        load = record["machine"]["load_average"]
        when = f"`{record['command']}` ({record['started']}, load {load[0]}-{load[1]})"
        shown = "-" if ratio is None else f"{ratio:.3f}x"
        cpu = "-" if "error" in on or "error" in off else f"{on['cpu_seconds']:.2f} / {off['cpu_seconds']:.2f} s"
        cpu_ratio = record["results"].get("cpu_ratio_median")
        if cpu_ratio is not None and cpu != "-":
            cpu += f" ({cpu_ratio:.3f}x)"
        lines.append(f"| {name} | {_seconds(on)} | {_seconds(off)} | {shown} | {met} | {cpu} | {size} | {when} |")
    return "\n".join(lines)


def record_section(results: Path) -> str:
    """The section of the recorded runs (for ``python -m benchmarks report``), or nothing."""
    records = _load(results)
    return section(records) if records else ""
