"""The registry's file format: its tables, their format version, and bringing an older file up to it.

A registry file holds its format number in ``meta``; :func:`migrate` creates every table a file
lacks (all of them for a new file) and fills what an older format did not record. Opening an
up-to-date file writes nothing, so readers never take the write lock.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from featurekit.errors import RegistryError

SCHEMA_VERSION = 7  # 2: gc records (gc_runs, removed_data); 3: materializations.batch_digest; 4: online_loads;
# 5: materializations.entities and unique_times (statistics the join planner reads); 6: quality, view_quality;
# 7: training_sets (each training set written to a file, with its manifest: what lineage shows)

DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    committed_at INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('apply', 'materialize', 'push')),
    git_commit TEXT,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS view_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    view TEXT NOT NULL COLLATE NOCASE,
    version INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    definition TEXT NOT NULL,
    schema BLOB NOT NULL,
    source_schema BLOB,
    source_text TEXT NOT NULL,
    location TEXT NOT NULL,
    commit_id INTEGER NOT NULL REFERENCES commits (id),
    UNIQUE (view, version),
    UNIQUE (view, fingerprint)
);
CREATE TABLE IF NOT EXISTS active_views (
    commit_id INTEGER NOT NULL REFERENCES commits (id),
    view TEXT NOT NULL COLLATE NOCASE,
    version_id INTEGER NOT NULL REFERENCES view_versions (id),
    metadata TEXT NOT NULL,
    PRIMARY KEY (commit_id, view)
);
CREATE TABLE IF NOT EXISTS materializations (
    commit_id INTEGER PRIMARY KEY REFERENCES commits (id),
    version_id INTEGER NOT NULL REFERENCES view_versions (id),
    data_version INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    watermark INTEGER,
    rows INTEGER NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('window', 'incremental', 'push')),
    batch_digest TEXT,
    entities INTEGER,
    unique_times INTEGER,
    UNIQUE (version_id, data_version)
);
CREATE INDEX IF NOT EXISTS materializations_by_version ON materializations (version_id, commit_id);
CREATE TABLE IF NOT EXISTS quality (
    commit_id INTEGER NOT NULL REFERENCES commits (id),
    version_id INTEGER NOT NULL REFERENCES view_versions (id),
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (commit_id, kind)
);
CREATE INDEX IF NOT EXISTS quality_by_version ON quality (version_id, kind, commit_id);
CREATE TABLE IF NOT EXISTS view_quality (
    version_id INTEGER NOT NULL REFERENCES view_versions (id),
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (version_id, kind)
);
CREATE TABLE IF NOT EXISTS training_sets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    written_at INTEGER NOT NULL,
    registry_version INTEGER NOT NULL,
    head_commit INTEGER NOT NULL,
    path TEXT NOT NULL,
    manifest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS online_loads (
    commit_id INTEGER PRIMARY KEY REFERENCES commits (id)
);
CREATE TABLE IF NOT EXISTS gc_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ran_at INTEGER NOT NULL,
    policy TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS removed_data (
    version_id INTEGER NOT NULL REFERENCES view_versions (id),
    data_version INTEGER NOT NULL,
    gc_run INTEGER NOT NULL REFERENCES gc_runs (id),
    PRIMARY KEY (version_id, data_version)
);
"""


BUSY_TIMEOUT_S = 60  # how long a writer waits for another's write lock before giving up


def connect(target: str, *, uri: bool) -> sqlite3.Connection:
    """A connection to the registry file (a path, or a ``file:`` URI when ``uri``).

    Autocommit mode (transactions are explicit), usable from any thread (so that the thread
    closing the registry can close it), full fsync on commit, foreign keys enforced.
    """
    db = sqlite3.connect(target, uri=uri, isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    try:
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        db.close()
        raise
    return db


def schema_version(db: sqlite3.Connection) -> int | None:
    """The file's format number (``None``: a new, empty file)."""
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None else int(row[0])


def enable_wal(db: sqlite3.Connection) -> None:
    """Switch the file to write-ahead logging (persistent; readers then never block writers)."""
    db.execute("PRAGMA journal_mode=WAL")


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Create the tables (or add what an older format lacks); the caller holds the write transaction."""
    for statement in DDL.split(";"):
        if statement.strip():
            db.execute(statement)
    columns = [r[1] for r in db.execute("PRAGMA table_info(materializations)")]
    if "batch_digest" not in columns:  # format 1 and 2
        db.execute("ALTER TABLE materializations ADD COLUMN batch_digest TEXT")
    if "entities" not in columns:  # formats 1 to 4: statistics unknown (the planner assumes the worst)
        db.execute("ALTER TABLE materializations ADD COLUMN entities INTEGER")
        db.execute("ALTER TABLE materializations ADD COLUMN unique_times INTEGER")
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is not None and int(row[0]) < 4:  # before format 4, every online load was assumed done
        db.execute("INSERT OR IGNORE INTO online_loads SELECT commit_id FROM materializations")
    if row is not None and int(row[0]) > SCHEMA_VERSION:
        raise RegistryError(
            f"registry {path} has format {row[0]}, newer than this featurekit understands "
            f"({SCHEMA_VERSION}); upgrade featurekit"
        )
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
