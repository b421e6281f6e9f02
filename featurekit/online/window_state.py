"""Online window state: each entity's recent events, as materialize and push write them.

A window view version's online state of an entity is its events a lookup can still need (Arrow
record batches of event time, created time when the source declares one, and the aggregated
columns, sorted by those times) in two parts, so that an incremental materialize or a push
writes in proportion to the new events, not to the window:

- the **base**, a row of the view version's table (:data:`COLUMNS`): the events as one record
  batch behind a header holding the base's generation (a random number drawn by each base write),
  and ``valid_from``, the instant from which the state answers exactly: it keeps every event with
  ``e >= valid_from - delay - longest window``;
- the **tail**, a row of the table's tail table (:func:`tail_table`, :data:`TAIL_COLUMNS`): the
  events appended since the base was written, with the base's generation, size and first event
  time. An append (:meth:`WindowStates.merge`) reads and rewrites the tails of the touched
  entities only.

A merge **compacts** an entity (writes a new base holding base, tail and new events, trimmed to
what lookups can need, and an empty tail) when its tail would outgrow ``max(TAIL_MIN, base / 2)``
events, or when its base holds events older than the trim horizon by more than half the longest
window: an entity's state holds at most about 1.5x the events of its longest window, plus a tail
of at most ``TAIL_MIN``. A state that would hold at most ``SMALL_STATE`` events (most entities)
is compacted too: rewriting it costs about what an append does, and its lookups then read no tail
to join. Rebuilds (re-materialized or backfilled windows) and first loads write
bases. Base and tail of a key are written together (:meth:`OnlineStore.write_joint`: one
transaction on SQLite and memory, one script call on Redis), base first (a merge's appends and
compactions are two writes: a kill in between leaves the online load pending, and the next run's
catch-up rebuilds those entities from the offline rows); a lookup reads the tail
first, then the base, and uses the tail only when its generation is the base's: a base written in
between (holding that tail's events) makes it ignore the tail, so no event counts twice or goes
missing, whatever the interleaving. The state's events are the stable sort by (time, created) of
base then tail, the same order compaction writes, so a lookup's values do not depend on when an
entity was compacted. A hot entity's joined base and tail are kept per process (:data:`JOINED`),
found by what fixes them (its base's generation, then its tail's bytes), so repeated lookups do
not copy its events again.

A base written by the one-part layout (no header) still reads, as a base with no tail; the first
merge touching such an entity compacts it into the two-part layout.

Rows are stamped with the registry commit that wrote them (stores keep the newer stamp), and
every window-state write runs under the view's writer lock, so a read-merge-write never races
another one.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from featurekit.online.base import NO_CREATED, Key, OnlineRows, OnlineStore
from featurekit.online.keys import encode_keys
from featurekit.online.loading import table_name
from featurekit.registry import ViewVersion
from featurekit.windows import NULL_CREATED_US, WindowSpec

EVENTS = "events"
VALID_FROM = "valid_from"
COLUMNS = [EVENTS, VALID_FROM]  # the online table's columns of a window view version (the bases)
TAIL = "tail"
BASE_GEN = "base_gen"
BASE_ROWS = "base_rows"
BASE_FROM = "base_from"
TAIL_COLUMNS = [TAIL, BASE_GEN, BASE_ROWS, BASE_FROM]  # the tail table's columns
ORDER = "__fk_o"  # event time, microseconds
CREATED = "__fk_c"  # created time, microseconds (null: the smallest value, so it sorts first)
BEFORE = "__fk_before"  # in a rebuild's events: the entity's newest event time before those read
EVER = -(2**63)  # valid_from of a state that holds every event of its entity
NEVER = 2**63 - 1  # base_from of an empty base
HEADER = b"fkwbase\x01"  # a two-part base: this, its generation (8 bytes), then the record batch
TAIL_MIN = 64  # a tail may hold this many events whatever its base's size
SMALL_STATE = 64  # a state of at most this many events is rewritten whole (no tail to read and join)


def tail_table(table: str) -> str:
    """The tail table of a window view version's online table (no view version's table ends so)."""
    return f"{table}_tail"


def state_schema(spec: WindowSpec, schema: pa.Schema, created: bool) -> pa.Schema:
    """The layout of one entity's events: time, created time (if the source has one), the aggregated columns."""
    fields = [pa.field(ORDER, pa.int64())] + ([pa.field(CREATED, pa.int64())] if created else [])
    return pa.schema(fields + [schema.field(c) for c in spec.columns])


def layout_of(version: ViewVersion) -> pa.Schema:
    """The stored events' layout of a window view version."""
    created = version.definition["source"]["created_timestamp_field"] is not None
    return state_schema(WindowSpec.of(version.definition), version.schema, created)


def read_base(blob: bytes, layout: pa.Schema) -> tuple[int | None, pa.RecordBatch]:
    """A stored base: its generation (None: written by the one-part layout) and its events."""
    if blob[:8] == HEADER:
        generation = int.from_bytes(blob[8:16], "big", signed=True)
        return generation, pa.ipc.read_record_batch(pa.py_buffer(blob).slice(16), layout)
    return None, pa.ipc.read_record_batch(pa.py_buffer(blob), layout)


def read_tail(row: tuple[Any, ...] | None, generation: int | None, layout: pa.Schema) -> pa.RecordBatch | None:
    """A stored tail row's events if they belong to the base of ``generation`` (None: no tail to add)."""
    if row is None or generation is None or row[3] != generation or not row[2]:
        return None
    return pa.ipc.read_record_batch(pa.py_buffer(row[2]), layout)


class JoinedStates:
    """Recently joined states of hot entities (base and tail as one batch), shared by a process's lookups.

    Joining a hot entity's base and tail copies its whole base (0.09 ms CPU for 125k events and
    two columns), on every lookup, for a tail that changes only when a materialize or a push
    appends. An entry is found by the table, entity and base generation (drawn anew by every
    base write, so a compaction or rebuild never finds an old entry) and used only when its tail
    bytes equal the tail just read (compared, not hashed: a hot entity's tail is tens of KB), so
    an append never finds one either; a newer tail replaces the entry. Only states whose base
    holds at least ``min_rows`` events are kept (smaller ones join in microseconds); the least
    recently used go first once the kept batches and tails exceed ``budget_bytes``. Thread-safe.
    """

    def __init__(self, budget_bytes: int, min_rows: int) -> None:
        self.budget_bytes = budget_bytes
        self.min_rows = min_rows
        self._entries: OrderedDict[Hashable, tuple[bytes, pa.RecordBatch, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, tail: bytes) -> pa.RecordBatch | None:
        """The state kept for ``key`` if it was joined with ``tail``."""
        with self._lock:
            found = self._entries.get(key)
            if found is None or found[0] != tail:
                return None
            self._entries.move_to_end(key)
            return found[1]

    def put(self, key: Hashable, tail: bytes, batch: pa.RecordBatch) -> None:
        """Keep ``batch``, the state of ``key`` joined with ``tail`` (in place of an older tail's)."""
        size = batch.nbytes + len(tail)
        if size > self.budget_bytes // 4:  # one state never pushes out most of the others
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self._entries[key] = (tail, batch, size)
            self._bytes += size
            while self._bytes > self.budget_bytes:
                _, (_, _, freed) = self._entries.popitem(last=False)
                self._bytes -= freed

    @property
    def nbytes(self) -> int:
        """What the kept entries hold (their batches and keys), at most ``budget_bytes``."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


JOINED = JoinedStates(budget_bytes=64 * 1024 * 1024, min_rows=4096)


def state_of(
    base: tuple[Any, ...],
    tail: tuple[Any, ...] | None,
    layout: pa.Schema,
    since_us: int,
    entity: Hashable = None,
) -> pa.RecordBatch:
    """An entity's events from its base row and tail row (read in that order: tail first), those
    before ``since_us`` possibly left out (what no lookup at the instant asked can see).

    ``entity`` (hashable, unique per table and entity, e.g. ``(table, encoded key)``) lets a hot
    entity's joined state come from :data:`JOINED`; None joins every time.
    """
    generation, events = read_base(base[2], layout)
    extra = read_tail(tail, generation, layout)
    if extra is None:
        return events
    if not events.num_rows:
        return extra
    if entity is not None and events.num_rows >= JOINED.min_rows:
        assert tail is not None  # (read_tail found events in it)
        tail_bytes = bytes(tail[2])
        key = (entity, generation)
        found = JOINED.get(key, tail_bytes)
        if found is None:  # the whole base: the events before since_us are outside every window anyway
            found = _join(events, extra, layout)
            JOINED.put(key, tail_bytes, found)
        return found.slice(int(found.column(0).to_numpy().searchsorted(since_us, "left")))
    order = events.column(0).to_numpy()
    events = events.slice(int(order.searchsorted(since_us, "left")))
    if not events.num_rows:
        return extra
    return _join(events, extra, layout)


def _join(events: pa.RecordBatch, extra: pa.RecordBatch, layout: pa.Schema) -> pa.RecordBatch:
    """Base events then tail events, as one batch sorted by (time, created), ties kept in order."""
    joined = pa.RecordBatch.from_arrays(
        [_joined(a, b) for a, b in zip(events.columns, extra.columns, strict=True)], schema=layout
    )
    if _after(events, extra, layout):  # an append after the base (the common case): already sorted
        return joined
    return joined.take(pa.array(_stable_order(joined, layout)))


def _joined(first: pa.Array, second: pa.Array) -> pa.Array:
    """Two arrays end to end: numbers through numpy (the process heap, which keeps a hot entity's
    megabytes between lookups, see :mod:`featurekit.online.heap`), anything else through Arrow."""
    if (
        not first.null_count
        and not second.null_count
        and (pa.types.is_integer(first.type) or pa.types.is_floating(first.type))
    ):
        return pa.array(np.concatenate([first.to_numpy(), second.to_numpy()]), first.type)
    return pa.concat_arrays([first, second])


def _after(first: pa.RecordBatch, second: pa.RecordBatch, layout: pa.Schema) -> bool:
    """Whether ``second``'s first event sorts at or after ``first``'s last, by (time, created)."""
    last = first.num_rows - 1
    a = first.column(0)[last].as_py(), second.column(0)[0].as_py()
    if a[0] != a[1]:
        return bool(a[1] > a[0])
    if CREATED not in layout.names:
        return True
    return bool(second.column(1)[0].as_py() >= first.column(1)[last].as_py())


def _stable_order(events: pa.RecordBatch | pa.Table, layout: pa.Schema) -> np.ndarray:
    """Positions sorting ``events`` by (time, created), ties kept in place."""
    made = [events.column(CREATED).to_numpy()] if CREATED in layout.names else []
    found: np.ndarray = np.lexsort((*made, events.column(ORDER).to_numpy()))
    return found


@dataclass(frozen=True)
class StateWrite:
    """One write of window states: how far back it keeps events, and its stamp."""

    trim_at: int | None  # drop the events no lookup at or after this instant can need (None: keep all)
    stamp: int  # the registry commit of the write (stores keep the newer stamp)


class WindowStates:
    """Reads, merges and writes the online window states of one window view version.

    ``valid_from`` is tight: a state that dropped events answers from just after the newest
    dropped event stops mattering (its time + delay + the longest window), and one that dropped
    nothing answers at any instant.
    """

    def __init__(self, version: ViewVersion) -> None:
        definition = version.definition
        self.spec = WindowSpec.of(definition)
        self.span = self.spec.delay_us + self.spec.longest_us  # how far back a lookup looks
        self.layout = layout_of(version)
        self.join_keys = list(definition["join_keys"])
        self.timestamp_field = definition["source"]["timestamp_field"]
        self.created_field = definition["source"]["created_timestamp_field"]
        self.table = table_name(version.view, version.version)
        self.tail = tail_table(self.table)

    def events(self, rows: pa.Table) -> pa.Table:
        """Output rows of the view function as events: keys, time and created time (microseconds), columns."""
        order = pc.cast(pc.cast(rows.column(self.timestamp_field), pa.timestamp("us", "UTC")), pa.int64())
        columns = {k: rows.column(k) for k in self.join_keys}
        columns[ORDER] = order
        if self.created_field is not None:
            micros = pc.cast(pc.cast(rows.column(self.created_field), pa.timestamp("us", "UTC")), pa.int64())
            columns[CREATED] = pc.fill_null(micros, NULL_CREATED_US)
        columns.update({c: rows.column(c) for c in self.spec.columns})
        return pa.table(columns)

    def _keys(self, events: pa.Table) -> list[Key]:
        key_columns = [events.column(k) for k in self.join_keys]
        return encode_keys(key_columns, [c.type for c in key_columns])

    def _create(self, store: OnlineStore) -> None:
        store.create_table(self.table, COLUMNS)
        store.create_table(self.tail, TAIL_COLUMNS)

    def merge(self, store: OnlineStore, events: pa.Table, write: StateWrite) -> int:
        """Merge ``events`` into the stored states of their entities (the caller holds the view's lock).

        Entities whose tails stay small get the events appended to their tails (only tails are
        read and written); the others are compacted. Returns how many entities' states were written.
        """
        encoded = self._keys(events)
        keys = sorted(set(encoded))
        self._create(store)
        owners = _positions(keys, encoded)
        new = events.select(self.layout.names).cast(self.layout)
        tails = store.read(self.tail, TAIL_COLUMNS, keys)
        arriving = np.bincount(owners, minlength=len(keys))
        horizon = None if write.trim_at is None else write.trim_at - self.span
        appended: list[int] = []
        compacted: list[int] = []
        stored_tails: dict[int, pa.RecordBatch] = {}
        for index, key in enumerate(keys):
            row = tails.get(key)
            if row is None:  # a new entity, or a base of the one-part layout
                compacted.append(index)
                continue
            tail = pa.ipc.read_record_batch(pa.py_buffer(row[2]), self.layout) if row[2] else None
            if tail is not None:
                stored_tails[index] = tail
            size = (tail.num_rows if tail is not None else 0) + int(arriving[index])
            stale = horizon is not None and int(row[5]) < horizon - self.spec.longest_us // 2
            small = int(row[4]) + size <= SMALL_STATE  # rewriting it costs what an append would
            if size > max(TAIL_MIN, int(row[4]) // 2) or stale or small:
                compacted.append(index)
            else:
                appended.append(index)
        written = self._append(
            store, keys, appended, tails=tails, stored=stored_tails, new=new, owners=owners, write=write
        )
        if compacted:
            written += self._compact(
                store, keys, compacted, tails=tails, stored=stored_tails, new=new, owners=owners, write=write
            )
        return written

    def _append(
        self,
        store: OnlineStore,
        keys: list[Key],
        chosen: list[int],
        *,
        tails: dict[Key, tuple[Any, ...]],
        stored: dict[int, pa.RecordBatch],
        new: pa.Table,
        owners: np.ndarray,
        write: StateWrite,
    ) -> int:
        """New tails of the ``chosen`` keys (indexes into ``keys``): each old tail, then its new events, sorted."""
        if not chosen:
            return 0
        position = np.full(len(keys), -1, dtype=np.int64)
        position[chosen] = np.arange(len(chosen))
        parts, owner_parts = _parts(chosen, stored, position)
        mine = position[owners] >= 0
        parts.append(new.filter(pa.array(mine)))
        owner_parts.append(position[owners][mine])
        blobs = self._blobs(pa.concat_tables(parts), np.concatenate(owner_parts), len(chosen))
        rows = [tails[keys[i]] for i in chosen]
        return store.write(
            self.tail,
            OnlineRows(
                keys=[keys[i] for i in chosen],
                event_us=[write.stamp] * len(chosen),
                created_us=[NO_CREATED] * len(chosen),
                columns={
                    TAIL: blobs,
                    BASE_GEN: [r[3] for r in rows],
                    BASE_ROWS: [r[4] for r in rows],
                    BASE_FROM: [r[5] for r in rows],
                },
            ),
        )

    def _compact(
        self,
        store: OnlineStore,
        keys: list[Key],
        chosen: list[int],
        *,
        tails: dict[Key, tuple[Any, ...]],
        stored: dict[int, pa.RecordBatch],
        new: pa.Table,
        owners: np.ndarray,
        write: StateWrite,
    ) -> int:
        """New bases of the ``chosen`` keys: base, then tail, then new events (an empty tail each)."""
        chosen_keys = [keys[i] for i in chosen]
        bases = store.read(self.table, COLUMNS, chosen_keys)
        position = np.full(len(keys), -1, dtype=np.int64)
        position[chosen] = np.arange(len(chosen))
        valid = np.full(len(chosen), EVER, dtype=np.int64)  # EVER: nothing known before these events
        parts: list[pa.Table] = []
        owner_parts: list[np.ndarray] = []
        current: dict[int, pa.RecordBatch] = {}
        for at, key in enumerate(chosen_keys):
            row = bases.get(key)
            if row is None:
                continue
            valid[at] = int(row[3])
            generation, base = read_base(row[2], self.layout)
            if base.num_rows:
                parts.append(pa.Table.from_batches([base], schema=self.layout))
                owner_parts.append(np.full(base.num_rows, at, dtype=np.int64))
            tail_row = tails.get(key)
            if tail_row is not None and generation is not None and tail_row[3] == generation:
                tail = stored.get(chosen[at])
                if tail is not None:
                    current[chosen[at]] = tail
        more, more_owners = _parts(chosen, current, position)
        mine = position[owners] >= 0
        table = pa.concat_tables([*parts, *more, new.filter(pa.array(mine))])
        owner_index = np.concatenate([*owner_parts, *more_owners, position[owners][mine]])
        return self._write(store, table, owner_index, chosen_keys, valid_from=valid, write=write)

    def rebuild(self, store: OnlineStore, events: pa.Table, write: StateWrite) -> int:
        """Replace the states of the entities in ``events`` (from the engine's ``window_events``) by them.

        Every touched entity gets a state, an empty one when none of its events is left; its
        ``valid_from`` follows from ``__fk_before``, its newest event older than what was read.
        """
        encoded = self._keys(events)
        keys = sorted(set(encoded))
        owner_index = _positions(keys, encoded)
        valid = np.full(len(keys), EVER, dtype=np.int64)
        before = events.column(BEFORE)
        if before.null_count < len(before):
            known = before.is_valid().to_numpy(zero_copy_only=False)
            dropped = pc.fill_null(before, 0).to_numpy()
            valid[owner_index[known]] = dropped[known] + self.span + 1
        present = pc.is_valid(events.column(ORDER)).to_numpy(zero_copy_only=False)
        self._create(store)
        table = events.filter(pa.array(present)).select(self.layout.names).cast(self.layout)
        return self._write(store, table, owner_index[present], keys, valid_from=valid, write=write)

    def _write(
        self,
        store: OnlineStore,
        table: pa.Table,
        owner_index: np.ndarray,
        keys: list[Key],
        *,
        valid_from: np.ndarray,
        write: StateWrite,
    ) -> int:
        """New bases for ``keys`` (sorted: stores keep a B-tree on the key, and in-order inserts are
        twice as fast), each with an empty tail: its events sorted by (time, created), those no
        lookup can need dropped. Returns how many entities' states were written.

        ``owner_index`` gives each event's position in ``keys``; ``valid_from`` is per key.
        """
        if not keys:
            return 0
        order = table.column(ORDER).to_numpy()
        if write.trim_at is not None:
            drop = order < write.trim_at - self.span
            if drop.any():
                newest_dropped = np.full(len(keys), EVER, dtype=np.int64)
                np.maximum.at(newest_dropped, owner_index[drop], order[drop])
                raised = np.where(newest_dropped == EVER, EVER, newest_dropped + self.span + 1)
                valid_from = np.maximum(valid_from, raised)
                table = table.filter(pa.array(~drop))
                owner_index = owner_index[~drop]
        generation = secrets.randbits(63)
        header = HEADER + generation.to_bytes(8, "big", signed=True)
        whole, bounds = self._sorted(table, owner_index, len(keys))
        sizes = np.diff(bounds)
        firsts = whole.column(0).to_numpy()
        blobs = [b"".join((header, whole.slice(int(bounds[i]), int(sizes[i])).serialize())) for i in range(len(keys))]
        stamps = [write.stamp] * len(keys)
        unset = [NO_CREATED] * len(keys)
        base = OnlineRows(
            keys=keys, event_us=stamps, created_us=unset, columns={EVENTS: blobs, VALID_FROM: valid_from.tolist()}
        )
        tail = OnlineRows(
            keys=keys,
            event_us=stamps,
            created_us=unset,
            columns={
                TAIL: [b""] * len(keys),
                BASE_GEN: [generation] * len(keys),
                BASE_ROWS: sizes.tolist(),
                BASE_FROM: [int(firsts[bounds[i]]) if sizes[i] else NEVER for i in range(len(keys))],
            },
        )
        return store.write_joint([(self.table, base), (self.tail, tail)]) // 2

    def _sorted(self, table: pa.Table, owner_index: np.ndarray, count: int) -> tuple[pa.RecordBatch, np.ndarray]:
        """``table``'s events sorted by (owner, time, created), ties kept in place, and each owner's bounds."""
        made = [table.column(CREATED).to_numpy()] if CREATED in self.layout.names else []
        sort = np.lexsort((*made, table.column(ORDER).to_numpy(), owner_index))
        table = table.take(pa.array(sort)).combine_chunks()
        bounds = np.searchsorted(owner_index[sort], np.arange(count + 1))
        batches = table.to_batches()
        whole = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=self.layout)
        return whole, bounds

    def _blobs(self, table: pa.Table, owner_index: np.ndarray, count: int) -> list[bytes]:
        """Each owner's events as one serialized record batch, sorted."""
        whole, bounds = self._sorted(table, owner_index, count)
        return [
            whole.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])).serialize().to_pybytes() for i in range(count)
        ]


def _parts(
    chosen: list[int], stored: dict[int, pa.RecordBatch], position: np.ndarray
) -> tuple[list[pa.Table], list[np.ndarray]]:
    """The stored tails of the ``chosen`` keys as tables, with their owners' positions in ``chosen``."""
    parts: list[pa.Table] = []
    owners: list[np.ndarray] = []
    for index in chosen:
        tail = stored.get(index)
        if tail is not None and tail.num_rows:
            parts.append(pa.Table.from_batches([tail]))
            owners.append(np.full(tail.num_rows, position[index], dtype=np.int64))
    return parts, owners


def _positions(keys: list[Key], encoded: list[Key]) -> np.ndarray:
    """Each encoded key's index in ``keys`` (which holds every one of them), by hash lookup."""
    found: np.ndarray = pd.Index(keys).get_indexer(pd.Index(encoded)).astype(np.int64)
    return found
