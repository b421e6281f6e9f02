"""The registry's queries. Each runs on a connection whose transaction the caller holds.

:class:`~featurekit.registry.Registry` runs each of its reads in one read transaction (one
snapshot); writes reuse some of these inside their own transaction. Nothing here writes.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from featurekit.errors import RegistryError, UnknownNameError, did_you_mean
from featurekit.registry.records import (
    ActiveView,
    Commit,
    GcRun,
    Materialization,
    Removal,
    TrainingSetRecord,
    ViewVersion,
    commit_from,
    materialization_from,
    removal_from,
    training_set_from,
    version_from,
)
from featurekit.timestamps import from_micros, to_micros

# The columns the decoders of records.py expect, in their order (``v``: view_versions,
# ``m``: materializations joined with ``c``: commits).
VERSION_COLUMNS = (
    "v.id, v.view, v.version, v.fingerprint, v.code_hash, v.definition, v.schema, v.source_schema, "
    "v.source_text, v.location, v.commit_id"
)
MATERIALIZATION_COLUMNS = (
    "m.commit_id, c.committed_at, m.version_id, m.data_version, m.window_start, m.window_end, m.watermark, "
    "m.rows, m.mode, m.entities, m.unique_times"
)
COMMIT_COLUMNS = "id, committed_at, kind, git_commit, summary"
TRAINING_SET_COLUMNS = "id, written_at, registry_version, head_commit, path, manifest"
_NOW = 2**62  # a registry version after every commit: "as of now"
_MATERIALIZATIONS = f"SELECT {MATERIALIZATION_COLUMNS} FROM materializations m JOIN commits c ON c.id = m.commit_id"


def quick_check(db: sqlite3.Connection) -> list[str]:
    rows = [r[0] for r in db.execute("PRAGMA quick_check")]
    return [] if rows == ["ok"] else rows


def head(db: sqlite3.Connection, kind: str | None = None) -> int:
    """The newest commit (of that kind), 0 if none."""
    if kind is None:
        return int(db.execute("SELECT coalesce(max(id), 0) FROM commits").fetchone()[0])
    return int(db.execute("SELECT coalesce(max(id), 0) FROM commits WHERE kind = ?", (kind,)).fetchone()[0])


def commit_at(db: sqlite3.Connection, moment: datetime) -> int:
    row = db.execute(
        "SELECT coalesce(max(id), 0) FROM commits WHERE committed_at <= ?", (to_micros(moment),)
    ).fetchone()
    return int(row[0])


def active(db: sqlite3.Connection, as_of: int | None) -> dict[str, ActiveView]:
    limit = as_of if as_of is not None else _NOW
    row = db.execute("SELECT max(id) FROM commits WHERE kind = 'apply' AND id <= ?", (limit,)).fetchone()
    if row[0] is None:
        return {}
    rows = db.execute(
        f"SELECT a.metadata, {VERSION_COLUMNS} FROM active_views a JOIN view_versions v "
        "ON v.id = a.version_id WHERE a.commit_id = ? ORDER BY a.view",
        (row[0],),
    ).fetchall()
    return {r[2]: ActiveView(version_from(r[1:]), json.loads(r[0])) for r in rows}


def version(db: sqlite3.Connection, view: str, number: int) -> ViewVersion:
    row = db.execute(
        f"SELECT {VERSION_COLUMNS} FROM view_versions v WHERE view = ? AND version = ?", (view, number)
    ).fetchone()
    if row is None:
        known = [v.version for v in versions(db, view)]
        if not known:
            names = [r[0] for r in db.execute("SELECT DISTINCT view FROM view_versions")]
            raise UnknownNameError(f"no feature view {view!r} in the registry{did_you_mean(view, names)}")
        raise UnknownNameError(
            f"feature view {view!r} has no version {number}; registered versions: " + ", ".join(f"v{v}" for v in known)
        )
    return version_from(row)


def version_by_fingerprint(db: sqlite3.Connection, view: str, fingerprint: str) -> ViewVersion:
    row = db.execute(
        f"SELECT {VERSION_COLUMNS} FROM view_versions v WHERE view = ? AND fingerprint = ?", (view, fingerprint)
    ).fetchone()
    if row is None:
        raise RegistryError(
            f"registry has no version of {view!r} with fingerprint {fingerprint}; run `featurekit verify`"
        )
    return version_from(row)


def versions(db: sqlite3.Connection, view: str | None) -> list[ViewVersion]:
    query = f"SELECT {VERSION_COLUMNS} FROM view_versions v"
    params: tuple[Any, ...] = ()
    if view is not None:
        query += " WHERE view = ?"
        params = (view,)
    return [version_from(r) for r in db.execute(query + " ORDER BY v.id", params)]


def last_materialization(db: sqlite3.Connection, version_id: int, as_of: int | None) -> Materialization | None:
    row = db.execute(
        _MATERIALIZATIONS + " WHERE m.version_id = ? AND m.commit_id <= ? ORDER BY m.commit_id DESC LIMIT 1",
        (version_id, as_of if as_of is not None else _NOW),
    ).fetchone()
    return None if row is None else materialization_from(row)


def materialization(db: sqlite3.Connection, commit_id: int) -> Materialization:
    """The materialization committed by ``commit_id`` (which must be one)."""
    row = db.execute(_MATERIALIZATIONS + " WHERE m.commit_id = ?", (commit_id,)).fetchone()
    assert row is not None, f"commit {commit_id} is no materialization"
    return materialization_from(row)


def data_span(db: sqlite3.Connection, version_id: int) -> tuple[datetime, datetime] | None:
    row = db.execute(
        "SELECT min(window_start), max(window_end) FROM materializations WHERE version_id = ?", (version_id,)
    ).fetchone()
    return None if row is None or row[0] is None else (from_micros(row[0]), from_micros(row[1]))


def pushed(db: sqlite3.Connection, version_id: int, batch_digest: str) -> Materialization | None:
    row = db.execute(
        _MATERIALIZATIONS + " WHERE m.version_id = ? AND m.batch_digest = ? ORDER BY m.commit_id DESC LIMIT 1",
        (version_id, batch_digest),
    ).fetchone()
    return None if row is None else materialization_from(row)


def online_pending(db: sqlite3.Connection, version_id: int) -> list[Materialization]:
    rows = db.execute(
        _MATERIALIZATIONS + " WHERE m.version_id = ? AND m.commit_id NOT IN (SELECT commit_id FROM online_loads) "
        "ORDER BY m.commit_id",
        (version_id,),
    )
    return [materialization_from(r) for r in rows]


def materializations(db: sqlite3.Connection, version_id: int | None) -> list[Materialization]:
    query = _MATERIALIZATIONS
    params: tuple[Any, ...] = ()
    if version_id is not None:
        query += " WHERE m.version_id = ?"
        params = (version_id,)
    return [materialization_from(r) for r in db.execute(query + " ORDER BY m.commit_id", params)]


def applied_sets(db: sqlite3.Connection) -> list[tuple[int, dict[str, int]]]:
    applies = [r[0] for r in db.execute("SELECT id FROM commits WHERE kind = 'apply' ORDER BY id")]
    sets: dict[int, dict[str, int]] = {commit: {} for commit in applies}
    for commit, view, version_id in db.execute("SELECT commit_id, view, version_id FROM active_views"):
        sets[commit][view] = version_id
    return list(sets.items())


def removal(db: sqlite3.Connection, version_id: int, data_version: int) -> Removal | None:
    row = db.execute(
        "SELECT r.version_id, r.data_version, g.ran_at, g.policy FROM removed_data r "
        "JOIN gc_runs g ON g.id = r.gc_run WHERE r.version_id = ? AND r.data_version = ?",
        (version_id, data_version),
    ).fetchone()
    return None if row is None else removal_from(row)


def removals(db: sqlite3.Connection) -> set[tuple[int, int]]:
    return {(r[0], r[1]) for r in db.execute("SELECT version_id, data_version FROM removed_data")}


def gc_runs(db: sqlite3.Connection) -> list[GcRun]:
    rows = db.execute(
        "SELECT g.id, g.ran_at, g.policy, count(r.version_id) FROM gc_runs g LEFT JOIN removed_data r "
        "ON r.gc_run = g.id GROUP BY g.id ORDER BY g.id"
    )
    return [GcRun(r[0], from_micros(r[1]), r[2], r[3]) for r in rows]


def commit(db: sqlite3.Connection, commit_id: int) -> Commit:
    row = db.execute(f"SELECT {COMMIT_COLUMNS} FROM commits WHERE id = ?", (commit_id,)).fetchone()
    if row is None:
        raise UnknownNameError(
            f"registry version {commit_id} does not exist; the registry has versions 1 to {head(db)}"
        )
    return commit_from(row)


def commits(db: sqlite3.Connection, since: int = 0, until: int | None = None) -> list[Commit]:
    query = f"SELECT {COMMIT_COLUMNS} FROM commits WHERE id > ? AND id <= ? ORDER BY id"
    rows = db.execute(query, (since, _NOW if until is None else until))
    return [commit_from(r) for r in rows]


def last_materializations(db: sqlite3.Connection, as_of: int | None) -> dict[int, Materialization]:
    """Each view version's newest materialization at ``as_of`` (one query for every version)."""
    rows = db.execute(
        _MATERIALIZATIONS + " WHERE m.commit_id IN (SELECT max(commit_id) FROM materializations "
        "WHERE commit_id <= ? GROUP BY version_id)",
        (_NOW if as_of is None else as_of,),
    )
    found = [materialization_from(r) for r in rows]
    return {m.version_id: m for m in found}


def quality(
    db: sqlite3.Connection, version_id: int, kind: str, as_of: int | None, since: int | None
) -> list[tuple[int, str]]:
    rows = db.execute(
        "SELECT commit_id, payload FROM quality WHERE version_id = ? AND kind = ? AND commit_id <= ? "
        "AND commit_id > ? ORDER BY commit_id",
        (version_id, kind, _NOW if as_of is None else as_of, 0 if since is None else since),
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def latest_quality(
    db: sqlite3.Connection, kind: str, as_of: int | None, version_id: int | None
) -> dict[int, tuple[int, str]]:
    """Each view version's (or one's) newest ``kind`` record at ``as_of``: version id -> (commit id, payload)."""
    limit = _NOW if as_of is None else as_of
    query = (
        "SELECT q.version_id, q.commit_id, q.payload FROM quality q JOIN (SELECT version_id, max(commit_id) AS newest "
        "FROM quality WHERE kind = ? AND commit_id <= ? AND (? IS NULL OR version_id = ?) GROUP BY version_id) n "
        "ON q.version_id = n.version_id AND q.commit_id = n.newest WHERE q.kind = ?"
    )
    rows = db.execute(query, (kind, limit, version_id, version_id, kind))
    return {int(r[0]): (int(r[1]), str(r[2])) for r in rows}


def view_quality(db: sqlite3.Connection, version_id: int, kind: str) -> str | None:
    query = "SELECT payload FROM view_quality WHERE version_id = ? AND kind = ?"
    row = db.execute(query, (version_id, kind)).fetchone()
    return None if row is None else str(row[0])


def training_sets(db: sqlite3.Connection, as_of: int | None) -> list[TrainingSetRecord]:
    rows = db.execute(
        f"SELECT {TRAINING_SET_COLUMNS} FROM training_sets WHERE head_commit <= ? ORDER BY id",
        (_NOW if as_of is None else as_of,),
    )
    return [training_set_from(r) for r in rows]


def training_set(db: sqlite3.Connection, record_id: int) -> TrainingSetRecord:
    row = db.execute(f"SELECT {TRAINING_SET_COLUMNS} FROM training_sets WHERE id = ?", (record_id,)).fetchone()
    if row is None:
        raise UnknownNameError(f"no training set {record_id} is recorded in the registry")
    return training_set_from(row)
