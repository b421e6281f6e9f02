"""The ASOF search of the point-in-time join over in-memory arrays (numpy), for the DuckDB engine.

Each feature row is one int64 ``code * span + offset`` (entity codes >= 0, as
:func:`featurekit.offline.window_blocks.encode` makes them; the offset orders event times): once
sorted (by polars, on every core: 4x numpy's ``np.sort`` on 10M keys here), those keys put every
entity's instants in time order, so a spine row's newest event
time at or before its instant is one binary search of its own key. Only these keys are sorted;
the ``asof_numpy`` plan then brings the rows of each matched (entity, event time) and breaks their
ties in SQL, exactly as the ``asof`` plan does after its ``ASOF JOIN``. :func:`sorted_matches`
(the ``asof_sorted`` plan) sorts the rows' positions instead, so that the rows of each matched
instant are found by position: one run of the sorted keys.

Nothing here knows DuckDB; the engine prepares the arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

# Keys stay below this, so that no sum or difference of two of them overflows int64.
_LIMIT = 1 << 62


@dataclass(frozen=True)
class _Keys:
    """The fused int64 keys of the rows and of the queries, and how to read a key's event time."""

    rows: np.ndarray
    asked: np.ndarray  # -1 for a query whose key has no rows: below every row's key
    span: int
    low: int
    distinct: np.ndarray | None  # the distinct event times, when offsets are their ranks

    def event_time(self, keys: np.ndarray) -> np.ndarray:
        offset = keys % self.span
        times: np.ndarray = (
            offset + (self.low - 1) if self.distinct is None else self.distinct[np.maximum(offset - 1, 0)]
        )
        return times


def _fused(
    codes: np.ndarray, times: np.ndarray, query_codes: np.ndarray, query_times: np.ndarray, scratch: bool
) -> _Keys:
    low, high = int(times.min()), int(times.max())
    top = int(codes.max()) + 1
    distinct: np.ndarray | None = None
    # The rows' keys are built in one array, in place (in ``codes`` itself when it is scratch): a
    # fresh array of 10M rows costs more in page faults than the arithmetic (up to 2.5 ms per MB
    # on a VM that hands freed memory back).
    own = scratch and codes.dtype == np.int64 and codes.flags.writeable
    if low > -_LIMIT and high < _LIMIT and top * (high - low + 2) < _LIMIT:
        span = high - low + 2  # offsets 1 .. span - 1 are instants; 0 is "before every row"
        rows = np.multiply(codes, span, out=codes) if own else np.multiply(codes, span, dtype=np.int64)
        rows += times  # |code * span + time| < 2 ** 63: both are below _LIMIT
        rows -= low - 1
        asked = np.clip(query_times, low - 1, high + 1) - (low - 1)
        asked = np.minimum(asked, span - 1)
    else:  # event times too far apart for one int64 key with the codes: their ranks order them
        distinct = np.unique(times)
        span = len(distinct) + 1
        rows = np.multiply(codes, span, out=codes) if own else np.multiply(codes, span, dtype=np.int64)
        rows += np.searchsorted(distinct, times)
        rows += 1
        asked = np.searchsorted(distinct, query_times, side="right")  # instants at or before each query
    keys = np.where(query_codes >= 0, query_codes * span + asked, -1)
    return _Keys(rows, keys, span, low, distinct)


def _sorted(values: np.ndarray) -> np.ndarray:
    """``values`` in ascending order (polars' sort: 0.17 s for 10M int64 on 2 cores, np.sort 0.72 s)."""
    ordered: np.ndarray = pl.Series(values).sort().to_numpy()
    return ordered


def _order(values: np.ndarray) -> np.ndarray:
    """The positions that sort ``values``, equal values in position order (a stable argsort;
    polars': 3x numpy's on 1M int64 here)."""
    frame = pl.DataFrame({"k": values}).with_row_index("i").sort("k", maintain_order=True)
    positions: np.ndarray = frame.get_column("i").to_numpy().astype(np.int64)
    return positions


def _inside(query_times: np.ndarray, matched: np.ndarray, ttl_us: int | None) -> np.ndarray | bool:
    if ttl_us is None:
        return True
    # matched <= query time on a hit, so their difference is exact in uint64 (no int64 overflow)
    gap = query_times.view(np.uint64) - matched.astype(np.int64).view(np.uint64)
    inside: np.ndarray = gap <= np.uint64(ttl_us)
    return inside


def newest_times(
    codes: np.ndarray,
    times: np.ndarray,
    query_codes: np.ndarray,
    query_times: np.ndarray,
    ttl_us: int | None,
    *,
    scratch: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The queries with a row inside the TTL, and each one's newest event time (microseconds).

    A query ``i`` matches the greatest ``times[j]`` with ``codes[j] == query_codes[i]`` and
    ``query_times[i] - ttl_us <= times[j] <= query_times[i]``; ``query_codes`` is -1 for a spine
    row whose key has no rows. Returns the matched queries' indices (ascending) and event times.
    With ``scratch``, ``codes`` (int64, writeable) is overwritten instead of copied.
    """
    if not len(codes) or not len(query_codes):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    keys = _fused(codes, times, query_codes, query_times, scratch)
    ordered = _sorted(keys.rows)
    found = np.searchsorted(ordered, keys.asked, side="right") - 1
    key = ordered[np.maximum(found, 0)]
    hit = (query_codes >= 0) & (found >= 0) & (key // keys.span == query_codes)
    matched = keys.event_time(key)
    hit &= _inside(query_times, matched, ttl_us)
    query = np.flatnonzero(hit)
    return query, matched[query].astype(np.int64)


@dataclass(frozen=True)
class Matches:
    """Each matched query's rows: ``order[first[k]:last[k] + 1]`` share its (code, event time).

    ``rows`` holds every row of the matched instants once, ascending; ``ranks[j]`` is the place in
    ``rows`` of the ``j``-th row in key order, so ``order == rows[ranks]``.
    """

    query: np.ndarray  # the matched queries' indices
    first: np.ndarray
    last: np.ndarray
    rows: np.ndarray  # the rows of the matched instants, ascending
    ranks: np.ndarray  # indices into ``rows``, in key order

    @property
    def order(self) -> np.ndarray:
        """The rows of the matched instants, in key order."""
        ordered: np.ndarray = self.rows[self.ranks]
        return ordered

    def single(self) -> np.ndarray:
        """Whether each match has one row (no tie to break)."""
        same: np.ndarray = self.first == self.last
        return same


def sorted_matches(
    codes: np.ndarray,
    times: np.ndarray,
    query_codes: np.ndarray,
    query_times: np.ndarray,
    ttl_us: int | None,
    *,
    scratch: bool = False,
) -> Matches:
    """The rows of each query's match under :func:`newest_times`' rule, found by position.

    The keys are sorted without their positions (an ``argsort`` of every row costs 2-3x more);
    the queries are searched in key order, so that each binary search starts where
    the previous one ended (1M queries in 10M keys: 0.1 s instead of 1.3 s). Only the rows whose
    key some query matched (a hash lookup in polars, on every core) are then sorted with their
    positions; their order among equal keys is left to the caller's tie-break. With ``scratch``,
    ``codes`` (int64, writeable) is overwritten instead of copied.
    """
    empty = np.zeros(0, dtype=np.int64)
    if not len(codes) or not len(query_codes):
        return Matches(empty, empty, empty, empty, empty)
    keys = _fused(codes, times, query_codes, query_times, scratch)
    ordered = _sorted(keys.rows)
    by_key = _order(keys.asked)
    asked = keys.asked[by_key]
    found = np.searchsorted(ordered, asked, side="right") - 1
    key = ordered[np.maximum(found, 0)]
    asked_codes = query_codes[by_key]
    hit = (asked_codes >= 0) & (found >= 0) & (key // keys.span == asked_codes)
    hit &= _inside(query_times[by_key], keys.event_time(key), ttl_us)
    key = key[hit]  # ascending, as the queries are
    wanted = key[np.concatenate(([True], key[1:] != key[:-1]))] if len(key) else key
    member = pl.Series(keys.rows).is_in(pl.Series(wanted).implode()).to_numpy()
    rows = np.flatnonzero(member)
    row_keys = keys.rows[rows]
    in_order = _order(row_keys)
    row_keys = row_keys[in_order]
    first = np.searchsorted(row_keys, key, side="left")
    last = np.searchsorted(row_keys, key, side="right") - 1
    return Matches(by_key[hit], first, last, rows, in_order)
