"""A brute-force pure-Python oracle of window features, written from the rule and nothing else.

For a spine row (keys k, time t truncated to microseconds; naive means UTC) and a window w, a
window feature aggregates the events of keys k with event time e where
``t - delay - w <= e < t - delay``. Every event counts (duplicates, ties); with ``known_at`` only
events created at or before it count (a null created time is never known). Nulls in the
aggregated column are ignored. On an empty window ``count``, ``count(col)``, ``count_distinct``
give 0 and ``sum`` 0 (int for integer columns, float otherwise); everything else is null.
``std``/``var`` are sample statistics (null below two values). ``first``/``last``/``last_n``
order events by (event time, created time with null first, value) ascending; ``last_n`` lists
the newest first.

Times are integers: microseconds since the Unix epoch, UTC. Nothing here imports featurekit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

US = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FLOAT_REL = 1e-9
TOLERANT = frozenset({"sum", "mean", "std", "var"})  # (sum only on float columns)


def to_us(moment: datetime | timedelta) -> int:
    """Microseconds since the epoch of an instant (naive = UTC), or of a duration."""
    if isinstance(moment, timedelta):
        return moment // timedelta(microseconds=1)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_us(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def suffix(window_us: int) -> str:
    """The window as written in a feature name: the largest of d, h, m, s that divides it."""
    assert window_us > 0
    assert window_us % US == 0
    seconds = window_us // US
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Agg:
    """One aggregation as the oracle understands it (mirrors ``featurekit.agg`` by hand)."""

    fn: str
    column: str | None = None
    n: int | None = None
    name: str | None = None

    @property
    def prefix(self) -> str:
        if self.name is not None:
            return self.name
        return self.fn if self.column is None else f"{self.column}_{self.fn}"

    def code(self) -> str:
        """The ``agg.*(...)`` call that declares it in a feature module."""
        args = [] if self.column is None else [repr(self.column)]
        if self.n is not None:
            args.append(str(self.n))
        if self.name is not None:
            args.append(f"name={self.name!r}")
        return f"agg.{self.fn}({', '.join(args)})"


@dataclass(frozen=True)
class Feature:
    name: str
    agg: Agg
    window_us: int


def features_of(aggs: Sequence[Agg], windows: Sequence[timedelta]) -> list[Feature]:
    """Every aggregation over every window, aggregation-major."""
    return [Feature(f"{a.prefix}_{suffix(to_us(w))}", a, to_us(w)) for a in aggs for w in windows]


@dataclass(frozen=True)
class Event:
    """One row of the view function's output."""

    key: Any
    time_us: int
    created_us: int | None = None
    values: Mapping[str, Any] = field(default_factory=dict)


def window_events(
    events: Iterable[Event], key: Any, t_us: int, window_us: int, delay_us: int, known_at_us: int | None = None
) -> list[Event]:
    """The events a window at ``t_us`` covers: ``t - delay - w <= e < t - delay``."""
    end = t_us - delay_us
    start = end - window_us
    chosen = []
    for event in events:
        if event.key != key:
            continue
        if not start <= event.time_us < end:
            continue
        if known_at_us is not None and (event.created_us is None or event.created_us > known_at_us):
            continue
        chosen.append(event)
    return chosen


@dataclass(frozen=True)
class Expected:
    """An oracle value; ``abs_tol`` set means "a float within tolerance", else exact equality."""

    value: Any
    abs_tol: float | None = None

    def matches(self, actual: Any) -> bool:
        if self.value is None or actual is None:
            return self.value is None and actual is None
        if self.abs_tol is None:
            return type(actual) is type(self.value) and _exact(actual, self.value)
        if not isinstance(actual, float) or math.isnan(actual):
            return False
        return math.isclose(actual, self.value, rel_tol=FLOAT_REL, abs_tol=self.abs_tol)


def _exact(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(type(x) is type(y) and x == y for x, y in zip(a, b, strict=True))
    return bool(a == b)


def aggregate(agg: Agg, events: Sequence[Event], integer: bool) -> Expected:
    """``agg`` over ``events`` (already the window's), by the definition; ``integer``: the column is."""
    if agg.fn == "count" and agg.column is None:
        return Expected(len(events))
    column = agg.column
    assert column is not None
    kept = [e for e in events if e.values[column] is not None]
    values = [e.values[column] for e in kept]
    scale = 1.0
    for v in values:
        if isinstance(v, (int, float)):
            scale = max(scale, abs(float(v)))
    fn = agg.fn
    if fn == "count":
        return Expected(len(values))
    if fn == "count_distinct":
        return Expected(len(set(values)))
    if fn == "sum":
        if integer:
            total_int = 0
            for v in values:
                total_int += v
            return Expected(total_int)
        total = 0.0
        for v in values:
            total += v
        # a float sum may differ in its last bits with the order of summation
        return Expected(total, FLOAT_REL * scale * max(1, len(values)))
    if not values:
        return Expected(None)
    if fn == "mean":
        total = 0.0
        for v in values:
            total += v
        return Expected(total / len(values), FLOAT_REL * scale)
    if fn in ("var", "std"):
        if len(values) < 2:
            return Expected(None)
        mean = math.fsum(values) / len(values)
        squares = 0.0
        for v in values:
            squares += (v - mean) ** 2
        var = squares / (len(values) - 1)
        if fn == "var":
            return Expected(var, FLOAT_REL * scale * scale)
        return Expected(math.sqrt(var), FLOAT_REL * scale)
    if fn == "min":
        return Expected(min(values))
    if fn == "max":
        return Expected(max(values))
    ordered = sorted(kept, key=lambda e: (e.time_us, _created_rank(e.created_us), e.values[column]))
    if fn == "first":
        return Expected(ordered[0].values[column])
    if fn == "last":
        return Expected(ordered[-1].values[column])
    if fn == "last_n":
        assert agg.n is not None
        return Expected([e.values[column] for e in reversed(ordered)][: agg.n])
    raise AssertionError(f"unknown aggregation {fn}")


def _created_rank(created_us: int | None) -> tuple[int, int]:
    return (0, 0) if created_us is None else (1, created_us)


def expected_row(
    features: Sequence[Feature],
    events: Sequence[Event],
    key: Any,
    t_us: int,
    delay_us: int,
    integer_columns: Iterable[str],
    known_at_us: int | None = None,
) -> dict[str, Expected]:
    """Every feature of one spine row (keys ``key`` at ``t_us``)."""
    integers = set(integer_columns)
    row = {}
    for feature in features:
        chosen = window_events(events, key, t_us, feature.window_us, delay_us, known_at_us)
        row[feature.name] = aggregate(feature.agg, chosen, feature.agg.column in integers)
    return row


def mismatches(expected: Sequence[Mapping[str, Expected]], actual: Mapping[str, Sequence[Any]]) -> list[str]:
    """Every cell where ``actual`` (columns, as lists) differs from the oracle's rows; empty when all agree."""
    found = []
    for index, row in enumerate(expected):
        for name, want in row.items():
            if name not in actual:
                found.append(f"column {name!r} is missing (have {sorted(actual)})")
                continue
            got = actual[name][index]
            if not want.matches(got):
                found.append(f"row {index} {name}: got {got!r}, oracle says {want.value!r}")
    return found
