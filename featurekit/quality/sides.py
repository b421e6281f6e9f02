"""The two sides of a drift report, and how each becomes a profile on shared bins.

A side is a view version's committed data (whole, or a time window of it), a training set (the
object, its Parquet file or its manifest), the serving log, or a ready :class:`Profile`. The
reference side is profiled first; its histogram edges are then used for the current side whenever
the current side's values can be read, so the two compare bin by bin even across view versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from featurekit.errors import DataError, ManifestError
from featurekit.faults import checkpoint
from featurekit.quality.drift import DriftReport, Thresholds, compare
from featurekit.quality.profile import Profile

if TYPE_CHECKING:
    from featurekit.store import FeatureStore

Edges = dict[str, tuple[float, ...]]


@dataclass(frozen=True)
class ViewData:
    """A view version's committed rows (``"driver_stats"``, ``"driver_stats@v1"``), optionally in
    [start, end); ``as_of`` (a registry version or a time): its data version as it was then."""

    view: str
    start: datetime | None = None
    end: datetime | None = None
    as_of: int | datetime | None = None

    def describe(self) -> str:
        moment = "" if self.as_of is None else f" as of {self.as_of}"
        if self.start is None and self.end is None:
            return self.view + moment
        low = self.start.isoformat() if self.start else "the first row"
        high = self.end.isoformat() if self.end else "the last row"
        return f"{self.view} [{low}, {high}){moment}"


@dataclass(frozen=True)
class ServedValues:
    """The values the online store served, as the serving log recorded them (``online.log``).

    ``path``: the log's folder (default: this repo's configured log), optionally only the rows
    served in [start, end).
    """

    path: str | Path | None = None
    start: datetime | None = None
    end: datetime | None = None

    def describe(self) -> str:
        return f"serving log {self.path}" if self.path is not None else "serving log"


@dataclass(frozen=True)
class TrainingData:
    """A training set: its Parquet file or folder of parts (by path or URI), or the object itself."""

    source: Any

    def describe(self) -> str:
        return f"training set {self.source}" if isinstance(self.source, (str, Path)) else "training set"


Side = Any  # ViewData | ServedValues | TrainingData | Profile | pa.Table


def side_of(value: Any) -> Side:
    """What a ``reference=`` or ``current=`` argument names.

    A :class:`Profile` or one of the side classes stands for itself; a training set object is
    :class:`TrainingData`; a path (a ``Path``, a string with a ``/`` or ending in ``.parquet``) or
    a URI is a training set's Parquet file or folder; a ``(view, start, end)`` tuple is a window
    of a view's data; any other string names a view (view names hold no ``/``).
    """
    from featurekit.offline.engine import uri_scheme
    from featurekit.offline.training import TrainingSet

    if isinstance(value, (ViewData, ServedValues, TrainingData, Profile, pa.Table)):
        return value
    if isinstance(value, TrainingSet):
        return TrainingData(value)
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[0], str):
        return ViewData(value[0], value[1], value[2])
    if isinstance(value, str) and uri_scheme(value) not in (None, "file"):
        return TrainingData(value)  # read where pyarrow can (see featurekit.manifest.stored_location)
    named = isinstance(value, str) and (Path(value).suffix in (".parquet", ".json") or "/" in value)
    if isinstance(value, Path) or named:
        from featurekit.offline.engine import local_path

        value = local_path(value) if isinstance(value, str) else value
        if not Path(value).exists():
            raise DataError(f"drift side {str(value)!r} does not exist; give a training set's Parquet file")
        return TrainingData(Path(value))
    if isinstance(value, str):
        return ViewData(value)
    raise DataError(
        f"a drift side must be a view reference, (view, start, end), a training set or its Parquet file, "
        f"fk.ServedValues() (the serving log), an Arrow table or a Profile; got {type(value).__name__}"
    )


def profile_of(
    store: FeatureStore, side: Side, columns: list[str] | None, edges: Edges | None, at: int | None = None
) -> Profile:
    """``side``'s profile of ``columns``, on ``edges`` where its values can be read; a view side
    without its own ``as_of`` is read as of registry version ``at`` (default: the head now)."""
    from featurekit.quality.profiling import profile_table

    if isinstance(side, Profile):
        return side
    if isinstance(side, pa.Table):
        return profile_table(_only(_by_feature(side), columns), edges=edges, source="table")
    if isinstance(side, ViewData):
        window = _window(side.start, side.end)
        as_of = side.as_of if side.as_of is not None else at
        if window is None:  # a data version's stored states count it on any version's edges
            return _renamed(store.profile(side.view, as_of=as_of, edges=edges), side.describe())
        stored = store.profile(side.view, window=window, as_of=as_of)
        if edges is None or _same_edges(stored, edges):
            return _renamed(stored, side.describe())
        return _renamed(store.profile(side.view, window=window, as_of=as_of, edges=edges), side.describe())
    if isinstance(side, ServedValues):
        from featurekit.quality.serving_log import read_log

        folder = side.path if side.path is not None else _log_folder(store)
        window = _window(side.start, side.end)
        table = _by_feature(read_log(folder, window=window))
        return profile_table(_only(table, columns), edges=edges, source=side.describe())
    table, kept = _training(side)
    if kept is not None and (edges is None or _same_edges(kept, edges)):
        return _renamed(kept, side.describe())
    return profile_table(_only(table(), columns), edges=edges, source=side.describe())


def _training(side: TrainingData) -> tuple[Any, Profile | None]:
    """A reader of the training set's table, and the profile its manifest holds (if any)."""
    from featurekit.offline.training import TrainingSet

    source = side.source
    if isinstance(source, TrainingSet):
        return (lambda: _by_feature(source.to_arrow())), source.profile()
    from featurekit.manifest import METADATA_KEY, load_manifest, stored_location

    filesystem, path = stored_location(source, f"training set {source}")
    if filesystem.get_file_info(path).type == pafs.FileType.Directory:  # a folder of parts, manifest beside
        raw = load_manifest(source).profile
        kept = Profile.from_dict(raw) if raw else None
        return (lambda: _by_feature(pq.read_table(path, filesystem=filesystem))), kept
    try:
        metadata = pq.read_schema(path, filesystem=filesystem).metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise ManifestError(f"{source} is not a readable training set Parquet file: {exc}") from exc

    stored = None
    if METADATA_KEY.encode() in metadata:
        raw = load_manifest(source).profile
        stored = Profile.from_dict(raw) if raw else None
    return (lambda: _by_feature(pq.read_table(path, filesystem=filesystem))), stored


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime] | None:
    if start is None and end is None:
        return None
    from datetime import UTC

    return (start or datetime.min.replace(tzinfo=UTC), end or datetime.max.replace(tzinfo=UTC))


def _log_folder(store: FeatureStore) -> Path:
    log = store.serving_log
    if log is None:
        raise DataError("no serving log is configured (online.log in featurekit.yaml); pass its folder")
    return Path(log.folder)


def _by_feature(table: pa.Table) -> pa.Table:
    """A table of feature values with columns named by feature (``view:feature`` -> ``feature``),
    bookkeeping columns (``__fk_...``) left out; a name two views share keeps its full reference."""
    kept = [c for c in table.column_names if not c.startswith("__fk_")]
    short = [feature_column(c) for c in kept]
    names = [s if short.count(s) == 1 else c for c, s in zip(kept, short, strict=True)]
    return table.select(kept).rename_columns(names)


def _only(table: pa.Table, columns: list[str] | None) -> pa.Table:
    if columns is None:
        return table
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(f"the drift side has no feature {missing[0]!r}; it has {table.column_names}")
    return table.select(columns)


def _same_edges(profile: Profile, edges: Edges) -> bool:
    return all(profile.columns[c].edges == e for c, e in edges.items() if c in profile.columns)


def _renamed(profile: Profile, source: str) -> Profile:
    return Profile(rows=profile.rows, columns=profile.columns, source=source)


def edges_of(profile: Profile) -> Edges:
    """The numeric columns' histogram edges of a profile (the bins the other side is profiled on)."""
    return {name: c.edges for name, c in profile.columns.items() if c.kind == "numeric" and c.edges}


def feature_column(feature: str) -> str:
    """The column a feature reference names on every side: ``view[@vN]:feature`` -> ``feature``."""
    return feature.rsplit(":", 1)[-1]


def measure(
    store: FeatureStore,
    features: list[str] | None,
    reference: Any,
    current: Any,
    thresholds: Thresholds | None = None,
) -> DriftReport:
    """The drift report of ``current`` against ``reference`` (see :meth:`FeatureStore.drift`).

    View sides that name no moment of their own are both read as of the registry version current
    when the report starts: a materialization committing between the two reads cannot put one
    side before it and the other after it.
    """
    columns = [feature_column(f) for f in features] if features else None
    sides = side_of(reference), side_of(current)
    at = None
    if any(isinstance(s, ViewData) and s.as_of is None for s in sides):
        from featurekit.timetravel import registry_version

        at = registry_version(store.registry, None)
    ref = profile_of(store, sides[0], columns, None, at)
    checkpoint("drift.between_sides")
    cur = profile_of(store, sides[1], columns, edges_of(ref), at)
    return compare(ref, cur, columns, thresholds)
