"""The serving-log benchmark runs at small scale, logs every lookup and writes its section (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_servelog_benchmark_smoke_run(tmp_path: Path) -> None:
    command = ["servelog", "--scale", "small", "--repeat", "1", "--blocks", "20", "--output", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *command],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "servelog.json").read_text())
    off, on = record["results"]["off"], record["results"]["on"]
    assert off["runs"] == on["runs"] == 1
    assert off["calls"] == on["calls"] == 20 * 500  # blocks in turn, each of 500 timed calls
    assert "log" not in off
    assert on["log"]["logged"] == on["log"]["written"] == on["calls"] + 200  # the warm-up calls are logged too
    assert on["log"]["dropped"] == on["log"]["failed"] == 0
    section = (tmp_path / "RESULTS.md").read_text()
    assert "## Serving log (issue 15)" in section
    assert "p99 with the log on at sample 1.0 within 1.2x" in section
