"""The rows of an in-memory table that can be their entity's newest row, found with plain integers.

"Newest" (:func:`featurekit.offline.duckdb_sql.order_key`) compares the event time, then the
created time (null loses), then the features one by one. Comparing all of that as one struct per
row is what made the engine's ``newest_rows`` cost 0.3-0.45 CPU seconds per million rows; nearly
always the first two fields decide. So this module keeps, per entity, only the rows whose (event,
created) is the entity's greatest, with numpy over the columns' integers: a few passes of
``np.maximum.at`` over per-row entity codes. An entity left with one such row has its newest row;
only an entity with several (an exact tie of event and created time) needs the full comparison,
over those rows alone. The engine runs that comparison (see ``DuckDBEngine.newest_rows``), so the
result is the same row by construction: every row the full comparison could pick is kept.

The integers compared are the columns' stored values, which order and equal exactly as the engine
compares the timestamps. Where that is not certain (keys of a type grouped otherwise, such as
floats, where -0.0 equals 0.0; a nanosecond created time, which the engine rounds to microseconds;
instants near the ends of int64), :func:`candidate_rows` returns ``None`` and the engine compares
every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurekit.offline.engine import ViewInput

_INT64_MIN = np.iinfo(np.int64).min
_LIMIT = 1 << 62  # instants beyond it (in microseconds) are the engine's infinities, or near them
_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1}
_DENSE_SLACK = 1 << 16  # an integer key spanning at most 2 x rows + this is its own code (no hashing)


@dataclass(frozen=True)
class Candidates:
    """Row indices of a table: those alone in their entity, and those of entities with a tie."""

    single: np.ndarray  # each the only candidate of its entity: its newest row
    tied: np.ndarray  # the candidates of entities with several: the full comparison decides


def newest_candidates(rows: pa.Table, view: ViewInput) -> tuple[pa.Table, pa.Table] | None:
    """The columns ``newest_rows`` reads of ``rows``' candidates: those alone in their entity (in
    code order), and those of entities with an exact tie; ``None``: compare every row instead."""
    found = candidate_rows(rows, view.join_keys, view.timestamp_field, view.created_field)
    if found is None:
        return None
    needed = [*view.join_keys, view.timestamp_field, *([view.created_field] if view.created_field else [])]
    needed += [c for c, _ in view.features if c not in needed]
    narrow = rows.select(needed)
    return narrow.take(found.single), narrow.take(found.tied)


def candidate_rows(
    table: pa.Table, join_keys: list[str], timestamp_field: str, created_field: str | None
) -> Candidates | None:
    """The candidates for each entity's newest row among ``table``'s rows with no null key part.

    ``None`` when the columns are not ones whose stored integers compare as the engine does.
    """
    if not table.num_rows:
        return None
    event = table.column(timestamp_field)
    if not _plain_instants(event, event=True):
        return None
    created = table.column(created_field) if created_field else None
    if created is not None and not _plain_instants(created, event=False):
        return None
    keys = [table.column(k) for k in join_keys]
    if not all(_groupable(k.type) for k in keys):
        return None
    rows = np.arange(table.num_rows, dtype=np.int64)
    if any(k.null_count for k in keys):
        valid = np.logical_and.reduce([k.is_valid().to_numpy(zero_copy_only=False) for k in keys])
        rows = rows[valid]
        if not len(rows):
            return Candidates(rows, rows)
        indices = pa.array(rows)
        keys = [k.take(indices) for k in keys]
        event, created = event.take(indices), created.take(indices) if created is not None else None
    coded = _codes(keys)
    if coded is None:
        return None
    codes, groups = coded
    at = _greatest(codes, groups, _integers(event), None)
    if created is not None:
        at = _greatest(codes, groups, pc.fill_null(created.cast(pa.int64()), _INT64_MIN).to_numpy(), at)
    counts = np.bincount(codes[at], minlength=groups)
    alone = counts[codes[at]] == 1
    # The single rows in code order (the keys' order, for integer keys): the engine's ORDER BY of
    # rows already in order costs half as much (medium: 16 ms instead of 32).
    slots = np.full(groups, -1, dtype=np.int64)
    slots[codes[at[alone]]] = at[alone]
    return Candidates(rows[slots[slots >= 0]], rows[at[~alone]])


def _greatest(codes: np.ndarray, groups: int, values: np.ndarray, among: np.ndarray | None) -> np.ndarray:
    """The rows (of ``among``, default all) whose value is the greatest of their code's rows there."""
    if among is not None:
        codes, values = codes[among], values[among]
    best = np.full(groups, _INT64_MIN, dtype=np.int64)
    np.maximum.at(best, codes, values)
    hits = np.flatnonzero(values == best[codes])
    return hits if among is None else among[hits]


def _integers(column: pa.ChunkedArray) -> np.ndarray:
    values: np.ndarray = column.cast(pa.int64()).to_numpy()
    return values


def _plain_instants(column: pa.ChunkedArray, *, event: bool) -> bool:
    """Whether the stored integers of a timestamp column order and equal as the engine's instants.

    The event time is compared as it is (any unit); the created time as a microsecond instant
    (a nanosecond one is rounded first, so two stored values can be one instant). Both must stay
    clear of the ends of int64, where the engine's infinities are, and the event time has no null.
    """
    dtype = column.type
    if not pa.types.is_timestamp(dtype) or (event and column.null_count):
        return False
    scale = _MICROS.get(dtype.unit)
    if scale is None and not event:
        return False
    if column.null_count == len(column):
        return True
    low, high = (int(v.as_py()) * (scale or 1) for v in pc.min_max(column.cast(pa.int64())).values())
    return low > -_LIMIT and high < _LIMIT


def _groupable(dtype: pa.DataType) -> bool:
    """Key types whose equal values are equal stored values (floats are not: -0.0 == 0.0)."""
    return bool(
        pa.types.is_integer(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_binary(dtype)
        or pa.types.is_large_binary(dtype)
        or pa.types.is_date(dtype)
        or pa.types.is_timestamp(dtype)
    )


def _codes(keys: list[pa.ChunkedArray]) -> tuple[np.ndarray, int] | None:
    """A code per row, equal for rows of one entity (none null), and how many codes there can be."""
    codes, groups = _column_codes(keys[0])
    for key in keys[1:]:
        more, size = _column_codes(key)
        if groups * size >= 1 << 63:  # (only for billions of rows at once)
            codes, groups = _compact(codes)
            if groups * size >= 1 << 63:
                return None
        codes, groups = _compact(codes * size + more)
    return codes, groups


def _compact(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """The same partition of the rows with codes ``0 .. groups - 1``."""
    import pandas as pd

    fused, uniques = pd.factorize(codes)
    return fused.astype(np.int64, copy=False), len(uniques)


def _column_codes(key: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    n = len(key)
    if pa.types.is_integer(key.type):
        low, high = (int(v.as_py()) for v in pc.min_max(key).values())
        if high - low <= 2 * n + _DENSE_SLACK:  # the key itself, shifted: no hash table
            values = key.to_numpy()
            if values.dtype == np.uint64:
                return (values - np.uint64(low)).astype(np.int64), high - low + 1
            return values.astype(np.int64) - low, high - low + 1
    encoded = pc.dictionary_encode(key.combine_chunks())
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False), len(encoded.dictionary)
