"""The online store protocol, and what every implementation shares.

A store holds, per table (one table per view version), the newest row of each entity: its
encoded key, event time and created time (microseconds since the epoch; a null created time is
stored as :data:`NO_CREATED`, so it loses every tie) and its feature values. A store only persists
and looks up; which row is "newest" is decided by the offline engine before the write, and the store keeps it
only if it is at least as new as what it holds (event time, then created time).

Stores receive plain Python values: encoded keys, integers and feature tuples (a store's
:data:`Packer`, if it has one, also sees the same rows as the engine's Arrow table). They import
nothing of featurekit's definitions or configuration.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

NO_CREATED = -(2**63)

Key = int | str


def encode_key(parts: Sequence[Any]) -> Key:
    """One lookup key per entity: the value itself for a single key, a JSON array for several.

    JSON keeps composite keys unambiguous: (1, "23") and (12, "3") encode differently, unlike a
    concatenation. Callers have already rejected null parts and checked types.
    """
    if len(parts) == 1:
        value = parts[0]
        return value if isinstance(value, (int, str)) else json.dumps(value)
    return json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class OnlineRows:
    """Rows to write to one table: keys, times and feature columns, all as Python lists.

    ``packed``: the same rows already encoded for one kind of store by its :data:`Packer`, in
    parts that follow each other in row order (a materialization packs them beside its offline
    write, so that after the commit only the send remains). A store that does not recognise
    the parts, or finds them packed for other features, encodes the lists as usual.
    """

    keys: list[Key]
    event_us: list[int]
    created_us: list[int]
    columns: dict[str, list[Any]]
    packed: tuple[object, ...] = ()

    def __len__(self) -> int:
        return len(self.keys)


Packer = Callable[[Any, OnlineRows, Sequence[str]], object]
"""Encodes rows for one kind of store, for the given feature order: pure computation, no I/O.

It is given the engine's newest rows as an Arrow table too (the same rows, before they became
Python lists), from which a store can encode whole columns at once."""


class OnlineStore(Protocol):
    """What serving needs from an online store."""

    def create_table(self, table: str, features: Sequence[str]) -> None:
        """Create ``table`` (if missing) with the given feature columns."""

    def write(self, table: str, rows: OnlineRows) -> int:
        """Upsert rows that are at least as new as the stored ones; returns how many were written.

        Equal age (event time, then created time): the later write wins, also between two rows of
        one write. Every row is written whole; SQLite and memory make the write one transaction
        (readers see all of it or none), Redis each row (readers see each row old or new).
        """

    def write_joint(self, writes: Sequence[tuple[str, OnlineRows]]) -> int:
        """:meth:`write` into several tables, each key's rows landing together or not at all.

        Every table's rows hold the same keys in the same order (a window view's base and tail
        rows, :mod:`featurekit.online.window_state`). SQLite and memory write everything in one
        transaction; Redis writes each key's rows in one script call (atomic), a chunk of keys per
        call. A reader that reads these tables in the reverse order of ``writes`` (one read after the
        other, as :meth:`read_many` does) never sees a later table older than an earlier one.
        """

    def read(self, table: str, features: Sequence[str], keys: Sequence[Key]) -> dict[Key, tuple[Any, ...]]:
        """Rows of the found keys as ``(event_us, created_us, *feature values)``; a missing table reads empty."""

    def read_many(self, reads: Sequence[tuple[str, Sequence[str], Sequence[Key]]]) -> list[dict[Key, tuple[Any, ...]]]:
        """:meth:`read` of each ``(table, features, keys)``, in order: one lookup request over several tables.

        Redis answers it in one round trip whatever the number of tables; SQLite and memory read
        table by table.
        """

    def drop_table(self, table: str) -> None:
        """Remove a table (no error if it does not exist)."""

    def tables(self) -> dict[str, list[str]]:
        """Every table with its feature columns (what the integrity check compares with the registry)."""

    def close(self) -> None:
        """Release connections."""
