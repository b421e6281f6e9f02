"""Online window state: each entity's recent events, as materialize and push write them.

A window view version's online table holds, per entity, the events a lookup can still need (an
Arrow record batch of event time, created time when the source declares one, and the aggregated
columns, sorted by those times) and ``valid_from``, the instant from which that state answers
exactly: it keeps every event with ``e >= valid_from - delay - longest window``. A lookup at t
applies the window rule of :func:`featurekit.window_view` to those events
(:mod:`featurekit.online.window_values`), so values decay as time passes with no
materialization, and equal what a training set computes at t.

Rows are stamped with the registry commit that wrote them (stores keep the newer stamp), and
every window-state write runs under the view's writer lock, so a read-merge-write never races
another one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurekit.online.base import NO_CREATED, Key, OnlineRows, OnlineStore
from featurekit.online.keys import encode_keys
from featurekit.online.loading import table_name
from featurekit.registry import ViewVersion
from featurekit.windows import NULL_CREATED_US, WindowSpec

EVENTS = "events"
VALID_FROM = "valid_from"
COLUMNS = [EVENTS, VALID_FROM]  # the online table's columns of a window view version
ORDER = "__fk_o"  # event time, microseconds
CREATED = "__fk_c"  # created time, microseconds (null: the smallest value, so it sorts first)
BEFORE = "__fk_before"  # in a rebuild's events: the entity's newest event time before those read
EVER = -(2**63)  # valid_from of a state that holds every event of its entity


def state_schema(spec: WindowSpec, schema: pa.Schema, created: bool) -> pa.Schema:
    """The layout of one entity's events: time, created time (if the source has one), the aggregated columns."""
    fields = [pa.field(ORDER, pa.int64())] + ([pa.field(CREATED, pa.int64())] if created else [])
    return pa.schema(fields + [schema.field(c) for c in spec.columns])


def layout_of(version: ViewVersion) -> pa.Schema:
    """The stored events' layout of a window view version."""
    created = version.definition["source"]["created_timestamp_field"] is not None
    return state_schema(WindowSpec.of(version.definition), version.schema, created)


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

    def merge(self, store: OnlineStore, events: pa.Table, write: StateWrite) -> int:
        """Merge ``events`` into the stored states of their entities (the caller holds the view's lock)."""
        encoded = self._keys(events)
        store.create_table(self.table, COLUMNS)
        old = store.read(self.table, COLUMNS, list(dict.fromkeys(encoded)))
        parts = [events.select(self.layout.names).cast(self.layout)]
        owners: list[Key] = list(encoded)
        valid: dict[Key, int] = {}
        for key in dict.fromkeys(encoded):
            stored = old.get(key)
            valid[key] = EVER if stored is None else int(stored[3])  # None: nothing known before these events
            if stored is not None:
                previous = pa.ipc.read_record_batch(pa.py_buffer(stored[2]), self.layout)
                parts.append(pa.Table.from_batches([previous], schema=self.layout))
                owners.extend([key] * previous.num_rows)
        return self._write(store, pa.concat_tables(parts), owners, valid, write)

    def rebuild(self, store: OnlineStore, events: pa.Table, write: StateWrite) -> int:
        """Replace the states of the entities in ``events`` (from the engine's ``window_events``) by them.

        Every touched entity gets a state, an empty one when none of its events is left; its
        ``valid_from`` follows from ``__fk_before``, its newest event older than what was read.
        """
        encoded = self._keys(events)
        before = events.column(BEFORE).to_pylist()
        valid: dict[Key, int] = {}
        for key, dropped in zip(encoded, before, strict=True):
            valid[key] = EVER if dropped is None else int(dropped) + self.span + 1
        present = pc.is_valid(events.column(ORDER))
        kept = [k for k, p in zip(encoded, present.to_pylist(), strict=True) if p]
        store.create_table(self.table, COLUMNS)
        table = events.filter(present).select(self.layout.names).cast(self.layout)
        return self._write(store, table, kept, valid, write)

    def _write(
        self, store: OnlineStore, table: pa.Table, owners: list[Key], valid: dict[Key, int], write: StateWrite
    ) -> int:
        """One state row per entity of ``valid``: its events sorted by (time, created), the unneeded dropped."""
        if not valid:
            return 0
        # In key order: stores keep rows in a B-tree on the key, and inserting in order halves a
        # load's write time (as for row views' newest rows).
        keys = sorted(valid)
        valid = {k: valid[k] for k in keys}
        position = {k: i for i, k in enumerate(keys)}
        owner_index = np.fromiter((position[o] for o in owners), dtype=np.int64, count=len(owners))
        order = table.column(ORDER).to_numpy()
        valid_from = np.array(list(valid.values()), dtype=np.int64)
        if write.trim_at is not None:
            drop = order < write.trim_at - self.span
            if drop.any():
                newest_dropped = np.full(len(keys), EVER, dtype=np.int64)
                np.maximum.at(newest_dropped, owner_index[drop], order[drop])
                raised = np.where(newest_dropped == EVER, EVER, newest_dropped + self.span + 1)
                valid_from = np.maximum(valid_from, raised)
                table = table.filter(pa.array(~drop))
                owner_index = owner_index[~drop]
                order = order[~drop]
        made = [table.column(CREATED).to_numpy()] if CREATED in self.layout.names else []
        sort = np.lexsort((*made, order, owner_index))
        table = table.take(pa.array(sort)).combine_chunks()
        owner_index = owner_index[sort]
        bounds = np.searchsorted(owner_index, np.arange(len(keys) + 1))
        batches = table.to_batches()
        whole = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=self.layout)
        blobs = [
            whole.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])).serialize().to_pybytes()
            for i in range(len(keys))
        ]
        rows = OnlineRows(
            keys=keys,
            event_us=[write.stamp] * len(keys),
            created_us=[NO_CREATED] * len(keys),
            columns={EVENTS: blobs, VALID_FROM: valid_from.tolist()},
        )
        return store.write(self.table, rows)
