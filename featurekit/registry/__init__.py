"""The versioned registry: one SQLite file in WAL mode, append-only, safe across processes.

Every change is a *commit* (a row of ``commits`` with a monotonic id = the registry version and a
UTC time). An apply commit writes the full set of active view versions (``active_views``); a
materialize commit writes one ``materializations`` row naming the Delta table version it produced
and the view's new watermark. Nothing is updated or deleted, so the registry can be read as of
any commit: the active definitions are those of the newest apply commit at or before it, and a
view version's data is that of its last materialization at or before it.

Writers take SQLite's write lock up front (``BEGIN IMMEDIATE``), so concurrent applies serialize
and version numbers stay unique; a materialization commits only if the view's data version is
still the one it started from (compare-and-set), otherwise it fails with :class:`ConflictError`.

A :class:`Registry` may be shared by threads: each thread gets its own SQLite connection (opened on
its first call), every read runs in one read transaction on it (one consistent snapshot, however
many queries), and every write in one ``BEGIN IMMEDIATE`` transaction, exactly as between processes.

The package, along those lines::

    schema.py       the tables, SCHEMA_VERSION, migrations of older files, opening a connection
    connections.py  one connection per thread; read and write transactions; SQLite errors translated
    records.py      ViewVersion, ActiveView, Materialization, Commit, Removal, NewVersion; row decoders
    reads.py        the queries
    writes.py       apply, record_materialization and the other writes (compare-and-set checks)
    __init__.py     Registry: each method is one read or one write transaction
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from featurekit.registry import reads, writes
from featurekit.registry.connections import Connections
from featurekit.registry.records import (
    ActiveView,
    Commit,
    GcRun,
    Materialization,
    NewVersion,
    Removal,
    TrainingSetRecord,
    ViewVersion,
)
from featurekit.registry.schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "ActiveView",
    "Commit",
    "GcRun",
    "Materialization",
    "NewVersion",
    "Registry",
    "Removal",
    "TrainingSetRecord",
    "ViewVersion",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class Registry:
    """Append-only registry of view versions and materializations in one SQLite file.

    Safe to share between threads: each thread reads and writes through its own connection.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connections = Connections(path)

    def close(self) -> None:
        """Close every thread's connection; later calls raise :class:`RegistryError`. Idempotent.

        Call it once no thread uses the registry any more (threads that merely still hold a
        connection are fine: it is closed for them).
        """
        self._connections.close()

    def _read(self, query: Callable[Concatenate[sqlite3.Connection, _P], _R], *args: _P.args, **kw: _P.kwargs) -> _R:
        with self._connections.read() as db:
            return query(db, *args, **kw)

    def _write(self, change: Callable[Concatenate[sqlite3.Connection, _P], _R], *args: _P.args, **kw: _P.kwargs) -> _R:
        with self._connections.write() as db:
            return change(db, *args, **kw)

    # -- reads ------------------------------------------------------------------------------

    def quick_check(self) -> list[str]:
        """SQLite's consistency check of the registry file: the problems found (none: empty)."""
        return self._read(reads.quick_check)

    def head_apply(self) -> int:
        """The newest apply commit (0 when nothing was applied yet)."""
        return self._read(reads.head, "apply")

    def head_commit(self) -> int:
        """The newest registry version (0 for an empty registry)."""
        return self._read(reads.head)

    def commit_at(self, moment: datetime) -> int:
        """The registry version that was current at ``moment`` (0 if none)."""
        return self._read(reads.commit_at, moment)

    def active(self, as_of: int | None = None) -> dict[str, ActiveView]:
        """The active view versions as of registry version ``as_of`` (default: now)."""
        return self._read(reads.active, as_of)

    def version(self, view: str, version: int) -> ViewVersion:
        """One version of a view, or :class:`UnknownNameError` listing the versions that exist."""
        return self._read(reads.version, view, version)

    def version_by_fingerprint(self, view: str, fingerprint: str) -> ViewVersion:
        """The version of ``view`` with that fingerprint (inputs of on-demand views are pinned this way)."""
        return self._read(reads.version_by_fingerprint, view, fingerprint)

    def versions(self, view: str | None = None) -> list[ViewVersion]:
        """Every registered version (of one view, or all), oldest first."""
        return self._read(reads.versions, view)

    def last_materialization(self, version_id: int, as_of: int | None = None) -> Materialization | None:
        """The most recently committed materialization of a view version (as of a registry version)."""
        return self._read(reads.last_materialization, version_id, as_of)

    def data_span(self, version_id: int) -> tuple[datetime, datetime] | None:
        """Earliest window start and latest window end of the committed writes of a view version.

        Every committed row of the version lies in this span (writes replace or add rows inside
        their window only; a Delta commit the registry never recorded is undone before the next
        write). ``None``: nothing was committed yet.
        """
        return self._read(reads.data_span, version_id)

    def pushed(self, version_id: int, batch_digest: str) -> Materialization | None:
        """The committed push of exactly these rows to the view version, if there is one."""
        return self._read(reads.pushed, version_id, batch_digest)

    def online_pending(self, version_id: int) -> list[Materialization]:
        """Committed materializations and pushes of a view version whose online load never finished."""
        return self._read(reads.online_pending, version_id)

    def materializations(self, version_id: int | None = None) -> list[Materialization]:
        """Every committed materialization (of one view version, or all), oldest first."""
        return self._read(reads.materializations, version_id)

    def data_stats(self, version_id: int, as_of: int | None = None) -> tuple[int | None, bool]:
        """What the planner may assume of a version's data at ``as_of``: (entities, unique times).

        Entities: the most any one window's output held, a lower bound of the table's (so a plan
        chosen for few rows per entity is never chosen wrongly); None when never measured.
        Unique times: true only if every window measured no two rows sharing keys and event time
        and no push (whose rows may tie with committed ones) was made. Windows never overlap in
        event time, so per-window uniqueness is uniqueness of the table.
        """
        history = [m for m in self.materializations(version_id) if as_of is None or m.commit_id <= as_of]
        measured = [m.entities for m in history if m.entities is not None]
        unique = bool(history) and all(m.unique_times is True for m in history)
        return (max(measured) if measured else None), unique

    def applied_sets(self) -> list[tuple[int, dict[str, int]]]:
        """Each apply commit with its active set (view -> view version id), oldest first."""
        return self._read(reads.applied_sets)

    def removal(self, version_id: int, data_version: int) -> Removal | None:
        """Whether gc removed that data version of a view version (and when)."""
        return self._read(reads.removal, version_id, data_version)

    def removals(self) -> set[tuple[int, int]]:
        """Every (view version id, data version) gc removed."""
        return self._read(reads.removals)

    def gc_runs(self) -> list[GcRun]:
        """Every gc run (gc records its removals, not a commit), oldest first."""
        return self._read(reads.gc_runs)

    def commit(self, commit_id: int) -> Commit:
        """One commit, or :class:`UnknownNameError` naming the range that exists."""
        return self._read(reads.commit, commit_id)

    def commits(self, since: int = 0, until: int | None = None) -> list[Commit]:
        """Every commit (after registry version ``since``, up to ``until``), oldest first."""
        return self._read(reads.commits, since, until)

    def last_materializations(self, as_of: int | None = None) -> dict[int, Materialization]:
        """Each view version's most recent materialization (as of a registry version), by version id, in one read."""
        return self._read(reads.last_materializations, as_of)

    def training_sets(self, as_of: int | None = None) -> list[TrainingSetRecord]:
        """Every training set written to a file (that existed at registry version ``as_of``), oldest first."""
        return self._read(reads.training_sets, as_of)

    def training_set(self, record_id: int) -> TrainingSetRecord:
        """One recorded training set, or :class:`UnknownNameError`."""
        return self._read(reads.training_set, record_id)

    # -- writes -----------------------------------------------------------------------------

    def apply(
        self,
        new_versions: list[NewVersion],
        active: dict[str, tuple[str, dict[str, Any]]],
        *,
        expected_apply: int,
        summary: str,
        git_commit: str | None,
    ) -> int:
        """Register new versions and make ``active`` (view -> (fingerprint, metadata)) the head set.

        ``expected_apply`` is the newest apply commit the plan was computed against (0: none). If any
        apply landed since, the plan is stale (its version numbers and changes may be wrong, even if
        the head's fingerprints came back to the same values) and :class:`ConflictError` is raised.
        """
        return self._write(
            writes.apply, new_versions, active, expected_apply=expected_apply, summary=summary, git_commit=git_commit
        )

    def record_materialization(
        self,
        version_id: int,
        *,
        base_data_version: int | None,
        data_version: int,
        window: tuple[datetime, datetime],
        rows: int,
        mode: str,
        summary: str,
        batch_digest: str | None = None,
        entities: int | None = None,
        unique_times: bool | None = None,
        quality: dict[str, str] | None = None,
        view_quality: dict[str, str] | None = None,
    ) -> Materialization:
        """Commit a materialization or push, if the view's data is still at ``base_data_version``.

        ``batch_digest`` (pushes) identifies the pushed rows, so that a retried push is recognized.
        ``entities`` and ``unique_times`` describe the window's output for the join planner.
        ``quality`` (JSON by kind) is stored with the commit, ``view_quality`` once per view version
        (see :func:`featurekit.registry.writes.record_materialization`).
        Returns the committed record (this commit's, whatever other writers commit next).
        """
        return self._write(
            writes.record_materialization,
            version_id,
            base_data_version=base_data_version,
            data_version=data_version,
            window=window,
            rows=rows,
            mode=mode,
            summary=summary,
            batch_digest=batch_digest,
            entities=entities,
            unique_times=unique_times,
            quality=quality,
            view_quality=view_quality,
        )

    def quality(
        self, version_id: int, kind: str, as_of: int | None = None, *, since: int | None = None
    ) -> list[tuple[int, str]]:
        """(commit id, payload) of every ``kind`` quality record of a view version, oldest first
        (``since``: only those of later commits)."""
        return self._read(reads.quality, version_id, kind, as_of, since)

    def latest_quality(
        self, kind: str, as_of: int | None = None, version_id: int | None = None
    ) -> dict[int, tuple[int, str]]:
        """The newest ``kind`` record of every view version (or of one): version id -> (commit id, payload)."""
        return self._read(reads.latest_quality, kind, as_of, version_id)

    def view_quality(self, version_id: int, kind: str) -> str | None:
        """The version's fixed ``kind`` record (for example its histogram edges), if written yet."""
        return self._read(reads.view_quality, version_id, kind)

    def record_training_set(self, path: str, registry_version: int, manifest: str) -> int:
        """Record a training set written to ``path`` (built at ``registry_version``) with its manifest JSON."""
        return self._write(writes.record_training_set, path, registry_version, manifest)

    def record_online_load(self, commit_ids: list[int]) -> None:
        """Record that these commits' rows reached the online store (or were kept out of it on purpose)."""
        self._write(writes.record_online_load, commit_ids)

    def record_removal(self, removed: list[tuple[int, int]], policy: str) -> None:
        """Record, before any file is deleted, the data versions gc is about to remove."""
        self._write(writes.record_removal, removed, policy)
