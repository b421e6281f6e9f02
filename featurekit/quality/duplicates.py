"""Which rows of a batch repeat another row's keys: what the ``unique_keys`` check counts.

Every row is hashed to 64 bits; the rows whose hashes' top 32 bits another row's share are the
candidates (every row equal to another is among them; of 1M distinct rows about a hundred pairs
share their halves), and only they are compared exactly, so a collision of distinct rows is never
counted. Keys of integers, timestamps, dates, times or durations without nulls (ids and event
times, the usual case) are hashed with numpy, a block of rows at a time into one array of top
halves, and their candidates compared with numpy too: 14-20 ms of CPU for 1M rows of three such
columns (30-70 ms on a process's first call), against 19-24 ms (70-220 ms) for polars' ``hash_rows``
and the batch-sized arrays around it, whose pages the kernel had to hand out: 2,200 page faults
a call against 5,400-8,100. Other keys (strings, nulls) go through polars: its row hash, and its
exact comparison of the candidates.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_BLOCK = 65_536  # rows hashed at a time: the work arrays stay in a core's cache
_WIDTHS = {1: pa.int8(), 2: pa.int16(), 4: pa.int32(), 8: pa.int64()}
_MULTIPLY = np.uint64(0x9E3779B97F4A7C15)  # odd constants (the golden ratio's, splitmix64's)
_COMBINE = np.uint64(0xBF58476D1CE4E5B9)
_FINISH = np.uint64(0x94D049BB133111EB)
_TOP = np.uint64(32)


def repeated_rows(keys: pa.Table) -> tuple[int, np.ndarray | None]:
    """How many rows of ``keys`` repeat an earlier row, and a mask of every row in a repeated group.

    Nulls are equal to each other (as in a ``GROUP BY``). The mask is None when no row repeats.
    """
    if keys.num_rows < 2:
        return 0, None
    tops = _integer_tops(keys)
    if tops is None:
        return _polars_repeated(keys)
    rows = shared_tops(tops)
    if rows is None:
        return 0, None
    suspects = keys.take(pa.array(rows))
    repeated, extra = _equal_rows([_integers(column.combine_chunks()) for column in suspects.columns])
    if not extra:
        return 0, None
    mask = np.zeros(keys.num_rows, dtype=bool)
    mask[rows[repeated]] = True
    return extra, mask


def _integral(dtype: pa.DataType) -> bool:
    """Whether the column's values are integers of a fixed width that compare as those integers."""
    kinds = (pa.types.is_integer, pa.types.is_timestamp, pa.types.is_date, pa.types.is_time, pa.types.is_duration)
    return any(kind(dtype) for kind in kinds)


def _integers(array: pa.Array) -> np.ndarray:
    """The values of a fixed-width array without nulls as numpy integers of their width (no copy)."""
    viewed = array.view(_WIDTHS[array.type.bit_width // 8])
    values: np.ndarray = viewed.to_numpy(zero_copy_only=True)
    return values


def _integer_tops(keys: pa.Table) -> np.ndarray | None:
    """The top 32 bits of each row's 64-bit hash, or None when a key column is not integral or has nulls."""
    if not all(_integral(field.type) for field in keys.schema) or any(c.null_count for c in keys.columns):
        return None
    tops = np.empty(keys.num_rows, dtype=np.uint32)
    mixed = np.empty(min(keys.num_rows, _BLOCK), dtype=np.uint64)
    spare = np.empty_like(mixed)
    at = 0
    for batch in keys.to_batches():  # the columns' chunks, cut where any of them is cut (no copy)
        columns = [_integers(column) for column in batch.columns]
        for begin in range(0, batch.num_rows, _BLOCK):
            end = min(begin + _BLOCK, batch.num_rows)
            h, work = mixed[: end - begin], spare[: end - begin]
            for number, column in enumerate(columns):
                words = column[begin:end]
                if words.dtype.itemsize == 8:
                    words = words.view(np.uint64)
                else:  # narrower integers, widened (sign-extended: equal values stay equal)
                    np.copyto(work, words, casting="unsafe")
                    words = work
                if number == 0:
                    np.multiply(words, _MULTIPLY, out=h)
                else:
                    np.bitwise_xor(h, words, out=h)
                    np.multiply(h, _COMBINE, out=h)
            np.right_shift(h, np.uint64(29), out=work)  # a last mix: the top bits depend on every bit
            np.bitwise_xor(h, work, out=h)
            np.multiply(h, _FINISH, out=h)
            np.right_shift(h, _TOP, out=work)
            tops[at + begin : at + end] = work  # the top halves, as uint32
        at += batch.num_rows
    return tops


def shared_tops(tops: np.ndarray) -> np.ndarray | None:
    """The rows (ascending) whose 32-bit hash half (``tops``) another row's shares; None: no row's does.

    Sorting the halves and testing neighbours costs a quarter of a hash table's distinct count of
    the 64-bit hashes. The rows holding a shared half are found through a 64 KiB table of the
    shared halves' low 16 bits (one lookup per row, a block at a time: no array of the batch's
    length but the sorted halves), then checked against the halves.
    """
    ordered = np.sort(tops)
    shared = ordered[1:][ordered[1:] == ordered[:-1]]
    del ordered
    if not len(shared):
        return None
    low = np.uint32(0xFFFF)
    table = np.zeros(0x10000, dtype=bool)
    table[shared & low] = True
    index = np.empty(min(len(tops), _BLOCK), dtype=np.intp)
    hit = np.empty(len(index), dtype=bool)
    near = []  # the rows that may share a half: a few per shared one
    for begin in range(0, len(tops), _BLOCK):
        part = tops[begin : begin + _BLOCK]
        np.take(table, np.bitwise_and(part, low, out=index[: len(part)]), out=hit[: len(part)])
        near.append(np.flatnonzero(hit[: len(part)]) + begin)
    rows = np.concatenate(near)
    found: np.ndarray = rows[np.isin(tops[rows], shared)]
    return found


def _equal_rows(columns: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Of rows given column by column (two or more): a mask of those equal to another, and how many
    repeat an earlier one (a group of k equal rows counts k - 1)."""
    order = np.lexsort(columns[::-1])  # the first column sorts first
    same = np.ones(len(order) - 1, dtype=bool)
    for column in columns:
        ordered = column[order]
        same &= ordered[1:] == ordered[:-1]
    grouped = np.zeros(len(order), dtype=bool)
    grouped[1:] |= same
    grouped[:-1] |= same
    repeated = np.empty(len(order), dtype=bool)
    repeated[order] = grouped
    return repeated, int(np.count_nonzero(same))


def _polars_repeated(keys: pa.Table) -> tuple[int, np.ndarray | None]:
    """:func:`repeated_rows` of any key types: polars' row hash, then its comparison of the candidates."""
    import polars as pl

    frame = pl.from_arrow(keys, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    hashes = frame.hash_rows().to_numpy()
    rows = shared_tops((hashes >> _TOP).astype(np.uint32))
    if rows is None:
        return 0, None
    candidates = np.zeros(len(hashes), dtype=bool)
    candidates[rows] = True
    suspects = frame.filter(pl.Series(candidates))
    extra = len(suspects) - suspects.n_unique()
    if not extra:
        return 0, None
    candidates[candidates] = suspects.is_duplicated().to_numpy()  # the candidates that do repeat another row
    return extra, candidates
