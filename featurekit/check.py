"""Checks a view's output must pass before it is committed (``fk.check``).

Pass them to :func:`featurekit.feature_view` or :func:`featurekit.window_view` as ``checks=[...]``
with ``on_check_failure="fail"`` (the default: a failing check raises
:class:`~featurekit.errors.CheckError` and nothing is committed, offline or online) or ``"warn"``
(the data is committed, the failure recorded and reported as a
:class:`~featurekit.quality.checks.CheckWarning`).

Checks run on every materialization and push, over the view function's output (for a window view,
its per-event rows), after the output is cast to the applied schema and before anything is written:

* ``not_null(col, max_fraction=0.0)``: the share of rows whose ``col`` is null or NaN is at most
  ``max_fraction``.
* ``between(col, low, high)``: every non-null value is in ``[low, high]`` (inclusive; ``None``
  leaves that side open; a NaN is outside). The column must be numeric.
* ``unique_keys()``: no two rows share (join keys, event time[, created time]).
* ``row_count(min=None, max=None)``: the materialized window has ``min <= rows <= max``. A push's
  size is its caller's batch, not the data's, so pushes record this check as skipped.
* ``freshness(max_age)``: the newest output event time is at most ``max_age`` before the window's
  end (a push's window ends now). Measured against the window, not the clock, so a backfill of an
  old window is not "stale"; an output without rows fails it.
* ``custom(fn, name=None)``: ``fn`` gets the output in the view's frame library (polars, pandas or
  Arrow) and returns ``(ok, observed)``. It sees each batch of the output on its own (all rows of
  an entity are in one batch; a materialization reads ``batch_rows`` source rows per batch), so
  memory stays bounded; the check fails when any batch fails. On the Spark engine a batch is one
  executor partition's output (the same ``batch_rows`` partitioning by entity), read back whole
  from its Parquet part, so ``custom`` and ``unique_keys`` see the batches DuckDB's would.

Checks are metadata: adding, removing or editing them changes neither the view's version nor its
data version. The checks that run are those of the loaded code; ``featurekit apply`` records them
(a custom check by its name) so that ``featurekit show`` lists them.

>>> from featurekit import check
>>> check.not_null("conv_rate", max_fraction=0.01).name
'not_null(conv_rate)'
>>> check.between("conv_rate", 0, 1).threshold
'every value in [0, 1]'
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from featurekit.definitions import Location

CheckKind = Literal["not_null", "between", "unique_keys", "row_count", "freshness", "custom"]
OnCheckFailure = Literal["fail", "warn"]
ON_CHECK_FAILURE: tuple[str, ...] = ("fail", "warn")

__all__ = ["Check", "between", "custom", "freshness", "not_null", "row_count", "unique_keys"]


@dataclass(frozen=True)
class Check:
    """One check of a view's output: what :mod:`featurekit.check`'s constructors return."""

    kind: CheckKind
    column: str | None = None
    max_fraction: Any = None
    low: Any = None
    high: Any = None
    min_rows: Any = None
    max_rows: Any = None
    max_age: Any = None
    function: Callable[[Any], Any] | None = field(default=None, compare=False)
    label: str | None = None
    location: Location = field(default=Location("<unknown>", 0), compare=False)

    @property
    def name(self) -> str:
        """How results and errors name the check, e.g. ``not_null(conv_rate)``."""
        if self.kind == "custom":
            return f"custom({self.label})"
        if self.kind == "between":
            return f"between({self.column}, {_number(self.low)}, {_number(self.high)})"
        if self.kind == "row_count":
            bounds = [f"{k}={v}" for k, v in (("min", self.min_rows), ("max", self.max_rows)) if v is not None]
            return f"row_count({', '.join(bounds)})"
        if self.kind == "freshness":
            return f"freshness({self.max_age})"
        return f"{self.kind}({self.column or ''})"

    @property
    def threshold(self) -> str:
        """What passing means, in words."""
        if self.kind == "not_null":
            return f"null or NaN fraction <= {_number(self.max_fraction)}"
        if self.kind == "between" and self.low is None:
            return f"every value <= {_number(self.high)}"
        if self.kind == "between" and self.high is None:
            return f"every value >= {_number(self.low)}"
        if self.kind == "between":
            return f"every value in [{_number(self.low)}, {_number(self.high)}]"
        if self.kind == "unique_keys":
            return "no two rows with the same keys and timestamps"
        if self.kind == "row_count":
            low = "" if self.min_rows is None else f"{self.min_rows} <= "
            high = "" if self.max_rows is None else f" <= {self.max_rows}"
            return f"{low}rows{high}"
        if self.kind == "freshness":
            return f"newest event at most {self.max_age} before the window's end"
        return "the function returns ok"

    def describe(self) -> dict[str, Any]:
        """What the registry records of the check (view metadata; a custom check by its name)."""
        described: dict[str, Any] = {"kind": self.kind, "name": self.name, "threshold": self.threshold}
        if self.column is not None:
            described["column"] = self.column
        return described


def _caller() -> Location:
    frame = sys._getframe(2)
    return Location(frame.f_code.co_filename, frame.f_lineno)


def _number(value: Any) -> str:
    if value is None:
        return "None"
    return f"{value:g}" if isinstance(value, float) else str(value)


def not_null(column: str, max_fraction: float = 0.0) -> Check:
    """At most ``max_fraction`` (0 to 1) of the rows have a null or NaN ``column``."""
    return Check("not_null", column=column, max_fraction=max_fraction, location=_caller())


def between(column: str, low: float | None, high: float | None) -> Check:
    """Every non-null value of the numeric ``column`` is in ``[low, high]`` (``None``: that side open)."""
    return Check("between", column=column, low=low, high=high, location=_caller())


def unique_keys() -> Check:
    """No two output rows share the join keys, the event time and (if declared) the created time."""
    return Check("unique_keys", location=_caller())


def row_count(min: int | None = None, max: int | None = None) -> Check:
    """A materialized window has at least ``min`` and at most ``max`` rows (skipped by pushes)."""
    return Check("row_count", min_rows=min, max_rows=max, location=_caller())


def freshness(max_age: timedelta) -> Check:
    """The newest event is at most ``max_age`` before the window's end (a push's: now)."""
    return Check("freshness", max_age=max_age, location=_caller())


def custom(fn: Callable[[Any], Any], name: str | None = None) -> Check:
    """``fn(frame) -> (ok, observed)`` on each output batch, in the view's frame library.

    ``name`` defaults to the function's qualified name; it is what results and metadata record.
    """
    label = name if name is not None else getattr(fn, "__qualname__", None) or repr(fn)
    return Check("custom", function=fn, label=label, location=_caller())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_problem(item: Check) -> str | None:
    """What is wrong with one check's arguments (knowable without the view's output), or None."""
    if item.kind in ("not_null", "between") and (not isinstance(item.column, str) or not item.column):
        return "needs a column name"
    if item.kind == "not_null" and not (_is_number(item.max_fraction) and 0 <= item.max_fraction <= 1):
        return f"max_fraction must be a number from 0 to 1, got {item.max_fraction!r}"
    if item.kind == "between":
        if item.low is None and item.high is None:
            return "needs low or high (or both)"
        for side in ("low", "high"):
            value = getattr(item, side)
            if value is not None and not _is_number(value):
                return f"{side} must be a finite number or None, got {value!r}"
        if item.low is not None and item.high is not None and item.low > item.high:
            return f"low {item.low!r} is above high {item.high!r}"
    if item.kind == "row_count":
        if item.min_rows is None and item.max_rows is None:
            return "needs min or max (or both)"
        for side, value in (("min", item.min_rows), ("max", item.max_rows)):
            if value is not None and not _is_count(value):
                return f"{side} must be a whole number >= 0 or None, got {value!r}"
        if item.min_rows is not None and item.max_rows is not None and item.min_rows > item.max_rows:
            return f"min {item.min_rows} is above max {item.max_rows}"
    if item.kind == "freshness" and not (isinstance(item.max_age, timedelta) and item.max_age > timedelta(0)):
        return f"max_age must be a positive timedelta, e.g. timedelta(hours=2), got {item.max_age!r}"
    if item.kind == "custom":
        if not callable(item.function):
            return f"needs a function of the output frame returning (ok, observed), got {item.function!r}"
        if not isinstance(item.label, str) or not item.label:
            return f"name= must be a non-empty string, got {item.label!r}"
    return None


def static_problems(view: Any) -> list[str]:
    """What is wrong with a view's ``checks=`` and ``on_check_failure=``, knowable at load."""
    where = f"{view.location}: feature view {view.name!r}"
    problems: list[str] = []
    if view.on_check_failure not in ON_CHECK_FAILURE:
        problems.append(f"{where}: on_check_failure must be 'fail' or 'warn', got {view.on_check_failure!r}")
    checks = view.checks
    if not isinstance(checks, (list, tuple)):
        return [*problems, f"{where}: checks= must be a list of fk.check.* checks, got {type(checks).__name__}"]
    for item in checks:
        if not isinstance(item, Check):
            problems.append(f"{where}: check {item!r} is not one of fk.check's (fk.check.not_null('x'), ...)")
            continue
        problem = _check_problem(item)
        if problem is not None:
            problems.append(f"{item.location}: check {item.name} of feature view {view.name!r} {problem}")
    return problems
