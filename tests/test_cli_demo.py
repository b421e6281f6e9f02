"""The demo says which calls are the Python API, and its intended mismatch reads as the demonstration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_demo_shows_api_calls_and_explains_its_mismatch(tmp_path: Path):
    repo = tmp_path / "feature_repo"
    repo.mkdir()
    for name in ("features.py", "featurekit.yaml"):
        shutil.copy(ROOT / "feature_repo" / name, repo / name)
    shutil.copytree(ROOT / "feature_repo" / "scripts", repo / "scripts")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(repo / "scripts" / "demo.py")], capture_output=True, text=True, check=True, env=env
    )
    out = done.stdout
    assert "$ featurekit" not in out
    assert ">>> store.apply()" in out
    assert ">>> store.materialize(" in out
    assert "1 mismatches" not in out
    assert "1 mismatch, as this demonstration intends" in out
