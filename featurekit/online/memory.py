"""An in-memory online store for tests and notebooks (one process, nothing persisted)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from featurekit.online.base import Key, OnlineRows


class MemoryOnlineStore:
    """Dictionaries keyed by table and entity key; a lock makes each write atomic."""

    def __init__(self) -> None:
        self._tables: dict[str, tuple[list[str], dict[Key, tuple[Any, ...]]]] = {}
        self._lock = threading.Lock()

    def create_table(self, table: str, features: Sequence[str]) -> None:
        with self._lock:
            self._tables.setdefault(table, (list(features), {}))

    def write(self, table: str, rows: OnlineRows) -> int:
        return self.write_joint([(table, rows)])

    def write_joint(self, writes: Sequence[tuple[str, OnlineRows]]) -> int:
        written = 0
        with self._lock:
            # The tables are read under the lock: a copy taken before it would miss the rows of a
            # writer that swapped in its table meanwhile, and swapping ours in would drop them.
            swaps = []
            for table, rows in writes:
                features, data = self._tables[table]
                columns = [rows.columns[f] for f in features]
                staged = dict(data)
                for i, key in enumerate(rows.keys):
                    old = staged.get(key)
                    if old is not None and (old[0], old[1]) > (rows.event_us[i], rows.created_us[i]):
                        continue
                    staged[key] = (rows.event_us[i], rows.created_us[i], *(column[i] for column in columns))
                    written += 1
                swaps.append((table, (features, staged)))
            for table, entry in swaps:  # each whole, in order: a reader reading in reverse sees no mix
                self._tables[table] = entry
        return written

    def read_many(self, reads: Sequence[tuple[str, Sequence[str], Sequence[Key]]]) -> list[dict[Key, tuple[Any, ...]]]:
        return [self.read(table, features, keys) for table, features, keys in reads]

    def tables(self) -> dict[str, list[str]]:
        with self._lock:
            return {name: list(features) for name, (features, _) in self._tables.items()}

    def read(self, table: str, features: Sequence[str], keys: Sequence[Key]) -> dict[Key, tuple[Any, ...]]:
        entry = self._tables.get(table)
        if entry is None:
            return {}
        stored, data = entry
        positions = [stored.index(f) + 2 for f in features]
        found = {}
        for key in keys:
            row = data.get(key)
            if row is not None:
                found[key] = (row[0], row[1], *(row[p] for p in positions))
        return found

    def drop_table(self, table: str) -> None:
        with self._lock:
            self._tables.pop(table, None)

    def close(self) -> None:
        return None
