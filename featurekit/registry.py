"""The versioned registry: one SQLite file in WAL mode, append-only, safe across processes.

Every change is a *commit* (a row of ``commits`` with a monotonic id = the registry version and a
UTC time). An apply commit writes the full set of active view versions (``active_views``); a
materialize commit writes one ``materializations`` row naming the Delta table version it produced
and the view's new watermark. Nothing is updated or deleted, so the registry can be read as of
any commit: the active definitions are those of the newest apply commit at or before it, and a
view version's data is that of its newest materialization at or before it.

Writers take SQLite's write lock up front (``BEGIN IMMEDIATE``), so concurrent applies serialize
and version numbers stay unique; a materialization commits only if the view's data version is
still the one it started from (compare-and-set), otherwise it fails with :class:`ConflictError`.

A :class:`Registry` may be shared by threads: each thread gets its own SQLite connection (opened on
its first call), every read runs in one read transaction on it (one consistent snapshot, however
many queries), and every write in one ``BEGIN IMMEDIATE`` transaction, exactly as between processes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from featurekit.errors import (
    ConflictError,
    FeaturekitError,
    RegistryError,
    UnknownNameError,
    did_you_mean,
    storage_errors,
)
from featurekit.faults import checkpoint
from featurekit.timestamps import from_micros, to_micros

SCHEMA_VERSION = 4  # 2: gc records (gc_runs, removed_data); 3: materializations.batch_digest; 4: online_loads

_DDL = """
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
    UNIQUE (version_id, data_version)
);
CREATE INDEX IF NOT EXISTS materializations_by_version ON materializations (version_id, commit_id);
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
    watermark: datetime | None  # end of the latest materialized window (pushes do not move it)
    rows: int
    mode: str  # "window", "incremental" or "push"


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


def _schema_version(db: sqlite3.Connection) -> int | None:
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None else int(row[0])


def _end_leftover(db: sqlite3.Connection) -> None:
    """Roll back a transaction a failed COMMIT or ROLLBACK left open on this connection."""
    if db.in_transaction:
        db.execute("ROLLBACK")


def _schema_bytes(schema: pa.Schema | None) -> bytes | None:
    return None if schema is None else schema.serialize().to_pybytes()


def _schema_from(blob: bytes | None) -> pa.Schema | None:
    return None if blob is None else pa.ipc.read_schema(pa.py_buffer(blob))


class Registry:
    """Append-only registry of view versions and materializations in one SQLite file.

    Safe to share between threads: each thread reads and writes through its own connection.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()  # .db: this thread's connection
        self._lock = threading.Lock()  # guards _open and _closed
        self._open: dict[threading.Thread, sqlite3.Connection] = {}
        self._closed = False
        try:
            with storage_errors(f"opening the registry {path}"):
                path.parent.mkdir(parents=True, exist_ok=True)
                # Connections opened later (by other threads) must find this very file, whatever the
                # working directory is then, and must never create an empty registry in its place.
                self._uri = path.resolve().as_uri() + "?mode=rw"
                db = self._connect(create=True)
                # Opening an up-to-date registry writes nothing (and takes no write lock).
                if _schema_version(db) != SCHEMA_VERSION:
                    self._create()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise RegistryError(
                f"registry {path} is unreadable ({exc}); restore it from a backup or move it away "
                "and re-apply (materialized data under the store is kept)"
            ) from exc
        except BaseException:
            self.close()
            raise

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        """Open this thread's connection (``create``: the first one, which may create the file)."""
        target, uri = (str(self.path), False) if create else (self._uri, True)
        db = sqlite3.connect(target, uri=uri, isolation_level=None, timeout=60, check_same_thread=False)
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            db.close()
            raise
        with self._lock:
            if self._closed:
                db.close()
                raise self._closed_error()
            # Threads that ended cannot use their connections again: close them here, so that a
            # process starting many short-lived threads does not accumulate open files.
            for thread in [t for t in self._open if not t.is_alive()]:
                self._open.pop(thread).close()
            self._open[threading.current_thread()] = db
        self._local.db = db
        return db

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on its first use."""
        if self._closed:
            raise self._closed_error()
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            with self._errors("opening", "nothing was read or written"):
                db = self._connect(create=False)
        return db

    def _closed_error(self) -> RegistryError:
        return RegistryError(f"the registry {self.path} was closed; open the feature store again to use it")

    def _create(self) -> None:
        """Create the tables (or add those an older format lacks) in one transaction."""
        self._connection().execute("PRAGMA journal_mode=WAL")
        with self._write() as db:
            for statement in _DDL.split(";"):
                if statement.strip():
                    db.execute(statement)
            columns = [r[1] for r in db.execute("PRAGMA table_info(materializations)")]
            if "batch_digest" not in columns:  # format 1 and 2
                db.execute("ALTER TABLE materializations ADD COLUMN batch_digest TEXT")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and int(row[0]) < 4:  # before format 4, every online load was assumed done
                db.execute("INSERT OR IGNORE INTO online_loads SELECT commit_id FROM materializations")
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise RegistryError(
                    f"registry {self.path} has format {row[0]}, newer than this featurekit understands "
                    f"({SCHEMA_VERSION}); upgrade featurekit"
                )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        """Close every thread's connection; later calls raise :class:`RegistryError`. Idempotent.

        Call it once no thread uses the registry any more (threads that merely still hold a
        connection are fine: it is closed for them).
        """
        with self._lock:
            self._closed = True
            connections, self._open = list(self._open.values()), {}
        for db in connections:
            db.close()

    @contextmanager
    def _errors(self, doing: str, consequence: str) -> Iterator[None]:
        """Report SQLite failures as featurekit errors: a failing disk, a lock held too long, the rest."""
        try:
            with storage_errors(f"{doing} the registry {self.path}", consequence):
                yield
        except FeaturekitError:
            raise
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise ConflictError(
                    f"the registry {self.path} stayed locked by another writer for over a minute "
                    f"({exc}); {consequence}, run the same command again"
                ) from exc
            raise RegistryError(
                f"{doing} the registry {self.path} failed ({exc}); {consequence}. Run `featurekit verify`"
            ) from exc
        except sqlite3.Error as exc:
            raise RegistryError(
                f"{doing} the registry {self.path} failed ({exc}); {consequence}. Run `featurekit verify`"
            ) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        with self._errors("writing", "nothing was committed"):
            _end_leftover(db)
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):  # a failing disk may fail the rollback too: keep the first error
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # One read transaction = one consistent snapshot, even while writers commit.
        db = self._connection()
        with self._errors("reading", "nothing was changed"):
            _end_leftover(db)
            db.execute("BEGIN")
            try:
                yield db
            finally:
                with suppress(sqlite3.Error):  # a read changes nothing; a failed end is undone on the next call
                    db.execute("ROLLBACK")

    def _new_commit(self, db: sqlite3.Connection, kind: str, summary: str, git_commit: str | None) -> int:
        last = db.execute("SELECT max(committed_at) FROM commits").fetchone()[0]
        now = to_micros(datetime.now().astimezone())
        at = max(now, (last or 0) + 1)  # commit times strictly increase with the version
        cursor = db.execute(
            "INSERT INTO commits (committed_at, kind, git_commit, summary) VALUES (?, ?, ?, ?)",
            (at, kind, git_commit, summary),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    # -- reads ------------------------------------------------------------------------------

    def quick_check(self) -> list[str]:
        """SQLite's consistency check of the registry file: the problems found (none: empty)."""
        with self._read() as db:
            rows = [r[0] for r in db.execute("PRAGMA quick_check")]
        return [] if rows == ["ok"] else rows

    def head_apply(self) -> int:
        """The newest apply commit (0 when nothing was applied yet)."""
        with self._read() as db:
            return _head(db, "apply")

    def head_commit(self) -> int:
        """The newest registry version (0 for an empty registry)."""
        with self._read() as db:
            return _head(db)

    def commit_at(self, moment: datetime) -> int:
        """The registry version that was current at ``moment`` (0 if none)."""
        with self._read() as db:
            row = db.execute(
                "SELECT coalesce(max(id), 0) FROM commits WHERE committed_at <= ?", (to_micros(moment),)
            ).fetchone()
        return int(row[0])

    def active(self, as_of: int | None = None) -> dict[str, ActiveView]:
        """The active view versions as of registry version ``as_of`` (default: now)."""
        with self._read() as db:
            limit = as_of if as_of is not None else 2**62
            row = db.execute("SELECT max(id) FROM commits WHERE kind = 'apply' AND id <= ?", (limit,)).fetchone()
            if row[0] is None:
                return {}
            rows = db.execute(
                f"SELECT a.metadata, {_VERSION_COLUMNS} FROM active_views a JOIN view_versions v "
                "ON v.id = a.version_id WHERE a.commit_id = ? ORDER BY a.view",
                (row[0],),
            ).fetchall()
        return {r[2]: ActiveView(_version_from(r[1:]), json.loads(r[0])) for r in rows}

    def version(self, view: str, version: int) -> ViewVersion:
        """One version of a view, or :class:`UnknownNameError` listing the versions that exist."""
        with self._read() as db:
            row = db.execute(
                f"SELECT {_VERSION_COLUMNS} FROM view_versions v WHERE view = ? AND version = ?", (view, version)
            ).fetchone()
            if row is None:
                known = [v.version for v in _versions(db, view)]
                if not known:
                    names = [r[0] for r in db.execute("SELECT DISTINCT view FROM view_versions")]
                    raise UnknownNameError(f"no feature view {view!r} in the registry{did_you_mean(view, names)}")
                raise UnknownNameError(
                    f"feature view {view!r} has no version {version}; registered versions: "
                    + ", ".join(f"v{v}" for v in known)
                )
        return _version_from(row)

    def version_by_fingerprint(self, view: str, fingerprint: str) -> ViewVersion:
        """The version of ``view`` with that fingerprint (inputs of on-demand views are pinned this way)."""
        with self._read() as db:
            row = db.execute(
                f"SELECT {_VERSION_COLUMNS} FROM view_versions v WHERE view = ? AND fingerprint = ?",
                (view, fingerprint),
            ).fetchone()
        if row is None:
            raise RegistryError(
                f"registry has no version of {view!r} with fingerprint {fingerprint}; run `featurekit verify`"
            )
        return _version_from(row)

    def versions(self, view: str | None = None) -> list[ViewVersion]:
        """Every registered version (of one view, or all), oldest first."""
        with self._read() as db:
            return _versions(db, view)

    def latest_materialization(self, version_id: int, as_of: int | None = None) -> Materialization | None:
        """The newest committed materialization of a view version (as of a registry version)."""
        with self._read() as db:
            row = db.execute(
                f"SELECT {_MATERIALIZATION_COLUMNS} FROM materializations m JOIN commits c ON c.id = m.commit_id "
                "WHERE m.version_id = ? AND m.commit_id <= ? ORDER BY m.commit_id DESC LIMIT 1",
                (version_id, as_of if as_of is not None else 2**62),
            ).fetchone()
        return None if row is None else _materialization_from(row)

    def data_span(self, version_id: int) -> tuple[datetime, datetime] | None:
        """Earliest window start and latest window end of the committed writes of a view version.

        Every committed row of the version lies in this span (writes replace or add rows inside
        their window only; a Delta commit the registry never recorded is undone before the next
        write). ``None``: nothing was committed yet.
        """
        with self._read() as db:
            row = db.execute(
                "SELECT min(window_start), max(window_end) FROM materializations WHERE version_id = ?", (version_id,)
            ).fetchone()
        return None if row is None or row[0] is None else (from_micros(row[0]), from_micros(row[1]))

    def pushed(self, version_id: int, batch_digest: str) -> Materialization | None:
        """The committed push of exactly these rows to the view version, if there is one."""
        with self._read() as db:
            row = db.execute(
                f"SELECT {_MATERIALIZATION_COLUMNS} FROM materializations m JOIN commits c ON c.id = m.commit_id "
                "WHERE m.version_id = ? AND m.batch_digest = ? ORDER BY m.commit_id DESC LIMIT 1",
                (version_id, batch_digest),
            ).fetchone()
        return None if row is None else _materialization_from(row)

    def online_pending(self, version_id: int) -> list[Materialization]:
        """Committed materializations and pushes of a view version whose online load never finished."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_MATERIALIZATION_COLUMNS} FROM materializations m JOIN commits c ON c.id = m.commit_id "
                "WHERE m.version_id = ? AND m.commit_id NOT IN (SELECT commit_id FROM online_loads) "
                "ORDER BY m.commit_id",
                (version_id,),
            ).fetchall()
        return [_materialization_from(r) for r in rows]

    def record_online_load(self, commit_ids: list[int]) -> None:
        """Record that these commits' rows reached the online store (or were kept out of it on purpose)."""
        with self._write() as db:
            db.executemany("INSERT OR IGNORE INTO online_loads (commit_id) VALUES (?)", [(c,) for c in commit_ids])

    def materializations(self, version_id: int | None = None) -> list[Materialization]:
        """Every committed materialization (of one view version, or all), oldest first."""
        query = f"SELECT {_MATERIALIZATION_COLUMNS} FROM materializations m JOIN commits c ON c.id = m.commit_id"
        params: tuple[Any, ...] = ()
        if version_id is not None:
            query += " WHERE m.version_id = ?"
            params = (version_id,)
        with self._read() as db:
            rows = db.execute(query + " ORDER BY m.commit_id", params).fetchall()
        return [_materialization_from(r) for r in rows]

    def applied_sets(self) -> list[tuple[int, dict[str, int]]]:
        """Each apply commit with its active set (view -> view version id), oldest first."""
        with self._read() as db:
            applies = [r[0] for r in db.execute("SELECT id FROM commits WHERE kind = 'apply' ORDER BY id")]
            rows = db.execute("SELECT commit_id, view, version_id FROM active_views").fetchall()
        sets: dict[int, dict[str, int]] = {commit: {} for commit in applies}
        for commit, view, version_id in rows:
            sets[commit][view] = version_id
        return list(sets.items())

    def removal(self, version_id: int, data_version: int) -> Removal | None:
        """Whether gc removed that data version of a view version (and when)."""
        with self._read() as db:
            row = db.execute(
                "SELECT r.version_id, r.data_version, g.ran_at, g.policy FROM removed_data r "
                "JOIN gc_runs g ON g.id = r.gc_run WHERE r.version_id = ? AND r.data_version = ?",
                (version_id, data_version),
            ).fetchone()
        return None if row is None else Removal(row[0], row[1], from_micros(row[2]), row[3])

    def removals(self) -> set[tuple[int, int]]:
        """Every (view version id, data version) gc removed."""
        with self._read() as db:
            rows = db.execute("SELECT version_id, data_version FROM removed_data").fetchall()
        return {(r[0], r[1]) for r in rows}

    def record_removal(self, removed: list[tuple[int, int]], policy: str) -> None:
        """Record, before any file is deleted, the data versions gc is about to remove."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO gc_runs (ran_at, policy) VALUES (?, ?)", (to_micros(datetime.now().astimezone()), policy)
            )
            db.executemany(
                "INSERT OR IGNORE INTO removed_data (version_id, data_version, gc_run) VALUES (?, ?, ?)",
                [(version_id, data_version, cursor.lastrowid) for version_id, data_version in removed],
            )

    def commit(self, commit_id: int) -> Commit:
        """One commit, or :class:`UnknownNameError` naming the range that exists."""
        with self._read() as db:
            row = db.execute(
                "SELECT id, committed_at, kind, git_commit, summary FROM commits WHERE id = ?", (commit_id,)
            ).fetchone()
            if row is None:
                raise UnknownNameError(
                    f"registry version {commit_id} does not exist; the registry has versions 1 to {_head(db)}"
                )
        return Commit(row[0], from_micros(row[1]), row[2], row[3], row[4])

    def commits(self) -> list[Commit]:
        """Every commit, oldest first."""
        with self._read() as db:
            rows = db.execute("SELECT id, committed_at, kind, git_commit, summary FROM commits ORDER BY id").fetchall()
        return [Commit(r[0], from_micros(r[1]), r[2], r[3], r[4]) for r in rows]

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
        with self._write() as db:
            if _head(db, "apply") != expected_apply:
                raise ConflictError(
                    "another apply changed the registry while this one was planned; run `featurekit apply` again"
                )
            commit = self._new_commit(db, "apply", summary, git_commit)
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
                        _schema_bytes(new.schema),
                        _schema_bytes(new.source_schema),
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
    ) -> Materialization:
        """Commit a materialization or push, if the view's data is still at ``base_data_version``.

        ``batch_digest`` (pushes) identifies the pushed rows, so that a retried push is recognized.
        """
        with self._write() as db:
            row = db.execute(
                "SELECT data_version, watermark FROM materializations WHERE version_id = ? "
                "ORDER BY commit_id DESC LIMIT 1",
                (version_id,),
            ).fetchone()
            current = None if row is None else int(row[0])
            if current != base_data_version:
                view, number = db.execute(
                    "SELECT view, version FROM view_versions WHERE id = ?", (version_id,)
                ).fetchone()
                raise ConflictError(
                    f"another materialization of feature view '{view}' v{number} committed data version {current} "
                    f"while this one started from {base_data_version}; nothing was committed, run it again"
                )
            start, end = to_micros(window[0]), to_micros(window[1])
            previous = None if row is None or row[1] is None else int(row[1])
            # A push adds rows but does not move the watermark of windowed materializations.
            watermark = previous if mode == "push" else (end if previous is None else max(end, previous))
            commit = self._new_commit(db, "push" if mode == "push" else "materialize", summary, None)
            db.execute(
                "INSERT INTO materializations (commit_id, version_id, data_version, window_start, window_end, "
                "watermark, rows, mode, batch_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (commit, version_id, data_version, start, end, watermark, rows, mode, batch_digest),
            )
            # Read back inside the transaction: after it, another writer may already have committed.
            found = db.execute(
                f"SELECT {_MATERIALIZATION_COLUMNS} FROM materializations m JOIN commits c ON c.id = m.commit_id "
                "WHERE m.commit_id = ?",
                (commit,),
            ).fetchone()
            checkpoint("materialize.before_commit")
        return _materialization_from(found)


_VERSION_COLUMNS = (
    "v.id, v.view, v.version, v.fingerprint, v.code_hash, v.definition, v.schema, v.source_schema, "
    "v.source_text, v.location, v.commit_id"
)
_MATERIALIZATION_COLUMNS = (
    "m.commit_id, c.committed_at, m.version_id, m.data_version, m.window_start, m.window_end, m.watermark, "
    "m.rows, m.mode"
)


def _head(db: sqlite3.Connection, kind: str | None = None) -> int:
    """The newest commit (of that kind), 0 if none."""
    if kind is None:
        return int(db.execute("SELECT coalesce(max(id), 0) FROM commits").fetchone()[0])
    return int(db.execute("SELECT coalesce(max(id), 0) FROM commits WHERE kind = ?", (kind,)).fetchone()[0])


def _versions(db: sqlite3.Connection, view: str | None) -> list[ViewVersion]:
    query = f"SELECT {_VERSION_COLUMNS} FROM view_versions v"
    params: tuple[Any, ...] = ()
    if view is not None:
        query += " WHERE view = ?"
        params = (view,)
    return [_version_from(r) for r in db.execute(query + " ORDER BY v.id", params)]


def _version_from(row: tuple[Any, ...]) -> ViewVersion:
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


def _materialization_from(row: tuple[Any, ...]) -> Materialization:
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
    )
