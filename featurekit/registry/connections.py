"""Connections to the registry file: one per thread, and the read and write transactions on them.

SQLite connections must not run two transactions at once, so threads never share one: each thread
opens its own on its first call (lazily, through a ``mode=rw`` URI of the resolved path, so that it
finds the very file opened first whatever the working directory is by then, and never creates an
empty registry in its place). Threads then serialize their writes through SQLite's file locks,
exactly as processes do.

A read is one read transaction (one consistent snapshot, however many queries it runs); a write is
one ``BEGIN IMMEDIATE`` transaction, which takes the write lock up front and waits for it up to
:data:`~featurekit.registry.schema.BUSY_TIMEOUT_S`. Every SQLite failure leaves here as a
featurekit error: :class:`StorageError` for a failing disk, :class:`ConflictError` for a lock held
past the timeout, :class:`RegistryError` for the rest.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from featurekit.errors import ConflictError, FeaturekitError, RegistryError, storage_errors
from featurekit.registry import schema


class Connections:
    """The registry file's connections, one per thread, all closed by :meth:`close`."""

    def __init__(self, path: Path) -> None:
        """Open the file (creating it, or bringing an older format up to date, if needed)."""
        self.path = path
        self._local = threading.local()  # .db: this thread's connection
        self._lock = threading.Lock()  # guards _open and _closed
        self._open: dict[threading.Thread, sqlite3.Connection] = {}
        self._closed = False
        try:
            with storage_errors(f"opening the registry {path}"):
                path.parent.mkdir(parents=True, exist_ok=True)
                self._uri = path.resolve().as_uri() + "?mode=rw"
                db = self._register(schema.connect(str(path), uri=False))
                # Opening an up-to-date registry writes nothing (and takes no write lock).
                if schema.schema_version(db) != schema.SCHEMA_VERSION:
                    schema.enable_wal(db)
                    with self.write() as tx:
                        schema.migrate(tx, path)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise RegistryError(
                f"registry {path} is unreadable ({exc}); restore it from a backup or move it away "
                "and re-apply (materialized data under the store is kept)"
            ) from exc
        except BaseException:
            self.close()
            raise

    def _register(self, db: sqlite3.Connection) -> sqlite3.Connection:
        """Make ``db`` this thread's connection (and close those of threads that ended)."""
        with self._lock:
            if self._closed:
                db.close()
                raise self._closed_error()
            # Threads that ended cannot use their connections again: close them now, so that a
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
            if not self.path.exists():
                raise RegistryError(
                    f"the registry {self.path} was moved or deleted while open; put it back or open the feature "
                    "store again (which starts an empty registry)"
                )
            with self._errors("opening", "nothing was read or written"):
                db = self._register(schema.connect(self._uri, uri=True))
        return db

    def _closed_error(self) -> RegistryError:
        return RegistryError(f"the registry {self.path} was closed; open the feature store again to use it")

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
    def read(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection in a read transaction: one snapshot, even while writers commit."""
        db = self._connection()
        with self._errors("reading", "nothing was changed"):
            _end_leftover(db)
            db.execute("BEGIN")
            try:
                yield db
            finally:
                with suppress(sqlite3.Error):  # a read changes nothing; a failed end is undone on the next call
                    db.execute("ROLLBACK")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection in a write transaction, committed if the block returns."""
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
    def _errors(self, doing: str, consequence: str) -> Iterator[None]:
        """Report SQLite failures as featurekit errors: a failing disk, a lock held too long, the rest."""
        try:
            with storage_errors(f"{doing} the registry {self.path}", consequence):
                yield
        except FeaturekitError:
            raise
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
                raise ConflictError(
                    f"the registry {self.path} stayed locked by another writer for over "
                    f"{schema.BUSY_TIMEOUT_S} s ({exc}); {consequence}, run the same command again"
                ) from exc
            raise RegistryError(
                f"{doing} the registry {self.path} failed ({exc}); {consequence}. Run `featurekit verify`"
            ) from exc


def _end_leftover(db: sqlite3.Connection) -> None:
    """Roll back a transaction that a failed COMMIT or ROLLBACK left open on this connection."""
    if db.in_transaction:
        db.execute("ROLLBACK")
