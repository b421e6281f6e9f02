"""The ASOF search of the point-in-time join over in-memory arrays (numpy), for the DuckDB engine.

Each feature row is one int64 ``code * span + offset`` (entity codes >= 0, as
:func:`featurekit.offline.window_blocks.encode` makes them; the offset orders event times): once
sorted, those keys put every entity's instants in time order, so a spine row's newest event
time at or before its instant is one binary search of its own key. Only these keys are sorted;
the engine then brings the rows of each matched (entity, event time) and breaks their ties in
SQL, exactly as its ``asof`` plan does after its ``ASOF JOIN``.

Nothing here knows DuckDB; the engine prepares the arrays.
"""

from __future__ import annotations

import numpy as np

# Keys stay below this, so that no sum or difference of two of them overflows int64.
_LIMIT = 1 << 62


def newest_times(
    codes: np.ndarray, times: np.ndarray, query_codes: np.ndarray, query_times: np.ndarray, ttl_us: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The queries with a row inside the TTL, and each one's newest event time (microseconds).

    A query ``i`` matches the greatest ``times[j]`` with ``codes[j] == query_codes[i]`` and
    ``query_times[i] - ttl_us <= times[j] <= query_times[i]``; ``query_codes`` is -1 for a spine
    row whose key has no rows. Returns the matched queries' indices (ascending) and event times.
    """
    if not len(codes) or not len(query_codes):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    low, high = int(times.min()), int(times.max())
    top = int(codes.max()) + 1
    distinct: np.ndarray | None = None
    if low > -_LIMIT and high < _LIMIT and top * (high - low + 2) < _LIMIT:
        span = high - low + 2  # offsets 1 .. span - 1 are instants; 0 is "before every row"
        offsets = times - (low - 1)
        asked = np.clip(query_times, low - 1, high + 1) - (low - 1)
        asked = np.minimum(asked, span - 1)
    else:  # event times too far apart for one int64 key with the codes: their ranks order them
        distinct = np.unique(times)
        span = len(distinct) + 1
        offsets = np.searchsorted(distinct, times) + 1
        asked = np.searchsorted(distinct, query_times, side="right")  # instants at or before each query
    ordered = np.sort(codes * span + offsets)
    known = query_codes >= 0
    found = np.searchsorted(ordered, np.where(known, query_codes * span + asked, -1), side="right") - 1
    key = ordered[np.maximum(found, 0)]
    hit = known & (found >= 0) & (key // span == query_codes)
    offset = key % span
    matched = offset + (low - 1) if distinct is None else distinct[np.maximum(offset - 1, 0)]
    if ttl_us is not None:
        # matched <= query time on a hit, so their difference is exact in uint64 (no int64 overflow)
        gap = query_times.view(np.uint64) - matched.astype(np.int64).view(np.uint64)
        hit &= gap <= np.uint64(ttl_us)
    query = np.flatnonzero(hit)
    return query, matched[query].astype(np.int64)
