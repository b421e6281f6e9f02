"""Aggregations of a window view (``from featurekit import agg``).

Each constructor records what to compute over the events of a window; :func:`featurekit.window_view`
pairs every aggregation with every window. A feature is named ``{column}_{fn}_{window}``
(``amount_sum_7d``; ``count_1h`` for :func:`count` of events); ``name=`` replaces the
``{column}_{fn}`` prefix (``agg.sum("amount", name="spend")`` gives ``spend_7d``).

Nulls in the aggregated column are ignored (as SQL does). On an empty window ``count``,
``count_distinct`` and ``sum`` give 0 and every other aggregation null; ``std`` and ``var`` are the
sample statistics, null for fewer than two values. ``first``, ``last`` and ``last_n`` order events
by event time, then created time (null first), then value, so equal times give one answer
everywhere; ``last_n`` lists the newest first.

>>> from featurekit import agg
>>> agg.sum("amount").prefix
'amount_sum'
>>> agg.count().prefix
'count'
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Literal

from featurekit.definitions import Location

Function = Literal["count", "sum", "mean", "min", "max", "std", "var", "count_distinct", "first", "last", "last_n"]

FUNCTIONS: tuple[str, ...] = (
    "count", "sum", "mean", "min", "max", "std", "var", "count_distinct", "first", "last", "last_n",
)  # fmt: skip
NUMERIC_ONLY = frozenset({"sum", "mean", "std", "var"})  # need an integer or float column
ORDERED = frozenset({"min", "max", "count_distinct", "first", "last", "last_n"})  # need comparable values

__all__ = [
    "Aggregation",
    "count",
    "count_distinct",
    "first",
    "last",
    "last_n",
    "max",
    "mean",
    "min",
    "std",
    "sum",
    "var",
]


@dataclass(frozen=True)
class Aggregation:
    """One aggregation: ``fn`` of ``column`` (None: ``count()`` of events), ``n`` for ``last_n``."""

    fn: Function
    column: str | None = None
    name: str | None = None
    n: int | None = None
    location: Location = field(default=Location("<unknown>", 0), compare=False)

    @property
    def prefix(self) -> str:
        """The feature name before the window suffix."""
        if self.name is not None:
            return self.name
        return self.fn if self.column is None else f"{self.column}_{self.fn}"

    def describe(self) -> dict[str, object]:
        """What the registry records (part of the view's version)."""
        return {"fn": self.fn, "column": self.column, "name": self.name, "n": self.n}


def _make(fn: Function, column: str | None, name: str | None, n: int | None = None) -> Aggregation:
    frame = sys._getframe(2)
    return Aggregation(fn, column, name, n, Location(frame.f_code.co_filename, frame.f_lineno))


def count(column: str | None = None, *, name: str | None = None) -> Aggregation:
    """Events in the window; with ``column``, its non-null values."""
    return _make("count", column, name)


def sum(column: str, *, name: str | None = None) -> Aggregation:
    """Sum of the non-null values (0 for an empty window)."""
    return _make("sum", column, name)


def mean(column: str, *, name: str | None = None) -> Aggregation:
    """Mean of the non-null values."""
    return _make("mean", column, name)


def min(column: str, *, name: str | None = None) -> Aggregation:
    """Smallest value."""
    return _make("min", column, name)


def max(column: str, *, name: str | None = None) -> Aggregation:
    """Greatest value."""
    return _make("max", column, name)


def std(column: str, *, name: str | None = None) -> Aggregation:
    """Sample standard deviation (null for fewer than two values)."""
    return _make("std", column, name)


def var(column: str, *, name: str | None = None) -> Aggregation:
    """Sample variance (null for fewer than two values)."""
    return _make("var", column, name)


def count_distinct(column: str, *, name: str | None = None) -> Aggregation:
    """Distinct non-null values (exact)."""
    return _make("count_distinct", column, name)


def first(column: str, *, name: str | None = None) -> Aggregation:
    """The oldest non-null value."""
    return _make("first", column, name)


def last(column: str, *, name: str | None = None) -> Aggregation:
    """The newest non-null value."""
    return _make("last", column, name)


def last_n(column: str, n: int, *, name: str | None = None) -> Aggregation:
    """The ``n`` newest non-null values, newest first (a list; null for an empty window)."""
    return _make("last_n", column, name, n)
