"""Profiles built in the materialization's own pass, as mergeable states stored per commit.

A :class:`ProfileState` holds, per feature column, what a :class:`~featurekit.quality.profile.ColumnProfile`
is computed from, in a form where the state of a union of row sets is the merge of their states:

* exact: rows, nulls, NaNs, min, max, mean and std (count, mean and sum of squared deviations,
  merged with Chan's formula: equal to a direct computation up to float rounding), and the
  histogram (counts in :mod:`value buckets <featurekit.quality.sketches>` whose boundaries the
  histogram edges are);
* exact while a column has fewer than :data:`~featurekit.quality.sketches.DISTINCT_CAP` (2,048)
  distinct values, bounded above: the distinct count (relative standard error 2.2%) and the top
  values' counts (exact up to 2,048 distinct values; above, each low by at most rows / 2,049);
* bounded: each percentile is within relative error 0.39% (:data:`~featurekit.quality.sketches.RELATIVE_ERROR`)
  of the larger of the two order statistics DuckDB's ``quantile_cont`` interpolates between.

Merging (:func:`merge`, :meth:`ProfileState.merge`) is exact for every statistic but mean and std
(float rounding), so any split of the same rows into windows gives the same profile; a finished
:class:`~featurekit.quality.profile.Profile` is not merged (its percentiles are no state).
:func:`profile_table` profiles a table in one call (histogram edges off the bucket grid, such as
edges of another origin, are counted value by value: exact too). A materialization records its window's state with its
commit (kind ``"profile"``); the first one with values also fixes the view version's histogram
edges (kind ``"edges"``): its 1st, 5th, 10th, ..., 95th and 99th percentiles, each moved down to
its bucket's boundary, with open-ended outer bins.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurekit.quality.profile import PERCENTILES, TOP_VALUES, ColumnKind, ColumnProfile, Profile
from featurekit.quality.sketches import (
    MANTISSA_BITS,
    DistinctSketch,
    ValueBuckets,
    ValueCounts,
    bucket_key,
    bucket_keys,
    hash_bits,
    hash_objects,
    snap_to_buckets,
)
from featurekit.registry import Registry, ViewVersion

STATE_FORMAT = 1
EDGE_FRACTIONS = (0.01, *(i / 20 for i in range(1, 20)), 0.99)

Edges = dict[str, tuple[float, ...]]


def column_kind(dtype: pa.DataType) -> ColumnKind:
    """How a column is profiled: numbers get moments and a histogram, categories top values."""
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "numeric"
    if pa.types.is_dictionary(dtype):
        return column_kind(dtype.value_type)
    if pa.types.is_boolean(dtype) or pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "categorical"
    if dtype == pa.string_view():
        return "categorical"
    return "other"


def feature_columns(version: ViewVersion) -> list[str]:
    """The columns a view version's profile covers: its stored columns but keys and timestamps.

    For a window view these are the per-event columns its function returns (what a
    materialization commits), not the window aggregates computed from them.
    """
    source = version.definition["source"]
    skip = {*version.definition["join_keys"], source["timestamp_field"], source["created_timestamp_field"]}
    return [name for name in version.schema.names if name not in skip]


_BLOCK = 262_144
_KEY_SHIFT = np.uint64(52 - MANTISSA_BITS)


class Scratch:
    """Work arrays of one block, reused by every block of a column (one per thread at a time)."""

    def __init__(self, size: int) -> None:
        self.numbers = np.empty(size, dtype=np.float64)
        self.floats = np.empty(size, dtype=np.float64)
        self.keys = np.empty(size, dtype=np.uint64)
        self.hashes = np.empty(size, dtype=np.uint64)

    @classmethod
    def block(cls) -> Scratch:
        """Work arrays for chunks of any length (a block at most; pages are touched only when used)."""
        return cls(_BLOCK)

    @classmethod
    def for_table(cls, table: pa.Table, columns: list[str]) -> Scratch:
        """Work arrays large enough for every chunk of these columns (at most one block)."""
        longest = max((len(c) for name in columns for c in table.column(name).chunks), default=0)
        return cls(min(longest, _BLOCK))


@dataclass
class ColumnState:
    """What one column's profile is computed from (see the module docstring)."""

    kind: ColumnKind
    rows: int = 0
    nulls: int = 0
    nans: int = 0
    count: int = 0
    low: float | None = None
    high: float | None = None
    mean: float = 0.0
    squares: float = 0.0  # sum of squared deviations from the mean
    buckets: ValueBuckets = field(default_factory=ValueBuckets.empty)
    distinct: DistinctSketch = field(default_factory=DistinctSketch.empty)
    counts: ValueCounts = field(default_factory=lambda: ValueCounts({}))
    integers: bool = False  # an integer column (its small values get exact percentiles)

    def add(self, array: pa.Array, scratch: Scratch | None = None) -> None:
        """Take one chunk; ``scratch``: work arrays to reuse (:meth:`ProfileState.add` passes its own)."""
        self.rows += len(array)
        self.nulls += array.null_count
        if self.kind == "other" or len(array) == array.null_count:
            return
        if array.null_count:
            array = pc.drop_null(array)
        if self.kind == "numeric":
            self._add_numbers(array, scratch)
        else:
            self._add_categories(array)

    def _add_numbers(self, array: pa.Array, scratch: Scratch | None) -> None:
        dtype = array.type
        if pa.types.is_decimal(dtype) or pa.types.is_float16(dtype):
            array, dtype = array.cast(pa.float64()), pa.float64()
        raw = array.to_numpy(zero_copy_only=False)
        floating = pa.types.is_floating(dtype)
        # Blocks that fit a core's cache, and scratch space reused by every block (and, from
        # ProfileState.add, by every chunk and column): the passes below then cost compute, not
        # memory traffic and the page faults of fresh arrays.
        if scratch is None or len(scratch.numbers) < min(len(raw), _BLOCK):
            scratch = Scratch(min(len(raw), _BLOCK))
        for begin in range(0, len(raw), _BLOCK):
            block = raw[begin : begin + _BLOCK]
            if not floating:
                self.integers = True
                values = scratch.floats[: len(block)]
                values[...] = block  # the integers as floats, without a fresh array
                bits = block.astype(np.int64, copy=False).view(np.uint64)
                self._add_block(values, bits, float(values.min()), None, scratch)
                continue
            values = block.astype(np.float64, copy=False)
            low = float(values.min())
            if np.isnan(low):  # NaN propagates through min: no separate pass to find one
                nan = np.isnan(values)
                self.nans += int(np.count_nonzero(nan))
                values = values[~nan]
                if not len(values):
                    continue
                low = float(values.min())
            bits = (values + 0.0).view(np.uint64) if low <= 0 else values.view(np.uint64)  # -0.0 is 0.0
            keys = None
            if low >= 0:
                keys = np.right_shift(bits, _KEY_SHIFT, out=scratch.keys[: len(bits)]).view(np.int64)
            self._add_block(values, bits, low, keys, scratch)

    def _add_block(
        self, values: np.ndarray, bits: np.ndarray, low: float, keys: np.ndarray | None, scratch: Scratch
    ) -> None:
        """Values (float64, no NaN), the patterns to hash, their minimum and bucket keys (if known)."""
        high = float(values.max())
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        count = len(values)
        with np.errstate(all="ignore"):  # infinities: the moments become inf/nan, as in SQL
            first = float(values[0])
            # Deviations from a value of the data (little cancellation), squared in place and
            # summed, not `shifted @ shifted`: BLAS threads spin against each other on a busy
            # machine (14 ms instead of 0.3 ms for 262k values).
            shifted = np.subtract(values, first, out=scratch.numbers[:count])
            total = float(shifted.sum())
            squares = float(np.square(shifted, out=shifted).sum())
            self._merge_moments(count, first + total / count, squares - total * total / count)
        keys = bucket_keys(values) if keys is None else keys  # both the caller's to overwrite
        self.buckets = self.buckets.merge(ValueBuckets.of(keys, bucket_key(low), bucket_key(high), overwrite=True))
        self.distinct = self.distinct.add(hash_bits(bits, scratch.hashes[:count]))

    def _add_categories(self, array: pa.Array) -> None:
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        counted = pc.value_counts(array)
        raw = counted.field("values").to_pylist()
        values = [("true" if v else "false") for v in raw] if pa.types.is_boolean(array.type) else raw
        counts = counted.field("counts").to_numpy()
        self.count += len(array)
        self.counts = self.counts.merge(ValueCounts.of(values, counts))
        self.distinct = self.distinct.add(hash_objects(np.asarray(values, dtype=object)))

    def _merge_moments(self, count: int, mean: float, squares: float) -> None:
        total = self.count + count
        if not total:
            return
        with np.errstate(all="ignore"):
            delta = mean - self.mean
            self.mean = self.mean + delta * count / total
            self.squares = self.squares + squares + delta * delta * self.count * count / total
        self.count = total

    def merge(self, other: ColumnState) -> ColumnState:
        merged = ColumnState(
            self.kind,
            rows=self.rows + other.rows,
            nulls=self.nulls + other.nulls,
            nans=self.nans + other.nans,
            count=self.count,
            low=_pick(min, self.low, other.low),
            high=_pick(max, self.high, other.high),
            mean=self.mean,
            squares=self.squares,
            buckets=self.buckets.merge(other.buckets),
            distinct=self.distinct.merge(other.distinct),
            counts=self.counts.merge(other.counts),
            integers=self.integers or other.integers,
        )
        merged._merge_moments(other.count, other.mean, other.squares)
        return merged

    def profile(self, name: str, edges: tuple[float, ...]) -> ColumnProfile:
        """The column's profile; its histogram on ``edges`` (bucket boundaries, see :func:`choose_edges`)."""
        common: dict[str, Any] = {"name": name, "kind": self.kind, "rows": self.rows, "nulls": self.nulls}
        if self.kind == "other":
            return ColumnProfile(**common)
        distinct = self.distinct.estimate()
        if self.kind == "categorical":
            top = self.counts.top(TOP_VALUES)
            return ColumnProfile(**common, distinct=distinct, top=top, other=self.count - sum(c for _, c in top))
        count = self.count
        histogram = self.buckets.histogram(edges) if count else (0,) * (len(edges) + 1)
        if histogram is None:
            raise ValueError(f"histogram edges {edges} of column {name!r} are not bucket boundaries")
        with np.errstate(all="ignore"):
            std = float(np.sqrt(max(self.squares, 0.0) / (count - 1))) if count > 1 else None
        fractions = tuple(p / 100 for p in PERCENTILES)
        quantiles = []
        if count and self.low is not None and self.high is not None:
            quantiles = self.buckets.quantiles(fractions, self.low, self.high, integers=self.integers)
        return ColumnProfile(
            **common,
            nans=self.nans,
            min=self.low,
            max=self.high,
            mean=self.mean if count else None,
            std=std,
            percentiles=dict(zip(PERCENTILES, quantiles, strict=True)) if quantiles else {},
            edges=edges,
            histogram=histogram,
            distinct=distinct,
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "rows": self.rows, "nulls": self.nulls}
        if self.kind == "other":
            return data
        data |= {"nans": self.nans, "count": self.count, "distinct": self.distinct.to_json()}
        if self.kind == "numeric":
            data |= {"min": self.low, "max": self.high, "mean": self.mean, "squares": self.squares}
            data["integers"] = self.integers
            data["buckets"] = self.buckets.to_json()
        else:
            data["counts"] = self.counts.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColumnState:
        state = cls(data["kind"], rows=int(data["rows"]), nulls=int(data["nulls"]))
        if state.kind == "other":
            return state
        state.nans, state.count = int(data["nans"]), int(data["count"])
        state.distinct = DistinctSketch.from_json(data["distinct"])
        if state.kind == "numeric":
            state.low, state.high = data["min"], data["max"]
            state.mean, state.squares = float(data["mean"]), float(data["squares"])
            state.buckets = ValueBuckets.from_json(data["buckets"])
            state.integers = bool(data.get("integers", False))
        else:
            state.counts = ValueCounts.from_json(data["counts"])
        return state


def _pick(choose: Any, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return float(choose(a, b))


@dataclass(frozen=True)
class BatchTally:
    """What a profile counted of one column in one batch, for checks that need no pass of their own.

    ``nulls`` and ``nans`` are the batch's; ``low`` and ``high`` (numeric columns: the smallest
    and largest value that is not NaN) cover every batch added so far, this one included.
    """

    nulls: int
    nans: int
    low: float | None
    high: float | None


class ColumnTally:
    """The :class:`BatchTally` of one column's batches without the rest of its profile.

    What a check needs before the commit (null and NaN counts, extremes) is a pass or two over
    the values, where the profile's buckets, moments and distinct sketch are a dozen: so the
    checks can be decided first and the profile finished while the offline table is encoded.
    Each block is read as :meth:`ColumnState.add` reads it, so the tally equals the profile's.
    """

    def __init__(self, kind: ColumnKind) -> None:
        self.kind = kind
        self.low: float | None = None
        self.high: float | None = None

    def add(self, column: pa.ChunkedArray) -> BatchTally:
        """Count one batch's values of the column; the extremes cover every batch so far."""
        nans = 0
        if self.kind == "numeric":
            for chunk in column.chunks:
                if len(chunk) > chunk.null_count:
                    nans += self._add_numbers(pc.drop_null(chunk) if chunk.null_count else chunk)
        return BatchTally(column.null_count, nans, self.low, self.high)

    def _add_numbers(self, array: pa.Array) -> int:
        if pa.types.is_decimal(array.type) or pa.types.is_float16(array.type):
            array = array.cast(pa.float64())
        raw = array.to_numpy(zero_copy_only=False)
        floating = pa.types.is_floating(array.type)
        nans = 0
        for begin in range(0, len(raw), _BLOCK):
            values = raw[begin : begin + _BLOCK]
            if not floating:  # the integers' extremes, as floats (the conversion keeps their order)
                low, high = float(values.min()), float(values.max())
            else:
                values = values.astype(np.float64, copy=False)
                low = float(values.min())
                if np.isnan(low):
                    nan = np.isnan(values)
                    nans += int(np.count_nonzero(nan))
                    values = values[~nan]
                    if not len(values):
                        continue
                    low = float(values.min())
                high = float(values.max())
            self.low = low if self.low is None else min(self.low, low)
            self.high = high if self.high is None else max(self.high, high)
        return nans


@dataclass
class ProfileState:
    """The mergeable state of a set of rows: a :class:`ColumnState` per profiled column."""

    rows: int
    columns: dict[str, ColumnState]

    @classmethod
    def empty(cls, schema: pa.Schema, columns: list[str]) -> ProfileState:
        return cls(0, {name: ColumnState(column_kind(schema.field(name).type)) for name in columns})

    def add(self, table: pa.Table) -> dict[str, BatchTally]:
        """Take one batch of rows (every profiled column must be in it); return its tally per column."""
        self.count_rows(table)
        scratch = Scratch.for_table(table, list(self.columns))  # one for every chunk of every column
        return {name: self.add_column(name, table.column(name), scratch) for name in self.columns}

    def count_rows(self, table: pa.Table) -> None:
        """Count a batch's rows (what :meth:`add` does besides :meth:`add_column` for every column)."""
        self.rows += table.num_rows

    def add_column(self, name: str, column: pa.ChunkedArray, scratch: Scratch | None = None) -> BatchTally:
        """Take one batch's values of one profiled column; return its tally.

        With :meth:`count_rows`, the pieces of :meth:`add`, for callers that profile a batch's
        columns on several threads at once: the columns' states are apart, so each column may go
        to another thread (each thread with its own ``scratch``), and the result is that of :meth:`add`.
        """
        state = self.columns[name]
        nulls, nans = state.nulls, state.nans
        for chunk in column.chunks:
            state.add(chunk, scratch)
        return BatchTally(state.nulls - nulls, state.nans - nans, state.low, state.high)

    def merge(self, other: ProfileState) -> ProfileState:
        """The state of both sets of rows (the same columns)."""
        columns = {name: state.merge(other.columns[name]) for name, state in self.columns.items()}
        return ProfileState(self.rows + other.rows, columns)

    def profile(self, edges: Edges, source: str = "") -> Profile:
        """The profile, histograms on ``edges`` (columns without edges get one bin)."""
        columns = {name: state.profile(name, edges.get(name, ())) for name, state in self.columns.items()}
        return Profile(rows=self.rows, columns=columns, source=source)

    def to_json(self, **extra: Any) -> str:
        """The state as JSON text (``extra``: more keys beside it, which :meth:`from_dict` ignores)."""
        columns = {name: state.to_json() for name, state in self.columns.items()}
        return json.dumps({"format": STATE_FORMAT, "rows": self.rows, "columns": columns, **extra})

    @classmethod
    def from_json(cls, text: str) -> ProfileState:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileState:
        return cls(int(data["rows"]), {n: ColumnState.from_json(c) for n, c in data["columns"].items()})


def choose_edges(state: ProfileState) -> Edges:
    """Histogram edges for the numeric columns with values: percentiles moved down to bucket boundaries."""
    edges: Edges = {}
    for name, column in state.columns.items():
        if column.kind == "numeric" and column.count and column.low is not None and column.high is not None:
            found = column.buckets.quantiles(EDGE_FRACTIONS, column.low, column.high)
            # infinite values are counted in the open-ended outer bins; an edge is always finite
            edges[name] = snap_to_buckets([v for v in found if math.isfinite(v)])
    return edges


def edges_to_json(edges: Edges) -> str:
    return json.dumps({"columns": {name: list(values) for name, values in edges.items()}})


def edges_from_json(text: str | None) -> Edges | None:
    if text is None:
        return None
    return {name: tuple(float(v) for v in values) for name, values in json.loads(text)["columns"].items()}


def version_edges(registry: Registry, version: ViewVersion) -> Edges | None:
    """The histogram edges the version's first materialization fixed (None: not fixed yet)."""
    return edges_from_json(registry.view_quality(version.id, "edges"))


def _histogram(values: np.ndarray, edges: tuple[float, ...]) -> tuple[int, ...]:
    bins = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    return tuple(int(c) for c in np.bincount(bins, minlength=len(edges) + 1))


def profile_table(
    table: pa.Table,
    *,
    columns: list[str] | None = None,
    edges: Edges | None = None,
    source: str = "",
) -> Profile:
    """Profile the rows of ``table`` in one pass.

    Args:
        table: the rows.
        columns: the columns to profile (default: all).
        edges: histogram edges per numeric column (bins as in :mod:`featurekit.quality.profile`);
            default: chosen as a view version's first materialization chooses them. A column
            missing from a given ``edges`` gets edges chosen the same way.
        source: what the rows are, for the profile's ``source``.
    """
    names = list(table.column_names) if columns is None else columns
    state = ProfileState.empty(table.schema, names)
    state.add(table)
    chosen = {**choose_edges(state), **(edges or {})}
    profiles = {}
    for name, column in state.columns.items():
        column_edges = chosen.get(name, ())
        if column.kind == "numeric" and column.buckets.histogram(column_edges) is None:
            # Edges off the bucket grid (not a view version's): count the values per bin directly.
            histogram = _histogram(_numbers(table.column(name)), column_edges)
            profiles[name] = replace(column.profile(name, ()), edges=column_edges, histogram=histogram)
        else:
            profiles[name] = column.profile(name, column_edges)
    return Profile(rows=state.rows, columns=profiles, source=source)


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    values: np.ndarray = pc.drop_null(column.combine_chunks()).cast(pa.float64()).to_numpy(zero_copy_only=False)
    kept: np.ndarray = values[~np.isnan(values)]
    return kept


def merge(profiles: list[ProfileState]) -> ProfileState:
    """The state of the union of the row sets (see the module docstring for what is exact)."""
    if not profiles:
        raise ValueError("merge needs at least one profile state")
    merged = profiles[0]
    for other in profiles[1:]:
        merged = merged.merge(other)
    return merged


class ProfileBuilder:
    """Accumulates one commit's profile state, batch by batch, in the materialization's own pass.

    Not thread-safe by itself: :class:`~featurekit.quality.inspection.Inspection` runs a batch's
    columns on its two workers (:meth:`ProfileState.add_column`), one batch at a time.
    """

    def __init__(self, version: ViewVersion, registry: Registry) -> None:
        self.version = version
        self.registry = registry
        self.state = ProfileState.empty(version.schema, feature_columns(version))

    def add(self, table: pa.Table) -> dict[str, BatchTally]:
        """Take one output batch; return what was counted of each column (see :class:`BatchTally`)."""
        return self.state.add(table)

    def records(self) -> dict[str, str]:
        """The commit's record: its rows' mergeable state (kind ``"profile"``)."""
        return {"profile": self.state.to_json()}

    def view_records(self) -> dict[str, str]:
        """The version's histogram edges, when this is the first commit with values to choose them from."""
        if not self.state.rows or self.registry.view_quality(self.version.id, "edges") is not None:
            return {}
        return {"edges": edges_to_json(choose_edges(self.state))}


class RowsProfiler:
    """A profile of rows that arrive in batches (a training set's feature columns, as written).

    :meth:`add_beside` profiles a batch on a worker thread while the caller goes on (writing the
    same batch to Parquet: pyarrow's writer and numpy release the GIL), one batch in flight at
    most; :meth:`result` waits for it, and :meth:`close` (always, e.g. in a ``finally``) stops
    the worker. The profile is the same either way: the batches are added in their order.
    """

    def __init__(self, columns: list[str], edges: Edges, source: str) -> None:
        self.columns = columns
        self.edges = edges
        self.source = source
        self.state: ProfileState | None = None
        self._worker: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def add(self, table: pa.Table) -> None:
        self._wait()
        self._add(table)

    def _add(self, table: pa.Table) -> None:
        if self.state is None:
            self.state = ProfileState.empty(table.schema, [c for c in self.columns if c in table.column_names])
        self.state.add(table)

    def add_beside(self, table: pa.Table) -> None:
        """:meth:`add` on the worker thread (an error in the batch before is raised here)."""
        self._wait()
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="featurekit-profile")
        self._pending = self._worker.submit(self._add, table)  # not add: it would wait for itself

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def result(self) -> Profile:
        self._wait()
        state = self.state or ProfileState(0, {})
        return state.profile({**choose_edges(state), **self.edges}, self.source)

    def close(self) -> None:
        """Stop the worker, after the batch in flight (idempotent)."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
