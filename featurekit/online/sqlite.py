"""The embedded online store: one SQLite file in WAL mode.

WAL lets one writer and many readers (threads or processes) work at once: a materialization's
write is one transaction, and lookups keep reading the previous snapshot until it commits. Each
thread gets its own connection. Table and column names are validated names, quoted; values are
always bound parameters.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from featurekit import faults
from featurekit.errors import storage_errors
from featurekit.names import quote
from featurekit.online.base import Key, OnlineRows

_CHUNK = 900  # keys per IN (...) query, under SQLite's default variable limit


class SqliteOnlineStore:
    """Latest rows per entity in SQLite tables ``(key PRIMARY KEY, event_us, created_us, features...)``."""

    def __init__(self, path: Path, busy_timeout_s: float = 60.0, mmap_mb: int = 1024) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self.mmap_bytes = mmap_mb * 1024 * 1024
        self._local = threading.local()
        self._queries: dict[tuple[str, tuple[str, ...], int], str] = {}
        with storage_errors(f"opening the online store {path}", "nothing was written"):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._connect().execute("PRAGMA journal_mode=WAL")

    def _connect(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=True)
            con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
            # Reads of the database file through a memory map instead of a read() per page: a lookup
            # of 100 random entities among 1M took 0.42 ms instead of 0.77 ms. Address space only;
            # the OS page cache holds the pages either way. 0 turns it off (network file systems).
            con.execute(f"PRAGMA mmap_size={int(self.mmap_bytes)}")
            self._local.con = con
        return con

    def create_table(self, table: str, features: Sequence[str]) -> None:
        columns = ", ".join(quote(f) for f in features)
        with storage_errors(f"creating online table {table} in {self.path}", "nothing was written"):
            self._connect().execute(
                f"CREATE TABLE IF NOT EXISTS {quote(table)} (__fk_key PRIMARY KEY, __fk_event INTEGER NOT NULL, "
                f"__fk_created INTEGER NOT NULL, {columns}) WITHOUT ROWID"
            )

    def write(self, table: str, rows: OnlineRows) -> int:
        if not len(rows):
            return 0
        con = self._connect()
        sql, data = self._statement(table, rows)
        before = con.total_changes
        with storage_errors(f"writing online table {table} in {self.path}", "nothing was written to it"):
            self._upsert(con, [(sql, data)])
        return con.total_changes - before

    def write_joint(self, writes: Sequence[tuple[str, OnlineRows]]) -> int:
        statements = [self._statement(table, rows) for table, rows in writes if len(rows)]
        if not statements:
            return 0
        con = self._connect()
        before = con.total_changes
        tables = ", ".join(table for table, _ in writes)
        with storage_errors(f"writing online tables {tables} in {self.path}", "nothing was written to them"):
            self._upsert(con, statements)  # one transaction: each key's rows land together
        return con.total_changes - before

    @staticmethod
    def _statement(table: str, rows: OnlineRows) -> tuple[str, Iterable[tuple[Any, ...]]]:
        """The newest-only upsert of ``rows`` into ``table``, and its parameters."""
        names = list(rows.columns)
        columns = ", ".join(quote(n) for n in names)
        marks = ", ".join("?" for _ in range(len(names) + 3))
        updates = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names)
        sql = (
            f"INSERT INTO {quote(table)} (__fk_key, __fk_event, __fk_created, {columns}) VALUES ({marks}) "
            f"ON CONFLICT (__fk_key) DO UPDATE SET __fk_event = excluded.__fk_event, "
            f"__fk_created = excluded.__fk_created, {updates} "
            f"WHERE (excluded.__fk_event, excluded.__fk_created) >= (__fk_event, __fk_created)"
        )
        data: Iterable[tuple[Any, ...]] = zip(
            rows.keys, rows.event_us, rows.created_us, *rows.columns.values(), strict=True
        )
        return sql, data

    @staticmethod
    def _upsert(con: sqlite3.Connection, statements: Sequence[tuple[str, Iterable[tuple[Any, ...]]]]) -> None:
        con.execute("BEGIN IMMEDIATE")
        try:
            for sql, data in statements:
                rest = data
                if faults.armed():  # the crash tests need a moment with half of the rows written
                    staged = list(data)
                    con.executemany(sql, staged[: len(staged) // 2])
                    faults.checkpoint("online.mid_upsert")
                    rest = staged[len(staged) // 2 :]
                con.executemany(sql, rest)
        except BaseException:
            with suppress(sqlite3.Error):  # a failing disk may fail the rollback too: keep the first error
                if con.in_transaction:
                    con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def _query(self, table: str, features: Sequence[str], count: int) -> str:
        cache_key = (table, tuple(features), count)
        sql = self._queries.get(cache_key)
        if sql is None:
            columns = "".join(f", {quote(f)}" for f in features)
            where = "__fk_key = ?" if count == 1 else f"__fk_key IN ({', '.join('?' * count)})"
            sql = f"SELECT __fk_key, __fk_event, __fk_created{columns} FROM {quote(table)} WHERE {where}"
            self._queries[cache_key] = sql
        return sql

    def read(self, table: str, features: Sequence[str], keys: Sequence[Key]) -> dict[Key, tuple[Any, ...]]:
        con = self._connect()
        found: dict[Key, tuple[Any, ...]] = {}
        try:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                for row in con.execute(self._query(table, features, len(chunk)), chunk):
                    found[row[0]] = row[1:]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}  # nothing materialized yet: every entity is missing
            raise
        return found

    def read_many(self, reads: Sequence[tuple[str, Sequence[str], Sequence[Key]]]) -> list[dict[Key, tuple[Any, ...]]]:
        return [self.read(table, features, keys) for table, features, keys in reads]

    def tables(self) -> dict[str, list[str]]:
        con = self._connect()
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        found = {}
        for name in names:
            columns = [r[0] for r in con.execute("SELECT name FROM pragma_table_info(?)", (name,))]
            found[name] = [c for c in columns if not c.startswith("__fk_")]
        return found

    def drop_table(self, table: str) -> None:
        self._connect().execute(f"DROP TABLE IF EXISTS {quote(table)}")

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
