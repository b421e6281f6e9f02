"""Deterministic benchmark data shaped like ../shared/ANCHORS.md (cached under benchmarks/data/)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent / "data"
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 60
END = START + timedelta(days=DAYS)
LOOKUP_AT = END  # online lookups "as of" the end of the data: every row is in the past
VIEWS = ("stats_a", "stats_b", "stats_c")
FEATURES = [f"f{i}" for i in range(8)]


@dataclass(frozen=True)
class Scale:
    name: str
    rows: int  # feature rows per view
    entities: int
    spine: int
    views: int = len(VIEWS)  # how many of VIEWS get source data (xlarge: one, for the scaling section)

    @property
    def view_names(self) -> tuple[str, ...]:
        return VIEWS[: self.views]


SCALES = {
    "small": Scale("small", 20_000, 2_000, 2_000),
    "medium": Scale("medium", 1_000_000, 100_000, 100_000),
    "large": Scale("large", 10_000_000, 1_000_000, 1_000_000),
    "xlarge": Scale("xlarge", 30_000_000, 3_000_000, 1_000_000, views=1),
}
SCALING = ("medium", "large", "xlarge")  # 1M, 10M, 30M feature rows: the scaling section
NEW_DAY_END = END + timedelta(days=1)  # the incremental workload appends [END, NEW_DAY_END)


def _features(rows: int, entities: int, seed: int, first: datetime = START, days: int = DAYS) -> pa.Table:
    rng = np.random.default_rng(seed)
    base = np.datetime64(first.replace(tzinfo=None), "us").astype("int64")
    event = base + rng.integers(0, days * 86_400, rows) * 1_000_000  # whole seconds: ties happen
    created = event + rng.integers(0, 3_600, rows) * 1_000_000
    columns: dict[str, object] = {
        "driver_id": rng.integers(0, entities, rows),
        "event_timestamp": pa.array(event, pa.timestamp("us", tz="UTC")),
        "created": pa.array(created, pa.timestamp("us", tz="UTC")),
    }
    for name in FEATURES:
        columns[name] = rng.random(rows)
    return pa.table(columns)


def _spine(scale: Scale, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    base = np.datetime64(START.replace(tzinfo=None), "us").astype("int64")
    times = base + rng.integers(0, DAYS * 86_400 * 1_000_000, scale.spine)
    return pa.table(
        {
            "driver_id": rng.integers(0, scale.entities, scale.spine),
            "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
            "label": rng.random(scale.spine) < 0.5,
        }
    )


def ensure(scale: Scale) -> Path:
    """Write the scale's sources and spine once; return their folder."""
    folder = ROOT / scale.name
    (folder / "sources").mkdir(parents=True, exist_ok=True)
    for index, view in enumerate(scale.view_names):
        path = folder / "sources" / f"{view}.parquet"
        if not path.exists():
            pq.write_table(_features(scale.rows, scale.entities, seed=index + 1), path, row_group_size=1_000_000)
    spine = folder / "spine.parquet"
    if not spine.exists():
        pq.write_table(_spine(scale, seed=99), spine)
    return folder


def new_day_rows(scale: Scale) -> pa.Table:
    """One day of new stats_a source rows after END (as many as an average day of the scale)."""
    return _features(max(1, scale.rows // DAYS), scale.entities, seed=42, first=END, days=1)


def incremental_folder(folder: Path) -> Path:
    """``<scale>/incremental/`` with ``sources/stats_a/part-0.parquet`` (the scale's rows, hard-linked)
    and ``part-1.parquet`` (one new day); each contender keeps its base state and run copy there."""
    root = folder / "incremental"
    parts = root / "sources" / "stats_a"
    parts.mkdir(parents=True, exist_ok=True)
    if not (parts / "part-0.parquet").exists():
        os.link(folder / "sources" / "stats_a.parquet", parts / "part-0.parquet")
    if not (parts / "part-1.parquet").exists():
        pq.write_table(new_day_rows(SCALES[folder.name]), parts / "part-1.parquet")
    return root


# Prepared stores (repos materialized once and reused) carry this stamp; a change of the data
# layout featurekit writes bumps it, so no run measures tables written by an older layout.
PREPARED = "layout 2: 128Ki-row groups, dictionaries for text only"


def is_prepared(folder: Path) -> bool:
    marker = folder / ".ready"
    return marker.exists() and marker.read_text() == PREPARED


def mark_prepared(folder: Path) -> None:
    (folder / ".ready").write_text(PREPARED)


def restore(base: Path, run: Path) -> None:
    """Make ``run`` a fresh copy of ``base``; Parquet files (never rewritten in place) are hard-linked."""
    shutil.rmtree(run, ignore_errors=True)

    def link_or_copy(src: str, dst: str) -> None:
        if src.endswith(".parquet"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(base, run, copy_function=link_or_copy)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
