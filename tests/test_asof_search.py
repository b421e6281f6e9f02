"""The numpy ASOF searches of the asof_numpy and asof_sorted plans against a brute-force statement of the rule.

Event times are drawn near each other (one int64 key per (code, time)) and far apart (the path
that orders times by rank), spine instants anywhere in int64 microseconds, TTLs up to
``UNBOUNDED_TTL_US``; keys with no rows (-1) never match.
"""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from featurekit.offline.asof_search import newest_times, sorted_matches
from featurekit.offline.engine import UNBOUNDED_TTL_US

I64 = (-(2**63), 2**63 - 1)
near = st.integers(min_value=-5, max_value=5)
far = st.sampled_from([-(2**62) - 7, -(2**40), -1, 0, 3, 2**40, 2**62 + 11, I64[1] - 1])
time_value = st.one_of(near, far)
instant = st.one_of(near, far, st.sampled_from(list(I64)))
ttl = st.one_of(st.none(), st.integers(min_value=0, max_value=6), st.sampled_from([2**40, UNBOUNDED_TTL_US - 1]))


def brute(rows: list[tuple[int, int]], queries: list[tuple[int, int]], ttl_us: int | None) -> list[int | None]:
    out: list[int | None] = []
    for code, t in queries:
        eligible = [e for c, e in rows if c == code and e <= t and (ttl_us is None or e >= t - ttl_us)]
        out.append(max(eligible) if eligible else None)
    return out


def arrays(rows: list[tuple[int, int]], queries: list[tuple[int, int]]) -> tuple[np.ndarray, ...]:
    """The rows' codes and times, and the queries' (codes above 3 name no row's entity: -1)."""
    codes = np.array([c for c, _ in rows], dtype=np.int64)
    times = np.array([t for _, t in rows], dtype=np.int64)
    query_codes = np.array([c if c <= 3 else -1 for c, _ in queries], dtype=np.int64)
    query_times = np.array([t for _, t in queries], dtype=np.int64)
    return codes, times, query_codes, query_times


@settings(max_examples=300, deadline=None)
@example(rows=[(0, 0)], queries=[(0, I64[1])], ttl_us=None)
@example(rows=[(0, -(2**62) - 7), (1, 2**62 + 11)], queries=[(1, I64[1]), (0, I64[0])], ttl_us=3)
@example(rows=[(2, 5), (2, 5), (0, 1)], queries=[(2, 5), (1, 5), (-1, 5)], ttl_us=0)
@given(
    rows=st.lists(st.tuples(st.integers(min_value=0, max_value=3), time_value), max_size=30),
    queries=st.lists(st.tuples(st.integers(min_value=-1, max_value=4), instant), min_size=1, max_size=20),
    ttl_us=ttl,
)
def test_newest_times_follow_the_rule(rows, queries, ttl_us):
    codes, times, query_codes, query_times = arrays(rows, queries)
    query, matched = newest_times(codes, times, query_codes, query_times, ttl_us)
    got: list[int | None] = [None] * len(queries)
    for i, e in zip(query.tolist(), matched.tolist(), strict=True):
        got[i] = e
    expected = brute(rows, [(c if c <= 3 else -1, t) for c, t in queries], ttl_us)
    assert got == expected


@settings(max_examples=300, deadline=None)
@example(rows=[(0, 0)], queries=[(0, I64[1])], ttl_us=None)
@example(rows=[(2, 5), (2, 5), (0, 1), (2, 5)], queries=[(2, 5), (2, 6), (1, 5), (-1, 5)], ttl_us=0)
@example(rows=[(0, -(2**62) - 7), (1, 2**62 + 11), (1, 2**62 + 11)], queries=[(1, I64[1]), (0, I64[0])], ttl_us=3)
@given(
    rows=st.lists(st.tuples(st.integers(min_value=0, max_value=3), time_value), max_size=30),
    queries=st.lists(st.tuples(st.integers(min_value=-1, max_value=4), instant), min_size=1, max_size=20),
    ttl_us=ttl,
)
def test_sorted_matches_are_every_row_of_the_matched_instant(rows, queries, ttl_us):
    """Each matched query gets exactly the rows of its (code, newest event time), unmatched ones nothing."""
    codes, times, query_codes, query_times = arrays(rows, queries)
    found = sorted_matches(codes, times, query_codes, query_times, ttl_us)
    got: list[set[int] | None] = [None] * len(queries)
    for k, i in enumerate(found.query.tolist()):
        assert got[i] is None  # each query at most once
        got[i] = set(found.order[found.first[k] : found.last[k] + 1].tolist())
        assert len(got[i]) == found.last[k] - found.first[k] + 1
        assert bool(found.single()[k]) == (len(got[i]) == 1)
    newest = brute(rows, [(c if c <= 3 else -1, t) for c, t in queries], ttl_us)
    expected = [
        None if e is None else {j for j, (c, t) in enumerate(rows) if c == query_codes[i] and t == e}
        for i, e in enumerate(newest)
    ]
    assert got == expected
