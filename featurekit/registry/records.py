"""What the registry hands out: immutable records, and how each is decoded from its SQLite row."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from featurekit.timestamps import from_micros


@dataclass(frozen=True)
class ViewVersion:
    """One registered version of a view (immutable once written)."""

    id: int
    view: str
    version: int
    fingerprint: str
    code_hash: str
    definition: dict[str, Any]
    schema: pa.Schema
    source_schema: pa.Schema | None
    source_text: str
    location: str
    commit_id: int

    @property
    def features(self) -> list[str]:
        return list(self.definition["features"])

    @property
    def is_window(self) -> bool:
        return bool(self.definition.get("kind") == "window")

    def feature_type(self, feature: str) -> pa.DataType:
        """The type of one feature (a window view's are computed from its function's output types)."""
        from featurekit.windows import registered_type

        return registered_type(self.definition, self.schema, feature)


@dataclass(frozen=True)
class ActiveView:
    """A view as active in a snapshot: its version and its (unversioned) metadata."""

    version: ViewVersion
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Materialization:
    """A committed materialization of a view version."""

    commit_id: int
    committed_at: datetime
    version_id: int
    data_version: int
    window_start: datetime
    window_end: datetime
    watermark: datetime | None  # end of the last materialized window (pushes do not move it)
    rows: int
    mode: str  # "window", "incremental" or "push"
    entities: int | None = None  # distinct keys of the window's output (None: not measured)
    unique_times: bool | None = None  # no two output rows shared keys and event time (None: not measured)


@dataclass(frozen=True)
class Commit:
    """One registry commit (the registry version is its id)."""

    id: int
    committed_at: datetime
    kind: str
    git_commit: str | None
    summary: str


@dataclass(frozen=True)
class Removal:
    """Data of a view version that gc removed: which data version, when, under which policy."""

    version_id: int
    data_version: int
    removed_at: datetime
    policy: str


@dataclass(frozen=True)
class GcRun:
    """One gc run: when, under which policy, and how many data versions it removed."""

    id: int
    ran_at: datetime
    policy: str
    removed: int


@dataclass(frozen=True)
class TrainingSetRecord:
    """A training set written to a file: where, when, and its manifest (as a JSON-ready dict).

    ``registry_version`` is the one it was built at (older than the head for an ``as_of``
    rebuild); ``head_commit`` the registry's newest commit when it was written, so that a view
    of the registry as of a commit shows only the training sets that existed by then.
    """

    id: int
    written_at: datetime
    registry_version: int
    head_commit: int
    path: str
    manifest: dict[str, Any]


@dataclass(frozen=True)
class NewVersion:
    """A view version to register at apply."""

    view: str
    fingerprint: str
    code_hash: str
    definition: dict[str, Any]
    schema: pa.Schema
    source_schema: pa.Schema | None
    source_text: str
    location: str


def schema_bytes(schema: pa.Schema | None) -> bytes | None:
    """An Arrow schema as stored (IPC-serialized)."""
    return None if schema is None else schema.serialize().to_pybytes()


def _schema_from(blob: bytes | None) -> pa.Schema | None:
    return None if blob is None else pa.ipc.read_schema(pa.py_buffer(blob))


def version_from(row: tuple[Any, ...]) -> ViewVersion:
    """A :class:`ViewVersion` from a row of :data:`featurekit.registry.reads.VERSION_COLUMNS`."""
    schema = _schema_from(row[6])
    assert schema is not None
    return ViewVersion(
        id=row[0],
        view=row[1],
        version=row[2],
        fingerprint=row[3],
        code_hash=row[4],
        definition=json.loads(row[5]),
        schema=schema,
        source_schema=_schema_from(row[7]),
        source_text=row[8],
        location=row[9],
        commit_id=row[10],
    )


def materialization_from(row: tuple[Any, ...]) -> Materialization:
    """A :class:`Materialization` from a row of :data:`featurekit.registry.reads.MATERIALIZATION_COLUMNS`."""
    return Materialization(
        commit_id=row[0],
        committed_at=from_micros(row[1]),
        version_id=row[2],
        data_version=row[3],
        window_start=from_micros(row[4]),
        window_end=from_micros(row[5]),
        watermark=None if row[6] is None else from_micros(row[6]),
        rows=row[7],
        mode=row[8],
        entities=row[9],
        unique_times=None if row[10] is None else bool(row[10]),
    )


def commit_from(row: tuple[Any, ...]) -> Commit:
    """A :class:`Commit` from a row of :data:`featurekit.registry.reads.COMMIT_COLUMNS`."""
    return Commit(row[0], from_micros(row[1]), row[2], row[3], row[4])


def removal_from(row: tuple[Any, ...]) -> Removal:
    """A :class:`Removal` from a row (version_id, data_version, ran_at, policy)."""
    return Removal(row[0], row[1], from_micros(row[2]), row[3])


def training_set_from(row: tuple[Any, ...]) -> TrainingSetRecord:
    """A :class:`TrainingSetRecord` from a row of :data:`featurekit.registry.reads.TRAINING_SET_COLUMNS`."""
    return TrainingSetRecord(row[0], from_micros(row[1]), row[2], row[3], row[4], json.loads(row[5]))
