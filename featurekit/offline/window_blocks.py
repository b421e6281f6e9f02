"""Window features of many spine rows at once, over events in power-of-two blocks (numpy).

The events of a window view, sorted by entity code, time and values, are one array per column.
A spine row's window is a slice ``[lo, hi)`` of them, found by binary search. Counts and integer
sums are differences of running totals (exact). Float sums, minima, maxima and variances are
combined from at most two aligned power-of-two blocks per level (about 2 log2(length) blocks,
each precomputed once per column): every value is added once, never recovered as a difference
of running float totals (which loses precision on long histories), and the blocks are always
combined in the same order, so the result is the same bit for bit on every run. Variances merge
(count, mean, M2) triples (Chan et al.), as robust as a two-pass variance.

The engine prepares the arrays; nothing here knows DuckDB, and the engine checks what this
module can compute (:func:`computes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurekit.windows import WindowFeature


def computes(feature: WindowFeature, schema: pa.Schema) -> bool:
    """Whether this module computes ``feature`` (the others go to the engine's own plan)."""
    if feature.column is None:
        return feature.fn == "count"
    dtype = schema.field(feature.column).type
    numeric = pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
    return numeric and feature.fn in ("count", "sum", "mean", "min", "max", "std", "var")


@dataclass
class Events:
    """A window view's events, sorted by (code, time): entity codes are 0..m-1."""

    codes: np.ndarray  # int64, ascending
    order: np.ndarray  # int64 event time (microseconds), ascending within a code
    columns: dict[str, pa.Array]
    moved: tuple[np.ndarray, np.ndarray] | None = None  # row i takes the values of row j (i, j)

    def settled(self) -> Events:
        """The same events with every run of equal (code, time) ordered by its values.

        Only such runs can come back from a sort in a different order on each run; in a fixed
        order, every block (and every float sum) is the same bit for bit. Only the rows of such
        runs move (:attr:`moved`), applied to each column's numpy values when they are built.
        """
        same = (self.codes[1:] == self.codes[:-1]) & (self.order[1:] == self.order[:-1])
        if not same.any() or not self.columns:
            return self
        involved = np.zeros(len(self.order), dtype=bool)
        involved[1:] |= same
        involved[:-1] |= same
        rows = np.flatnonzero(involved)
        continues = np.zeros(len(rows), dtype=bool)
        continues[1:] = same[rows[1:] - 1]  # a row equal to the one before it stays in its run
        runs = np.cumsum(~continues)
        names = list(self.columns)
        table = pa.table({"__run": runs, **{n: self.columns[n].take(pa.array(rows)) for n in names}})
        keys = [("__run", "ascending", "at_end"), *((n, "ascending", "at_end") for n in names)]
        within = pc.sort_indices(table, sort_keys=keys).to_numpy()
        return Events(self.codes, self.order, self.columns, moved=(rows, rows[within]))


def dense_codes(keys: np.ndarray, spine_keys: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Entity codes 0..m-1 from sorted integer keys, and each spine key's code (-1: no events, or null)."""
    if not len(keys):
        return keys.astype(np.int64), np.full(len(spine_keys), -1, dtype=np.int64)
    starts = np.concatenate([[True], keys[1:] != keys[:-1]])
    codes = np.cumsum(starts, dtype=np.int64) - 1
    distinct = keys[starts]
    valid = spine_keys.is_valid().to_numpy(zero_copy_only=False)
    wanted = pc.fill_null(spine_keys, 0).to_numpy().astype(distinct.dtype, copy=False)
    found = np.searchsorted(distinct, wanted)
    inside = found < len(distinct)
    matched = valid & inside & (distinct[np.minimum(found, len(distinct) - 1)] == wanted)
    return codes, np.where(matched, found, -1).astype(np.int64)


def positions(events: Events, codes: np.ndarray, instants: np.ndarray) -> np.ndarray:
    """Per query (code, instant), the index of the code's first event at or after the instant.

    A query of code -1 (an entity without events) gets index 0 for every bound (an empty window).
    """
    n = len(events.order)
    if n == 0:
        return np.zeros(len(codes), dtype=np.int64)
    low, high = int(events.order.min()), int(events.order.max())
    span = high - low + 3
    entities = int(events.codes[-1]) + 1
    if span < 2**62 // max(entities, 1):  # (code, time) fused into one sortable int64
        keys = events.codes * span + (events.order - low + 1)
        wanted = codes * span + np.clip(instants - low + 1, 0, span - 1)
        found = np.searchsorted(keys, wanted, "left")
    else:  # times too far apart to fuse: sort the queries in among the events
        every_code = np.concatenate([events.codes, codes])
        every_time = np.concatenate([events.order, instants])
        kind = np.concatenate([np.ones(n, dtype=np.int8), np.zeros(len(codes), dtype=np.int8)])
        sort = np.lexsort((kind, every_time, every_code))
        is_query = sort >= n
        earlier_events: np.ndarray = np.cumsum(~is_query) - (~is_query)
        found = np.empty(len(codes), dtype=np.int64)
        found[sort[is_query] - n] = earlier_events[is_query]
    result: np.ndarray = found.astype(np.int64, copy=False)
    result[codes < 0] = 0
    return result


class _Levels:
    """One numeric column's blocks: level k holds the stats of each aligned run of 2^k events."""

    def __init__(self, array: pa.Array, moved: tuple[np.ndarray, np.ndarray] | None) -> None:
        self.integer = pa.types.is_integer(array.type)
        valid = array.is_valid().to_numpy(zero_copy_only=False) if array.null_count else None
        filled = pc.fill_null(array, 0) if array.null_count else array
        values = filled.to_numpy(zero_copy_only=False)
        if moved is not None:
            values = values.copy()
            values[moved[0]] = values[moved[1]]
            if valid is not None:
                valid = valid.copy()
                valid[moved[0]] = valid[moved[1]]
        self.nulls = valid is not None
        self.valid = np.ones(len(values), dtype=bool) if valid is None else valid
        self.values = values
        self.floats = values.astype(np.float64, copy=False)
        self.counts = np.concatenate([[0], np.cumsum(self.valid, dtype=np.int64)]) if self.nulls else None
        self._sums: list[np.ndarray] | None = None
        self._extremes: dict[str, list[np.ndarray]] = {}
        self._moments: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    def count(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        if self.counts is None:  # no nulls: every event in the slice has a value
            whole: np.ndarray = high - low
            return whole
        counted: np.ndarray = self.counts[high] - self.counts[low]
        return counted

    def sums(self) -> list[np.ndarray]:
        if self._sums is None:
            base = np.where(self.valid, self.floats, 0.0) if self.nulls else self.floats
            self._sums = _pyramid(base, np.add, 0.0)
        return self._sums

    def extremes(self, fn: str) -> list[np.ndarray]:
        if fn not in self._extremes:
            fill: float | int
            if self.integer:
                info = np.iinfo(np.int64)
                fill = int(info.max if fn == "min" else info.min)
                base = np.where(self.valid, self.values.astype(np.int64, copy=False), fill)
            else:
                fill = np.inf if fn == "min" else -np.inf
                base = np.where(self.valid, self.floats, fill)
            self._extremes[fn] = _pyramid(base, np.minimum if fn == "min" else np.maximum, fill)
        return self._extremes[fn]

    def moments(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per level: count, mean and M2 (sum of squared deviations) of each block's valid values."""
        if self._moments is None:
            n = self.valid.astype(np.float64)
            mean = np.where(self.valid, self.floats, 0.0)
            levels = [(n, mean, np.zeros(len(n)))]
            while len(levels[-1][0]) > 1:
                a, b = _pairs(levels[-1])
                levels.append(_merge(a, b))
            self._moments = levels
        return self._moments


def _pyramid(base: np.ndarray, ufunc: np.ufunc, fill: float | int) -> list[np.ndarray]:
    levels = [base]
    while len(levels[-1]) > 1:
        last = levels[-1]
        if len(last) % 2:
            last = np.append(last, np.array([fill], dtype=last.dtype))
        levels.append(ufunc(last[0::2], last[1::2]))
    return levels


def _pairs(
    level: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    n, mean, m2 = level
    if len(n) % 2:
        n, mean, m2 = (np.append(x, 0.0) for x in (n, mean, m2))
    return (n[0::2], mean[0::2], m2[0::2]), (n[1::2], mean[1::2], m2[1::2])


def _merge(
    a: tuple[np.ndarray, np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chan et al.'s pairwise combination of (count, mean, M2); an empty side leaves the other."""
    na, ma, qa = a
    nb, mb, qb = b
    n = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n > 0, nb / n, 0.0)
    delta = mb - ma
    mean = ma + delta * share
    m2 = qa + qb + delta * delta * na * share
    return n, mean, m2


def _walk(low: np.ndarray, high: np.ndarray, depth: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """The aligned blocks covering each ``[low, high)``: per level, (level, query ids, block index).

    Left blocks come bottom-up, then right blocks top-down, so every combination adds in
    ascending position order.
    """
    ids = np.flatnonzero(low < high)
    lo, hi = low[ids].copy(), high[ids].copy()
    left: list[tuple[int, np.ndarray, np.ndarray]] = []
    right: list[tuple[int, np.ndarray, np.ndarray]] = []
    level = 0
    while len(ids) and level < depth:
        take = (lo & 1).astype(bool) & (lo < hi)
        if take.any():
            left.append((level, ids[take], lo[take]))
            lo[take] += 1
        take = (hi & 1).astype(bool) & (lo < hi)
        if take.any():
            hi[take] -= 1
            right.append((level, ids[take], hi[take]))
        lo >>= 1
        hi >>= 1
        keep = lo < hi
        ids, lo, hi = ids[keep], lo[keep], hi[keep]
        level += 1
    return left + right[::-1]


def compute(events: Events, features: list[WindowFeature], codes: np.ndarray, ends: np.ndarray) -> dict[str, pa.Array]:
    """Each feature (all :func:`computes`) for queries ``(codes, ends)``; ``ends`` is ``t - delay``."""
    high = positions(events, codes, ends)
    lows = {w: positions(events, codes, ends - w) for w in {f.window_us for f in features}}
    walks: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    levels: dict[str, _Levels] = {}
    depth = max(1, len(events.order).bit_length() + 1)
    out: dict[str, pa.Array] = {}
    q = len(codes)
    for feature in features:
        low = lows[feature.window_us]
        if feature.column is None:
            out[feature.name] = pa.array(high - low, pa.int64())
            continue
        column = levels.get(feature.column)
        if column is None:
            column = levels[feature.column] = _Levels(events.columns[feature.column], events.moved)
        counts = column.count(low, high)
        fn = feature.fn
        if fn == "count":
            out[feature.name] = pa.array(counts, pa.int64())
            continue
        if fn == "sum" and column.integer:
            totals = np.concatenate([[0], np.cumsum(column.values.astype(np.int64, copy=False), dtype=np.int64)])
            out[feature.name] = pa.array(totals[high] - totals[low], pa.int64())
            continue
        walk = walks.get(feature.window_us)
        if walk is None:
            walk = walks[feature.window_us] = _walk(low, high, depth)
        empty = counts == 0
        if fn in ("sum", "mean"):
            total = np.zeros(q)
            pyramid = column.sums()
            for level, ids, block in walk:
                total[ids] += pyramid[level][block]
            if fn == "sum":
                out[feature.name] = pa.array(total, pa.float64())
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[feature.name] = pa.array(total / counts, pa.float64(), mask=empty)
            continue
        if fn in ("min", "max"):
            pyramid = column.extremes(fn)
            found = np.zeros(q, dtype=pyramid[0].dtype)
            first = np.ones(q, dtype=bool)
            combine = np.minimum if fn == "min" else np.maximum
            for level, ids, block in walk:
                values = pyramid[level][block]
                fresh = first[ids]
                found[ids] = np.where(fresh, values, combine(found[ids], values))
                first[ids] = False
            dtype = events.columns[feature.column].type
            out[feature.name] = pa.array(found, mask=empty).cast(dtype)
            continue
        n, mean, m2 = np.zeros(q), np.zeros(q), np.zeros(q)
        moments = column.moments()
        for level, ids, block in walk:
            bn, bmean, bm2 = (part[block] for part in moments[level])
            n[ids], mean[ids], m2[ids] = _merge((n[ids], mean[ids], m2[ids]), (bn, bmean, bm2))
        few = counts < 2
        with np.errstate(invalid="ignore", divide="ignore"):
            variance = m2 / (counts - 1)
        result = variance if fn == "var" else np.sqrt(variance)
        out[feature.name] = pa.array(result, pa.float64(), mask=few)
    return out
