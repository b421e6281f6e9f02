"""A one-entity lookup's scalar path equals the many-entity path.

:meth:`WindowValues.compute` aggregates a lone entity's events with scalars (most lookups) and
several entities' with arrays over all their events. Both give the same Python values of the same
types: exactly, except float sums and what derives from them (``sum`` of a float column, ``mean``,
``std``, ``var``), which add in another order (``reduce`` is pairwise, ``reduceat`` sequential)
and agree within :data:`~featurekit.windows.FLOAT_TOLERANCE` of the values' magnitude, as every
path does. The oracle tests (tests/test_windows_property.py) check both paths against the rule;
this one checks them against each other on columns of every numeric width, with nulls, NaN,
infinities, negative zero, ties and integers at the edges of their types.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from featurekit.online.window_state import CREATED, ORDER
from featurekit.online.window_values import WindowValues
from featurekit.windows import FLOAT_TOLERANCE, WindowFeature, tolerant

FNS = ["count", "sum", "mean", "min", "max", "std", "var", "first", "last", "last_n", "count_distinct"]
WINDOWS_US = [1, 7, 30, 1_000]
COLUMNS = {
    "f64": pa.float64(),
    "f32": pa.float32(),
    "i64": pa.int64(),
    "i8": pa.int8(),
    "u64": pa.uint64(),
}
LAYOUT = pa.schema(
    [pa.field(ORDER, pa.int64()), pa.field(CREATED, pa.int64())]
    + [pa.field(n, t) for n, t in COLUMNS.items()]
    + [pa.field("s", pa.string())]
)
FLOATS = st.one_of(
    st.none(),
    st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 1e300, -1e300, 0.1]),
    st.floats(-1e6, 1e6, allow_nan=False),
)


def _features() -> list[WindowFeature]:
    found = [WindowFeature(f"count_{w}", "count", None, w) for w in WINDOWS_US]
    for column in [*COLUMNS, "s"]:
        for fn in FNS:
            if column == "s" and fn in ("sum", "mean", "std", "var"):
                continue
            for w in WINDOWS_US:
                found.append(WindowFeature(f"{column}_{fn}_{w}", fn, column, w, 2 if fn == "last_n" else None))
    return found


@st.composite
def states(draw: st.DrawFn) -> pa.RecordBatch:
    size = draw(st.integers(1, 40))
    times = sorted(draw(st.lists(st.integers(0, 60), min_size=size, max_size=size)))
    created = sorted(draw(st.lists(st.integers(-5, 5), min_size=size, max_size=size)))
    columns: dict[str, Any] = {ORDER: pa.array(times, pa.int64()), CREATED: pa.array(created, pa.int64())}
    columns["f64"] = pa.array(draw(st.lists(FLOATS, min_size=size, max_size=size)), pa.float64())
    columns["f32"] = pa.array(
        draw(st.lists(st.one_of(st.none(), st.floats(-1e3, 1e3, width=32)), min_size=size, max_size=size)),
        pa.float32(),
    )
    big = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.integers(-3, 3))
    columns["i64"] = pa.array(draw(st.lists(big, min_size=size, max_size=size)), pa.int64())
    small = st.one_of(st.none(), st.integers(-128, 127))
    columns["i8"] = pa.array(draw(st.lists(small, min_size=size, max_size=size)), pa.int8())
    unsigned = st.one_of(st.none(), st.integers(0, 2**64 - 1), st.integers(0, 3))
    columns["u64"] = pa.array(draw(st.lists(unsigned, min_size=size, max_size=size)), pa.uint64())
    words = st.one_of(st.none(), st.sampled_from(["a", "b", "c", ""]))
    columns["s"] = pa.array(draw(st.lists(words, min_size=size, max_size=size)), pa.string())
    return pa.RecordBatch.from_pydict(columns, schema=LAYOUT)


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types; NaN equals NaN, and 0.0 and -0.0 differ (bit for bit)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes() or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def close(a: Any, b: Any, scale: float) -> bool:
    """Equal within the tolerance of values of magnitude ``scale`` (NaN only equals NaN)."""
    if not isinstance(a, float) or not isinstance(b, float):
        return same(a, b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE * scale)


def magnitude(batch: pa.RecordBatch, feature: WindowFeature) -> float:
    """The scale a float aggregate's rounding is relative to: the sum of the column's finite magnitudes."""
    assert feature.column is not None
    values = batch.column(feature.column).to_numpy(zero_copy_only=False).astype(np.float64)
    total = float(np.nansum(np.abs(values[np.isfinite(values)]))) + 1.0
    return total * total if feature.fn == "var" else total


@settings(max_examples=100, deadline=None)
@given(
    batch=states(),
    other=states(),
    at=st.integers(-2, 70),
    delay=st.sampled_from([0, 1, 5]),
)
def test_one_entity_equals_its_values_in_a_lookup_of_several(batch, other, at, delay):
    values = WindowValues(_features(), delay, LAYOUT)
    alone = values.compute([batch], at)
    together = values.compute([other, None, batch], at)  # the array path over both entities' events
    for index, (feature, one, many) in enumerate(zip(values.features, alone, together, strict=True)):
        if tolerant(feature, LAYOUT):
            assert close(one[0], many[2], magnitude(batch, feature)), f"{feature.name}: {one[0]!r} vs {many[2]!r}"
        else:
            assert same(one[0], many[2]), f"{feature.name}: alone {one[0]!r}, with another entity {many[2]!r}"
        assert same(many[1], values.empty[index])
