"""The benchmark harness runs at small scale and its correctness check holds (no timing asserted).

Covers a training set per sink and view count, the incremental materialize of a day (offline and
online), the 50-view apply, an on-demand lookup with and without POLARS_MAX_THREADS=1, the report
and its charts; and the data-shapes run on a tiny dense shape, so that featurekit is checked against
the DuckDB floors (two ASOF variants and a range join) on long histories with exact ties; and the
window-aggregation run on its tiny scale, where every floor and featurekit must equal a brute-force
oracle of the window rule, and the window view's incremental materialize.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
WORKLOADS = [
    "training_1view_arrow",
    "training_3views_parquet",
    "materialize_incremental_day",
    "apply_50_views",
    "lookup_1_on_demand",
    "lookup_1_on_demand_single_thread",
]


@pytest.mark.slow
def test_harness_smoke_run(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "run",
            "--scale",
            "small",
            "--repeat",
            "1",
            "--quick-repeat",
            "1",
            "--no-feast",
            "--only",
            ",".join(WORKLOADS),
            "--output",
            str(tmp_path),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "small.json").read_text())
    assert record["correctness"] == ["featurekit's training sets equal the floor's, row for row"]
    results = record["results"]
    assert list(results) == WORKLOADS
    incremental = results["materialize_incremental_day"]
    assert incremental["featurekit"]["window_rows"] == incremental["floor"]["window_rows"] == 333
    assert incremental["featurekit"]["online_rows"] == incremental["floor"]["online_rows"]
    assert results["apply_50_views"]["featurekit"]["views"] == 50
    assert results["lookup_1_on_demand_single_thread"]["featurekit"]["calls"] == 5000
    report = (tmp_path / "RESULTS.md").read_text()
    assert "POLARS_MAX_THREADS=1 p50 / p99" in report  # the side-by-side lookup table
    if importlib.util.find_spec("matplotlib") is None:  # charts need the bench extra
        assert "Charts were not drawn" in report
    else:
        assert "| [training set, 1 view, to Arrow](charts/training_1view_arrow.png) |" in report
        assert (tmp_path / "charts" / "training_1view_arrow.png").stat().st_size > 0


@pytest.mark.slow
def test_shapes_smoke_run(tmp_path: Path) -> None:
    """A tiny dense shape (1,000 rows per entity): featurekit equals the DuckDB floors exactly."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "shapes",
            "--only",
            "tiny_dense",
            "--repeat",
            "1",
            "--timeout",
            "300",
            "--output",
            str(tmp_path),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    entry = json.loads((tmp_path / "shapes.json").read_text())["shapes"]["tiny_dense"]
    assert entry["correctness"] == [
        "featurekit's training sets equal the DuckDB floors', row for row; polars and pandas cover the same rows"
    ]
    for contender in ("featurekit", "asof", "asof_match", "range", "polars", "pandas"):
        assert entry[contender]["rows"] == 2_000, contender
    assert "## Every data shape" in (tmp_path / "RESULTS.md").read_text()


@pytest.mark.slow
def test_windows_smoke_run(tmp_path: Path) -> None:
    """Window aggregations at the tiny scale: featurekit and every floor equal the oracle."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "windows",
            "--scale",
            "tiny",
            "--repeat",
            "1",
            "--lookup-calls",
            "50",
            "--output",
            str(tmp_path),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    entry = json.loads((tmp_path / "windows.json").read_text())["scales"]["tiny"]
    assert entry["correctness"] == ["every contender equals the oracle and duckdb_range (bounds below)"]
    for contender in (
        "featurekit",
        "numpy",
        "polars_fused_rolling",
        "polars",
        "duckdb_range",
        "duckdb_prefix",
        "pandas",
    ):
        assert entry[contender]["runs"] == 1, contender
        assert contender in entry["check"], contender
    assert entry["lookups"]["typical"]["calls"] == 50
    assert entry["lookups"]["hot"]["cpu_ms_per_call"] > 0
    assert entry["lookups"]["online_check"][0].startswith("21 entities equal the oracle")
    assert entry["lookups_tails"]["hot"]["calls"] == 50  # after an incremental materialize of the last day
    assert entry["lookups_tails"]["online_check"][0].startswith("21 entities equal the oracle")
    results = (tmp_path / "RESULTS.md").read_text()
    assert "## Window aggregations (issue 13)" in results
    assert "| the hot entity, one-day tails |" in results


@pytest.mark.slow
def test_window_incremental_smoke_run(tmp_path: Path) -> None:
    """Incremental materialize of a window view at the tiny scale: every case runs both spans."""
    command = [sys.executable, "-m", "benchmarks.window_incremental", "--scale", "tiny", "--repeat", "1"]
    done = subprocess.run(
        [*command, "--output", str(tmp_path)], cwd=PROJECT, capture_output=True, text=True, check=False, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "window_incremental.json").read_text())
    assert sorted(record["cases"], key=int) == ["7", "30", "90"]
    for case in record["cases"].values():
        assert case["errors"] == []
        one, two = case["spans"]["one new day"], case["spans"]["two new days"]
        assert 0 < one["events"] < two["events"]  # the same data: two days hold more events than one
        assert one["rows"] == one["events"]  # every new event committed
        assert two["rows"] == two["events"]
    assert "## Incremental materialize of a window view" in done.stdout
