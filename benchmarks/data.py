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
PREPARED = "layout 3: registry format 5 (join statistics), versions of all reachable code"


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


# -- data shapes (``python -m benchmarks shapes``) ---------------------------------------------
# The scales above hold about one feature row per entity inside the 7-day TTL. A shape fixes how
# many rows each entity has instead: the training-set join must hold on long histories too.


@dataclass(frozen=True)
class Shape:
    name: str
    rows: int  # feature rows of the one view, stats_a
    entities: int
    spine: int
    days: int  # the feature rows and the spine span [START, START + days)
    ttl_days: int
    data: str = ""  # the folder under data/shapes/ (default: the name); shapes differing by TTL share it

    @property
    def folder(self) -> Path:
        return ROOT / "shapes" / (self.data or self.name)

    @property
    def end(self) -> datetime:
        return START + timedelta(days=self.days)

    @property
    def rows_per_entity(self) -> int:
        return self.rows // self.entities


SHAPES = {
    s.name: s
    for s in (
        Shape("dense", 2_000_000, 1_000, 100_000, 90, 7),
        Shape("dense_ttl30", 2_000_000, 1_000, 100_000, 90, 30, data="dense"),
        Shape("lowcard", 10_000_000, 10, 1_000_000, 90, 7),
        Shape("sparse_ttl30", 1_000_000, 100_000, 100_000, 60, 30),
        # The rows-per-entity chart: 2M feature rows and a 100k spine, 20 to 200k rows per entity
        # (the 1k-entity point is dense).
        Shape("per_entity_20", 2_000_000, 100_000, 100_000, 90, 7),
        Shape("per_entity_200", 2_000_000, 10_000, 100_000, 90, 7),
        Shape("per_entity_20k", 2_000_000, 100, 100_000, 90, 7),
        Shape("per_entity_200k", 2_000_000, 10, 100_000, 90, 7),
        Shape("tiny_dense", 20_000, 20, 2_000, 90, 7),  # the smoke test's: 1,000 rows per entity
    )
}
TABLE_SHAPES = ("dense", "dense_ttl30", "lowcard", "sparse_ttl30")
CHART_SHAPES = ("per_entity_20", "per_entity_200", "dense", "per_entity_20k", "per_entity_200k")
TIE_SHARE = 100  # one feature row in TIE_SHARE copies the key and event time of another row
NULL_CREATED_SHARE = 1_000  # one row in NULL_CREATED_SHARE has no created timestamp (it loses ties)


def _shape_features(shape: Shape, seed: int) -> pa.Table:
    """Millisecond event times (sub-second), with exact (key, event time) ties and some ties on created."""
    rng = np.random.default_rng(seed)
    rows = shape.rows
    base = np.datetime64(START.replace(tzinfo=None), "us").astype("int64")
    keys = rng.integers(0, shape.entities, rows)
    event = base + rng.integers(0, shape.days * 86_400_000, rows) * 1_000
    created = event + rng.integers(0, 3_600_000, rows) * 1_000
    tied = rng.choice(rows, rows // TIE_SHARE, replace=False)
    origin = rng.integers(0, rows, tied.size)
    keys[tied], event[tied] = keys[origin], event[origin]
    created[tied] = event[tied] + rng.integers(0, 3_600_000, tied.size) * 1_000
    same = tied.size // 10  # a tenth of the ties also tie on created: the values decide
    created[tied[:same]] = created[origin[:same]]
    no_created = np.zeros(rows, dtype=bool)
    no_created[rng.choice(rows, max(1, rows // NULL_CREATED_SHARE), replace=False)] = True
    columns: dict[str, object] = {
        "driver_id": keys,
        "event_timestamp": pa.array(event, pa.timestamp("us", tz="UTC")),
        "created": pa.array(created, pa.timestamp("us", tz="UTC"), mask=no_created),
    }
    for name in FEATURES:
        columns[name] = rng.random(rows)
    return pa.table(columns)


def _shape_spine(shape: Shape, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    base = np.datetime64(START.replace(tzinfo=None), "us").astype("int64")
    return pa.table(
        {
            "driver_id": rng.integers(0, shape.entities, shape.spine),
            "event_timestamp": pa.array(
                base + rng.integers(0, shape.days * 86_400 * 1_000_000, shape.spine), pa.timestamp("us", tz="UTC")
            ),
            "label": rng.random(shape.spine) < 0.5,
        }
    )


def ensure_shape(shape: Shape) -> Path:
    """Write the shape's source (``sources/stats_a.parquet``) and spine once; return their folder."""
    folder = shape.folder
    (folder / "sources").mkdir(parents=True, exist_ok=True)
    source = folder / "sources" / "stats_a.parquet"
    if not source.exists():
        pq.write_table(_shape_features(shape, seed=7), source.with_suffix(".tmp"), row_group_size=1_000_000)
        source.with_suffix(".tmp").rename(source)
    spine = folder / "spine.parquet"
    if not spine.exists():
        pq.write_table(_shape_spine(shape, seed=98), spine.with_suffix(".tmp"))
        spine.with_suffix(".tmp").rename(spine)
    return folder
