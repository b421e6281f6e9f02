"""The registry's writes. Each runs inside a write transaction (``BEGIN IMMEDIATE``) the caller holds.

Holding the write lock from the start is what makes the checks here compare-and-set operations:
an apply commits only if the newest apply is still the one it was planned against, and a
materialization only if the view version's data is still at the version it started from. Nothing
is updated or deleted; every apply, materialization and push adds one commit.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from featurekit.errors import ConflictError, RegistryError
from featurekit.faults import checkpoint
from featurekit.registry import reads
from featurekit.registry.records import Materialization, NewVersion, schema_bytes
from featurekit.timestamps import to_micros


def new_commit(db: sqlite3.Connection, kind: str, summary: str, git_commit: str | None) -> int:
    """Add a commit of ``kind``; its id is the new registry version."""
    last = db.execute("SELECT max(committed_at) FROM commits").fetchone()[0]
    now = to_micros(datetime.now().astimezone())
    at = max(now, (last or 0) + 1)  # commit times strictly increase with the version
    cursor = db.execute(
        "INSERT INTO commits (committed_at, kind, git_commit, summary) VALUES (?, ?, ?, ?)",
        (at, kind, git_commit, summary),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def apply(
    db: sqlite3.Connection,
    new_versions: list[NewVersion],
    active: dict[str, tuple[str, dict[str, Any]]],
    *,
    expected_apply: int,
    summary: str,
    git_commit: str | None,
) -> int:
    """Register new versions and make ``active`` the head set, if no apply landed since ``expected_apply``."""
    if reads.head(db, "apply") != expected_apply:
        raise ConflictError(
            "another apply changed the registry while this one was planned; run `featurekit apply` again"
        )
    commit = new_commit(db, "apply", summary, git_commit)
    for new in new_versions:
        existing = db.execute(
            "SELECT id FROM view_versions WHERE view = ? AND fingerprint = ?", (new.view, new.fingerprint)
        ).fetchone()
        if existing is not None:
            continue
        number = db.execute(
            "SELECT coalesce(max(version), 0) + 1 FROM view_versions WHERE view = ?", (new.view,)
        ).fetchone()[0]
        db.execute(
            "INSERT INTO view_versions (view, version, fingerprint, code_hash, definition, schema, "
            "source_schema, source_text, location, commit_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new.view,
                number,
                new.fingerprint,
                new.code_hash,
                json.dumps(new.definition, sort_keys=True),
                schema_bytes(new.schema),
                schema_bytes(new.source_schema),
                new.source_text,
                new.location,
                commit,
            ),
        )
    for view, (fp, metadata) in sorted(active.items()):
        version_id = db.execute(
            "SELECT id FROM view_versions WHERE view = ? AND fingerprint = ?", (view, fp)
        ).fetchone()
        if version_id is None:
            raise RegistryError(f"view {view!r} fingerprint {fp} was not registered in this apply")
        db.execute(
            "INSERT INTO active_views (commit_id, view, version_id, metadata) VALUES (?, ?, ?, ?)",
            (commit, view, version_id[0], json.dumps(metadata, sort_keys=True)),
        )
    checkpoint("apply.before_commit")
    return commit


def record_materialization(
    db: sqlite3.Connection,
    version_id: int,
    *,
    base_data_version: int | None,
    data_version: int,
    window: tuple[datetime, datetime],
    rows: int,
    mode: str,
    summary: str,
    batch_digest: str | None,
    entities: int | None = None,
    unique_times: bool | None = None,
    quality: dict[str, str] | None = None,
    view_quality: dict[str, str] | None = None,
) -> Materialization:
    """Add a materialization or push commit, if the version's data is still at ``base_data_version``.

    ``quality``: this commit's quality records (JSON by kind: check results, profile), stored in
    the same transaction. ``view_quality``: records fixed once per view version (the first one
    written wins: histogram edges chosen by the first materialization stay for every later one).
    """
    row = db.execute(
        "SELECT data_version, watermark FROM materializations WHERE version_id = ? ORDER BY commit_id DESC LIMIT 1",
        (version_id,),
    ).fetchone()
    current = None if row is None else int(row[0])
    if current != base_data_version:
        view, number = db.execute("SELECT view, version FROM view_versions WHERE id = ?", (version_id,)).fetchone()
        raise ConflictError(
            f"another materialization of feature view '{view}' v{number} committed data version {current} "
            f"while this one started from {base_data_version}; nothing was committed, run it again"
        )
    start, end = to_micros(window[0]), to_micros(window[1])
    previous = None if row is None or row[1] is None else int(row[1])
    # A push adds rows but does not move the watermark of windowed materializations.
    watermark = previous if mode == "push" else (end if previous is None else max(end, previous))
    commit = new_commit(db, "push" if mode == "push" else "materialize", summary, None)
    db.execute(
        "INSERT INTO materializations (commit_id, version_id, data_version, window_start, window_end, "
        "watermark, rows, mode, batch_digest, entities, unique_times) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            commit,
            version_id,
            data_version,
            start,
            end,
            watermark,
            rows,
            mode,
            batch_digest,
            entities,
            None if unique_times is None else int(unique_times),
        ),
    )
    for kind, payload in (quality or {}).items():
        db.execute("INSERT INTO quality VALUES (?, ?, ?, ?)", (commit, version_id, kind, payload))
    for kind, payload in (view_quality or {}).items():
        db.execute("INSERT OR IGNORE INTO view_quality VALUES (?, ?, ?)", (version_id, kind, payload))
    # Read back inside the transaction: once it ends, another writer may already have committed.
    found = reads.materialization(db, commit)
    checkpoint("materialize.before_commit")
    return found


def record_online_load(db: sqlite3.Connection, commit_ids: list[int]) -> None:
    """Mark these commits' rows as loaded online (again: a no-op)."""
    db.executemany("INSERT OR IGNORE INTO online_loads (commit_id) VALUES (?)", [(c,) for c in commit_ids])


def record_removal(db: sqlite3.Connection, removed: list[tuple[int, int]], policy: str) -> None:
    """Add a gc run and the (view version id, data version) pairs it is about to remove."""
    cursor = db.execute(
        "INSERT INTO gc_runs (ran_at, policy) VALUES (?, ?)", (to_micros(datetime.now().astimezone()), policy)
    )
    db.executemany(
        "INSERT OR IGNORE INTO removed_data (version_id, data_version, gc_run) VALUES (?, ?, ?)",
        [(version_id, data_version, cursor.lastrowid) for version_id, data_version in removed],
    )


def record_training_set(db: sqlite3.Connection, path: str, registry_version: int, manifest: str) -> int:
    """Add a written training set (its file's path and manifest JSON); returns its id."""
    cursor = db.execute(
        "INSERT INTO training_sets (written_at, registry_version, head_commit, path, manifest) VALUES (?, ?, ?, ?, ?)",
        (to_micros(datetime.now().astimezone()), registry_version, reads.head(db), path, manifest),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid
