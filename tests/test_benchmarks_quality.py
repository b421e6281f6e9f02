"""The quality-pass benchmark runs at small scale and records both modes (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quality_harness_records_both_modes_and_its_section(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks", "quality", "--scale", "small", "--repeat", "1"]
    done = subprocess.run(
        [*command, "--output", str(tmp_path)], cwd=PROJECT, capture_output=True, text=True, check=False, timeout=600
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "quality.json").read_text())["small"]
    on, off = record["results"]["on"], record["results"]["off"]
    assert on["rows"] == off["rows"] == 20_000
    assert on["record_bytes"] > 0  # the pass stored a profile with the commit
    assert off["record_bytes"] == 0  # the baseline stored none
    assert on["checks_passed"] == 18  # every declared check ran and passed
    assert off["checks_passed"] == 0  # the baseline ran none
    assert "## Quality pass (issue 15)" in (tmp_path / "RESULTS.md").read_text()
