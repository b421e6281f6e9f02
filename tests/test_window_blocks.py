"""The key-range path of the window blocks (``window_blocks.answer``) against the brute-force oracle.

Training sets at test sizes fit in one key range; here the ranges are made tiny so that every
example is split into many, answered in one or two threads. Results must equal the oracle
(exactly, floats within its tolerance), must not depend on the number of threads, and must be
the same bit for bit whatever order the events arrive in.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from featurekit.offline import window_blocks
from featurekit.windows import WindowFeature
from tests.windows_oracle import Agg, Event, aggregate, window_events

WINDOWS = (1, 7, 30)
AGGS = [
    Agg("count"),
    Agg("count", "f"),
    Agg("sum", "f"),
    Agg("mean", "f"),
    Agg("min", "f"),
    Agg("max", "f"),
    Agg("std", "f"),
    Agg("var", "f"),
    Agg("count", "i"),
    Agg("sum", "i"),
    Agg("min", "i"),
    Agg("max", "i"),
]
FEATURES = [WindowFeature(f"{a.prefix}_{w}", a.fn, a.column, w) for a in AGGS for w in WINDOWS]
KEY_SETS = ([0, 1, 2, 3, 4, 5], [7, 9, 2**40], [-(2**62), 3, 2**62])  # ranges of keys and distinct keys

Case = tuple[list[Event], list[tuple[int | None, int]], int]  # events, spine (key, t), delay
values = st.one_of(st.none(), st.sampled_from([0.5, -2.25, 1e6, 3.0, 0.1]))
integers = st.one_of(st.none(), st.integers(-5, 5))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    keys = draw(st.sampled_from(KEY_SETS))
    events = draw(
        st.lists(
            st.builds(
                lambda k, t, f, i: Event(k, t, values={"f": f, "i": i}),
                st.sampled_from(keys),
                st.integers(0, 50),
                values,
                integers,
            ),
            max_size=60,
        )
    )
    events += draw(st.lists(st.sampled_from(events), max_size=5)) if events else []  # duplicates
    asked = draw(st.lists(st.tuples(st.sampled_from([*keys, 11, None]), st.integers(-5, 90)), max_size=30))
    return events, asked, draw(st.sampled_from([0, 2]))


def _run(
    events: list[Event], asked: list[tuple[int | None, int]], delay: int, *, block: int, threads: int
) -> dict[str, list[object]]:
    keys = pa.chunked_array([pa.array([e.key for e in events], pa.int64())])
    spine_keys = pa.chunked_array([pa.array([k for k, _ in asked], pa.int64())])
    codes, query_codes = window_blocks.encode(keys, spine_keys)
    times = np.array([e.time_us for e in events], dtype=np.int64)
    columns = {
        "f": pa.array([e.values["f"] for e in events], pa.float64()),
        "i": pa.array([e.values["i"] for e in events], pa.int64()),
    }
    ends = np.array([t for _, t in asked], dtype=np.int64) - delay
    order, found = window_blocks.answer(
        codes, times, columns, FEATURES, query_codes=query_codes, ends=ends, threads=threads, block=block
    )
    assert sorted(order.tolist()) == list(range(len(asked)))
    result: dict[str, list[object]] = {}
    for name, array in found.items():
        by_row: list[object] = [None] * len(asked)
        for row, value in zip(order.tolist(), array.to_pylist(), strict=True):
            by_row[row] = value
        result[name] = by_row
    return result


@settings(max_examples=150, deadline=None)
@given(cases())
def test_key_ranges_match_the_oracle(case: Case) -> None:
    events, asked, delay = case
    one_range = _run(events, asked, delay, block=10**9, threads=1)
    for block, threads in ((1, 1), (3, 2), (8, 2)):
        ranged = _run(events, asked, delay, block=block, threads=threads)
        for agg in AGGS:
            for window in WINDOWS:
                name = f"{agg.prefix}_{window}"
                for row, (key, t) in enumerate(asked):
                    covered = [] if key is None else window_events(events, key, t, window, delay)
                    expected = aggregate(agg, covered, integer=agg.column == "i")
                    got = ranged[name][row]
                    assert expected.matches(got), (name, key, t, block, expected, got)
                    assert expected.matches(one_range[name][row]), (name, key, t, expected, one_range[name][row])
    # The ranges come from the data alone: the thread count changes nothing, bit for bit.
    assert _run(events, asked, delay, block=3, threads=1) == _run(events, asked, delay, block=3, threads=2)


@settings(max_examples=80, deadline=None)
@given(cases(), st.data())
def test_row_order_changes_nothing(case: Case, data: st.DataObject) -> None:
    events, asked, delay = case
    shuffled = data.draw(st.permutations(events))
    for block in (2, 10**9):
        first = _run(events, asked, delay, block=block, threads=2)
        again = _run(shuffled, asked, delay, block=block, threads=2)
        assert repr(first) == repr(again)  # repr: NaN-free floats compared bit for bit as text
