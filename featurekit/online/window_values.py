"""Window features at a lookup instant, from the entities' stored events, for many entities at once.

The events of all looked-up entities are laid end to end (one array per column); each entity's
window ``[t - delay - w, t - delay)`` is a slice of it found by binary search on the event times.
Counts and integer sums are differences of running totals (exact); float sums, minima and maxima
are ``ufunc.reduceat`` over the slices (every value added once, never a difference of running
float totals); variances take a second pass over each slice around its own mean. The ordered
aggregations (``first``, ``last``, ``last_n``) and ``count_distinct`` look at their slices one by
one. A lookup of one entity (most lookups) skips the per-entity arrays: each aggregation reduces
its slice of that entity's events directly, with the same reductions (so the same values) as a
lookup of several entities that reads a single slice; a column's slice sum is computed once for
its ``sum``, ``mean``, ``std`` and ``var``. Values match the offline engine's: exactly, or within
:data:`featurekit.windows.FLOAT_TOLERANCE` for float sums, means, std and var.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurekit.errors import OnlineHistoryError
from featurekit.online.window_state import CREATED, ORDER
from featurekit.timestamps import from_micros
from featurekit.windows import WindowFeature


class _Column:
    """One aggregated column over all entities' events, with what its aggregations share."""

    def __init__(self, array: pa.Array) -> None:
        self.array = array
        self.type = array.type
        self.numeric = pa.types.is_integer(array.type) or pa.types.is_floating(array.type)
        self.integer = pa.types.is_integer(array.type)
        self.valid = array.is_valid().to_numpy(zero_copy_only=False) if array.null_count else None
        self._valid_totals: np.ndarray | None = None
        self._values: np.ndarray | None = None
        self._padded: dict[str, np.ndarray] = {}  # per reduction: the values with one trailing element
        self._reduced: dict[tuple[str, int], np.ndarray] = {}  # per (reduction, window): one value per slice

    @property
    def values(self) -> np.ndarray:
        """The values as numpy, nulls as 0 (only ever read where they are valid, or summed)."""
        if self._values is None:
            filled = pc.fill_null(self.array, 0) if self.array.null_count else self.array
            self._values = filled.to_numpy(zero_copy_only=False)
        return self._values

    def counts(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        if self.valid is None:
            found: np.ndarray = high - low
            return found
        if self._valid_totals is None:
            self._valid_totals = np.concatenate([[0], np.cumsum(self.valid, dtype=np.int64)])
        totals: np.ndarray = self._valid_totals
        counted: np.ndarray = totals[high] - totals[low]
        return counted

    def reduce(
        self, ufunc: np.ufunc, values: np.ndarray, slices: tuple[np.ndarray, np.ndarray], window_us: int
    ) -> np.ndarray:
        """``ufunc`` over each slice of ``values`` (a function of this column), once per window:
        ``sum`` and ``mean`` share their sums, and the padded copy is made once per reduction."""
        key = (ufunc.__name__, window_us)
        found = self._reduced.get(key)
        if found is None:
            padded = self._padded.get(ufunc.__name__)
            if padded is None and len(slices[0]) > 1:
                padded = np.append(values, values[:1] if len(values) else np.zeros(1, values.dtype))
                self._padded[ufunc.__name__] = padded
            found = self._reduced[key] = _reduce(ufunc, values, *slices, padded)
        return found


def _reduce(
    ufunc: np.ufunc, values: np.ndarray, low: np.ndarray, high: np.ndarray, padded: np.ndarray | None = None
) -> np.ndarray:
    """``ufunc`` over each slice ``values[low[i]:high[i]]`` (ordered); ``padded``: ``values`` plus one element.

    An empty slice gives an arbitrary value: callers mask it with the slice's count.
    """
    if len(low) == 1:  # one slice: reduce the slice itself, no copy
        a, b = int(low[0]), int(high[0])
        if b <= a:
            return np.zeros(1, dtype=values.dtype)
        return np.array([ufunc.reduce(values[a:b])])
    if padded is None:
        padded = np.append(values, values[:1] if len(values) else np.zeros(1, values.dtype))
    bounds = np.empty(2 * len(low), dtype=np.int64)
    bounds[0::2] = low
    bounds[1::2] = high
    found: np.ndarray = ufunc.reduceat(padded, bounds)[0::2]
    return found


class WindowValues:
    """Computes window features of many entities' stored events at one instant."""

    def __init__(self, features: Sequence[WindowFeature], delay_us: int, layout: pa.Schema) -> None:
        self.features = list(features)
        self.delay_us = delay_us
        self.layout = layout
        self.empty = [_empty(f, layout) for f in self.features]

    def compute(self, states: Sequence[pa.RecordBatch | None], at_us: int) -> list[list[Any]]:
        """Per feature, one value per state (None: an entity the store holds nothing of)."""
        present = [i for i, s in enumerate(states) if s is not None and s.num_rows]
        columns: list[list[Any]] = [[value] * len(states) for value in self.empty]
        if not present:
            return columns
        with np.errstate(all="ignore"):  # inf and NaN values give inf and NaN, as in SQL
            if len(present) == 1:  # one entity (most lookups): scalars, none of the per-entity arrays
                index = present[0]
                state = states[index]
                assert state is not None
                for column, value in zip(columns, self._one(state, at_us), strict=True):
                    column[index] = value
                return columns
            found = self._compute([states[i] for i in present], at_us)
        for column, values in zip(columns, found, strict=True):
            for index, value in zip(present, values, strict=True):
                column[index] = value
        return columns

    def at_instants(self, events: pa.RecordBatch, instants_us: np.ndarray) -> list[list[Any]]:
        """Per feature, one value per instant, over one entity's events (sorted by time).

        The offline path of engines that aggregate per entity (Spark) computes a spine's windows
        this way: the same code as an online lookup, so the two agree as lookups and the DuckDB
        engine do (exactly, or within :data:`~featurekit.windows.FLOAT_TOLERANCE`).
        """
        if not len(instants_us):
            return [[] for _ in self.features]
        if not events.num_rows:
            return [[value] * len(instants_us) for value in self.empty]
        data = {name: events.column(i) for i, name in enumerate(self.layout.names)}
        order = data[ORDER].to_numpy()
        end = np.asarray(instants_us, dtype=np.int64) - self.delay_us
        high = np.searchsorted(order, end, "left").astype(np.int64)
        lows = {
            w: np.searchsorted(order, end - w, "left").astype(np.int64) for w in {f.window_us for f in self.features}
        }
        return self._features(data, high, lows)

    def _one(self, batch: pa.RecordBatch, at_us: int) -> list[Any]:
        """Per feature, its value over one entity's events: the same reductions over the same slices as
        :meth:`_compute` (so the same values, bit for bit), each slice's shared by its aggregations."""
        data = {name: batch.column(i) for i, name in enumerate(self.layout.names)}
        order = data[ORDER].to_numpy()
        end = at_us - self.delay_us
        high = int(order.searchsorted(end, "left"))
        lows: dict[int, int] = {}
        columns: dict[str, _Column] = {}
        sums: dict[tuple[str, int], float] = {}  # the float sum of a column's slice: sum, mean, std, var share it
        found: list[Any] = []
        for feature in self.features:
            low = lows.get(feature.window_us)
            if low is None:
                low = lows[feature.window_us] = int(order.searchsorted(end - feature.window_us, "left"))
            if feature.column is None:
                found.append(high - low)
                continue
            column = columns.get(feature.column)
            if column is None:
                column = columns[feature.column] = _Column(data[feature.column])
            if feature.fn in _NUMERIC or (feature.fn in ("min", "max") and column.numeric):
                found.append(_one_numeric(feature, column, low, high, sums))
            else:  # the ordered aggregations, count_distinct and non-numeric extremes look at one slice anyway
                bounds = np.array([low], dtype=np.int64), np.array([high], dtype=np.int64)
                found.append(self._feature(feature, column, *bounds, data)[0])
        return found

    def _compute(self, batches: list[pa.RecordBatch], at_us: int) -> list[list[Any]]:
        if len(batches) == 1:
            data = {name: batches[0].column(i) for i, name in enumerate(self.layout.names)}
        else:
            data = {name: pa.concat_arrays([b.column(i) for b in batches]) for i, name in enumerate(self.layout.names)}
        order = data[ORDER].to_numpy()
        sizes = np.array([b.num_rows for b in batches], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        end = at_us - self.delay_us
        high = _search(order, starts, sizes, end)
        lows = {w: _search(order, starts, sizes, end - w) for w in {f.window_us for f in self.features}}
        return self._features(data, high, lows)

    def _features(self, data: dict[str, pa.Array], high: np.ndarray, lows: dict[int, np.ndarray]) -> list[list[Any]]:
        cache: dict[str, _Column] = {}
        results = []
        for feature in self.features:
            low = lows[feature.window_us]
            if feature.column is None:
                results.append(list((high - low).tolist()))
                continue
            column = cache.get(feature.column)
            if column is None:
                column = cache[feature.column] = _Column(data[feature.column])
            results.append(self._feature(feature, column, low, high, data))
        return results

    def _feature(
        self, feature: WindowFeature, column: _Column, low: np.ndarray, high: np.ndarray, data: dict[str, pa.Array]
    ) -> list[Any]:
        fn = feature.fn
        counts = column.counts(low, high)
        if fn == "count":
            return list(counts.tolist())
        if fn in ("sum", "mean", "std", "var") or (fn in ("min", "max") and column.numeric):
            return _numeric(fn, column, (low, high), counts, feature.window_us)
        if fn in ("min", "max"):
            return [
                None if n == 0 else getattr(pc, fn)(column.array.slice(a, b - a)).as_py()
                for a, b, n in zip(low.tolist(), high.tolist(), counts.tolist(), strict=True)
            ]
        if fn == "count_distinct":
            array = column.array
            if pa.types.is_floating(array.type):
                array = pc.add(array, pa.scalar(0.0, array.type))  # -0.0 + 0.0 is 0.0: one value, as in SQL
            return [
                0 if n == 0 else pc.count_distinct(array.slice(a, b - a)).as_py()
                for a, b, n in zip(low.tolist(), high.tolist(), counts.tolist(), strict=True)
            ]
        created = data.get(CREATED)
        made = created.to_numpy() if created is not None else None
        order = data[ORDER].to_numpy()
        return [
            None if n == 0 else _ordered(feature, column, order, made, (a, b))
            for a, b, n in zip(low.tolist(), high.tolist(), counts.tolist(), strict=True)
        ]


def _search(order: np.ndarray, starts: np.ndarray, sizes: np.ndarray, instant: int) -> np.ndarray:
    """Per entity, the index of its first event at or after ``instant`` (events are sorted per entity).

    Each entity's earlier events are a prefix of its slice, so counting them per slice (one
    ``reduceat`` over all entities) finds every index at once.
    """
    if len(starts) == 1:
        return np.array([np.searchsorted(order, instant, "left")], dtype=np.int64)
    earlier = np.add.reduceat((order < instant).astype(np.int64), starts)
    found: np.ndarray = starts + earlier
    return found


def _numeric(
    fn: str, column: _Column, slices: tuple[np.ndarray, np.ndarray], counts: np.ndarray, window_us: int
) -> list[Any]:
    low, high = slices
    values = column.values
    empty = counts == 0
    if fn in ("min", "max"):
        if column.valid is not None:
            values = np.where(column.valid, values, _never_wins(fn, values.dtype, column.integer))
        found = column.reduce(np.minimum if fn == "min" else np.maximum, values, slices, window_us)
        return [None if e else v for e, v in zip(empty.tolist(), found.tolist(), strict=True)]
    if column.integer and fn == "sum":  # running totals of integers: exact differences
        totals = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
        return list((totals[high] - totals[low]).tolist())
    floats = values.astype(np.float64, copy=False)
    sums = np.where(empty, 0.0, column.reduce(np.add, floats, slices, window_us))
    if fn == "sum":
        return list(sums.tolist())
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    if fn == "mean":
        return [None if e else m for e, m in zip(empty.tolist(), means.tolist(), strict=True)]
    squares = np.empty(len(low), dtype=np.float64)
    for i, (a, b) in enumerate(zip(low.tolist(), high.tolist(), strict=True)):
        part = floats[a:b] - means[i]
        if column.valid is not None:
            part = part[column.valid[a:b]]
        squares[i] = float(np.dot(part, part))
    with np.errstate(invalid="ignore", divide="ignore"):
        variances = squares / (counts - 1)
    result = variances if fn == "var" else np.sqrt(variances)
    return [None if n < 2 else v for n, v in zip(counts.tolist(), result.tolist(), strict=True)]


def _never_wins(fn: str, dtype: np.dtype, integer: bool) -> Any:
    """The value a null takes in a ``min`` (``max``): the largest (smallest) of its type."""
    if integer:
        info = np.iinfo(dtype)
        return info.max if fn == "min" else info.min
    return np.inf if fn == "min" else -np.inf


_NUMERIC = ("count", "sum", "mean", "std", "var")


def _one_numeric(
    feature: WindowFeature, column: _Column, low: int, high: int, sums: dict[tuple[str, int], float]
) -> Any:
    """``count``, ``sum``, ``mean``, ``std``, ``var``, numeric ``min``/``max`` of one slice, as :func:`_numeric`."""
    fn = feature.fn
    valid = None if column.valid is None else column.valid[low:high]
    count = high - low if valid is None else int(np.count_nonzero(valid))
    if fn == "count":
        return count
    values = column.values[low:high]
    if fn in ("min", "max"):
        if count == 0:
            return None
        if valid is not None:  # nulls as the extreme that never wins, as _numeric does (the same -0.0 or 0.0)
            values = np.where(valid, values, _never_wins(fn, values.dtype, column.integer))
        return (np.minimum if fn == "min" else np.maximum).reduce(values).item()
    if column.integer and fn == "sum":  # int64 wraps as the running totals of _numeric do
        return int(np.add.reduce(values, dtype=np.int64)) if high > low else 0
    floats = values.astype(np.float64, copy=False)
    cache_key = (str(feature.column), feature.window_us)
    total = sums.get(cache_key)
    if total is None:
        total = sums[cache_key] = float(np.add.reduce(floats)) if count else 0.0
    if fn == "sum":
        return total
    if count == 0 or (fn != "mean" and count < 2):
        return None
    mean = float(np.float64(total) / np.float64(count))
    if fn == "mean":
        return mean
    part = floats - mean
    if valid is not None:
        part = part[valid]
    variance = np.float64(float(np.dot(part, part))) / np.float64(count - 1)
    return float(variance if fn == "var" else np.sqrt(variance))


def _ordered(
    feature: WindowFeature, column: _Column, order: np.ndarray, made: np.ndarray | None, bounds: tuple[int, int]
) -> Any:
    """``first``, ``last`` or ``last_n`` by (time, created, value) over the non-null values of one slice."""
    low, high = bounds
    present = np.arange(low, high) if column.valid is None else low + np.flatnonzero(column.valid[low:high])
    created = made if made is not None else np.zeros_like(order)
    if feature.fn == "first":
        edge = present[0]
        ties = present[(order[present] == order[edge]) & (created[present] == created[edge])]
        return min(column.array.take(pa.array(ties)).to_pylist())
    wanted = 1 if feature.fn == "last" else int(feature.n or 1)
    start = max(0, len(present) - wanted)
    edge = present[start]  # rows tied with the oldest candidate may sort either side of it
    head = present[: start + 1]
    ties = head[(order[head] == order[edge]) & (created[head] == created[edge])]
    candidates = np.unique(np.concatenate([ties, present[start:]]))
    values = column.array.take(pa.array(candidates)).to_pylist()
    ranked = sorted(zip(order[candidates].tolist(), created[candidates].tolist(), values, strict=True), reverse=True)
    if feature.fn == "last":
        return ranked[0][2]
    return [v for _, _, v in ranked[:wanted]]


def _empty(feature: WindowFeature, layout: pa.Schema) -> Any:
    """A feature's value over no events."""
    if feature.fn in ("count", "count_distinct"):
        return 0
    if feature.fn == "sum":
        assert feature.column is not None
        return 0 if pa.types.is_integer(layout.field(feature.column).type) else 0.0
    return None


def too_early(view: str, version: int, entity: dict[str, Any], valid_from: int, at_us: int) -> OnlineHistoryError:
    since = from_micros(valid_from).isoformat()
    return OnlineHistoryError(
        f"online lookup at {from_micros(at_us).isoformat()} is before {since}, from when the online store holds "
        f"the events of {entity} that window view '{view}' v{version} needs (it keeps only the events that lookups "
        f"from its last materialization on can see); pass at= at or after {since}, or build a training set for "
        "earlier moments"
    )
