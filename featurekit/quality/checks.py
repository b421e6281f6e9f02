"""Run a view's checks (:mod:`featurekit.check`) over the output of one materialization or push.

:class:`CheckRun` sees every output batch (``add``), decides after the last one (``conclude``,
before anything is committed) and hands the results to the registry (``records``). Batches hold
whole entities, so per-batch counts add up and duplicate keys never span two batches: each check
keeps counts and at most five offending rows, never the output itself. Everything is vectorized
(pyarrow.compute; the duplicate test, :mod:`featurekit.quality.duplicates`, hashes rows, sorts the
hashes' top halves and compares exactly only the rows whose halves collide).

``not_null`` and ``between`` on a profiled column take their counts from the profile's pass over
the same batch (:class:`~featurekit.quality.profiling.BatchTally`: exact null and NaN counts,
minimum and maximum), so a passing batch costs them nothing; only a batch with something to
report is read again, to count what is outside exactly and to sample the offending rows.
"""

from __future__ import annotations

import sys
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from featurekit.check import Check
from featurekit.definitions import FeatureView
from featurekit.errors import CheckError, DefinitionError, FeatureFunctionError
from featurekit.quality.check_results import SAMPLE_ROWS, CheckResult, CommitChecks, jsonable
from featurekit.quality.duplicates import repeated_rows
from featurekit.quality.profiling import BatchTally
from featurekit.registry import ViewVersion

_PACKAGE = str(Path(__file__).resolve().parent.parent)


def _outside_featurekit() -> int:
    """The ``stacklevel`` of the first caller outside featurekit (the line that materialized or pushed)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


class CheckWarning(UserWarning):
    """A view's output failed a check declared with ``on_check_failure="warn"``; it was committed anyway."""


def _numeric(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype))


def column_problems(view: FeatureView, schema: pa.Schema) -> list[str]:
    """Checks naming a column the view's output lacks, or ``between`` on a column that is not numeric."""
    problems = []
    for item in view.checks:
        if not isinstance(item, Check) or item.column is None:
            continue
        at = f"{item.location}: check {item.name} of feature view {view.name!r}"
        if item.column not in schema.names:
            problems.append(f"{at} names no column of the view's output (it has {schema.names}); fix the name")
        elif item.kind == "between" and not _numeric(schema.field(item.column).type):
            problems.append(
                f"{at} needs a numeric column; {item.column!r} is {schema.field(item.column).type}: "
                "use fk.check.custom for other types"
            )
    return problems


class _Sample:
    """Up to :data:`SAMPLE_ROWS` offending rows: the keys, the timestamps and the checked column."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self.rows: list[dict[str, Any]] = []

    def add(self, table: pa.Table, mask: pa.ChunkedArray | pa.Array | None = None) -> None:
        room = SAMPLE_ROWS - len(self.rows)
        if room <= 0:
            return
        picked = table.select(self.columns)
        if mask is not None:
            picked = picked.filter(mask)
        self.rows += [jsonable(row) for row in picked.slice(0, room).to_pylist()]  # as the registry keeps them


class _Evaluator(ABC):
    """One check's running state over the batches of one output."""

    def __init__(self, check: Check, run: CheckRun) -> None:
        self.check = check
        self.run = run
        extra = [check.column] if check.column is not None and check.column not in run.row_columns else []
        self.sample = _Sample([*run.row_columns, *extra])

    @abstractmethod
    def add(self, table: pa.Table, tally: BatchTally | None = None) -> None:
        """Count one output batch (whole entities); ``tally``: the profile's counts of the checked column."""

    @abstractmethod
    def result(self) -> CheckResult:
        """The check's verdict over every batch added."""

    def _result(self, observed: Any, passed: bool | None, detail: str) -> CheckResult:
        return CheckResult(
            check=self.check.name,
            kind=self.check.kind,
            observed=observed,
            threshold=self.check.threshold,
            passed=passed,
            on_failure=self.run.on_failure,
            detail=detail,
            rows=tuple(self.sample.rows) if passed is False else (),
        )


class _NotNull(_Evaluator):
    def __init__(self, check: Check, run: CheckRun) -> None:
        super().__init__(check, run)
        self.rows = 0
        self.missing = 0

    def add(self, table: pa.Table, tally: BatchTally | None = None) -> None:
        assert self.check.column is not None
        column = table.column(self.check.column)
        self.rows += table.num_rows
        floating = pa.types.is_floating(column.type)
        if tally is not None and not pa.types.is_dictionary(column.type):  # the profile counted NaNs as here
            missing = tally.nulls + tally.nans
        else:
            missing = column.null_count + ((pc.sum(pc.is_nan(column)).as_py() or 0) if floating else 0)
        if missing:
            self.missing += missing
            self.sample.add(table, pc.fill_null(pc.is_nan(column), True) if floating else pc.is_null(column))

    def result(self) -> CheckResult:
        fraction = self.missing / self.rows if self.rows else 0.0
        detail = f"{self.missing} of {self.rows} rows null or NaN"
        return self._result(fraction, fraction <= self.check.max_fraction, detail)


class _Between(_Evaluator):
    def __init__(self, check: Check, run: CheckRun) -> None:
        super().__init__(check, run)
        self.values = 0
        self.outside = 0
        self.low: Any = None
        self.high: Any = None

    def add(self, table: pa.Table, tally: BatchTally | None = None) -> None:
        assert self.check.column is not None
        column = table.column(self.check.column)
        self.values += len(column) - column.null_count
        numbers = pa.types.is_floating(column.type) or pa.types.is_decimal(column.type)
        if tally is not None and numbers:  # the profile's extremes of the same float64 values
            # Over every batch so far, so this batch's lie within them: inside the bounds, so is it.
            low, high, nans = tally.low, tally.high, tally.nans
            if low is not None:
                self.low, self.high = _zero(low), _zero(high)
        else:
            column = column.cast(pa.float64()) if pa.types.is_decimal(column.type) else column
            extremes = pc.min_max(column).as_py()  # NaNs are not among them
            low, high = extremes["min"], extremes["max"]
            if low is not None and low == low:  # noqa: PLR0124 -- all NaN: no extremes to keep
                self.low = _zero(low if self.low is None else min(self.low, low))
                self.high = _zero(high if self.high is None else max(self.high, high))
            nans = (pc.sum(pc.is_nan(column)).as_py() or 0) if pa.types.is_floating(column.type) else 0
        inside = low is None or (
            (self.check.low is None or low >= self.check.low) and (self.check.high is None or high <= self.check.high)
        )
        if inside and not nans:
            return  # the usual case, decided by the extremes alone
        if pa.types.is_decimal(column.type):
            column = column.cast(pa.float64())
        mask: Any = None
        if self.check.low is not None:
            mask = pc.greater_equal(column, pa.scalar(self.check.low, pa.float64()))
        if self.check.high is not None:
            below = pc.less_equal(column, pa.scalar(self.check.high, pa.float64()))
            mask = below if mask is None else pc.and_(mask, below)
        outside = pc.invert(mask)  # null where the value is null: neither counted nor sampled
        self.outside += pc.sum(outside).as_py() or 0
        self.sample.add(table, outside)

    def result(self) -> CheckResult:
        seen = "no values" if self.low is None else f"values range from {self.low!r} to {self.high!r}"
        return self._result(self.outside, self.outside == 0, f"{self.outside} of {self.values} values outside; {seen}")


def _zero(value: Any) -> Any:
    """A float extreme with -0.0 as 0.0 (which zero a minimum picks differs between pyarrow and numpy)."""
    return value + 0.0 if isinstance(value, float) and value == 0 else value


class _UniqueKeys(_Evaluator):
    def __init__(self, check: Check, run: CheckRun) -> None:
        super().__init__(check, run)
        self.rows = 0
        self.duplicates = 0

    def add(self, table: pa.Table, tally: BatchTally | None = None) -> None:
        self.rows += table.num_rows
        extra, repeated = repeated_rows(table.select(self.run.row_columns))
        if extra:
            self.duplicates += extra
            self.sample.add(table, pa.array(repeated))

    def result(self) -> CheckResult:
        keys = ", ".join(self.run.row_columns)
        detail = f"{self.duplicates} of {self.rows} rows repeat the ({keys}) of an earlier row"
        return self._result(self.duplicates, self.duplicates == 0, detail)


class _RowCount(_Evaluator):
    def __init__(self, check: Check, run: CheckRun) -> None:
        super().__init__(check, run)
        self.rows = 0

    def add(self, table: pa.Table, tally: BatchTally | None = None) -> None:
        self.rows += table.num_rows

    def result(self) -> CheckResult:
        if self.run.mode == "push":
            return self._result(self.rows, None, "skipped: a push's size is its caller's batch")
        low, high = self.check.min_rows, self.check.max_rows
        passed = (low is None or self.rows >= low) and (high is None or self.rows <= high)
        return self._result(self.rows, passed, f"{self.rows} rows")


class _Freshness(_Evaluator):
    def __init__(self, check: Check, run: CheckRun) -> None:
        super().__init__(check, run)
        self.newest: datetime | None = None

    def add(self, table: pa.Table, tally: BatchTally | None = None) -> None:
        if table.num_rows:
            newest = pc.max(table.column(self.run.view.timestamp_field)).as_py()
            self.newest = newest if self.newest is None else max(self.newest, newest)

    def result(self) -> CheckResult:
        reference = datetime.now(UTC) if self.run.mode == "push" else self.run.window[1]
        against = "now" if self.run.mode == "push" else f"the window's end {reference.isoformat()}"
        if self.newest is None:
            return self._result(None, False, f"no rows, so no event within {self.check.max_age} of {against}")
        age = reference - self.newest
        detail = f"newest event {self.newest.isoformat()} is {age} before {against}"
        return self._result(age.total_seconds(), age <= self.check.max_age, detail)


class _Custom(_Evaluator):
    def __init__(self, check: Check, run: CheckRun) -> None:
        super().__init__(check, run)
        self.batches = 0
        self.failed = 0
        self.observed: Any = None

    def add(self, table: pa.Table, tally: BatchTally | None = None) -> None:
        from featurekit.transform import to_frame

        function = self.check.function
        assert function is not None
        where = f"check {self.check.name} of feature view '{self.run.view.name}' ({self.check.location})"
        try:
            answer = function(to_frame(table, self.run.view.frame))
        except Exception as exc:  # the user's code: name it, keep the cause
            raise FeatureFunctionError(f"{where} raised {type(exc).__name__}: {exc}; nothing was committed") from exc
        if not isinstance(answer, tuple) or len(answer) != 2:
            raise FeatureFunctionError(
                f"{where} returned {answer!r}; a custom check returns (ok, observed), e.g. (x.max() < 10, x.max())"
            )
        ok, observed = answer
        try:
            passed = bool(ok)
        except (TypeError, ValueError) as exc:
            raise FeatureFunctionError(f"{where} returned ok={ok!r}, which is not True or False") from exc
        self.batches += 1
        if not passed:
            self.failed += 1
            if self.failed == 1:
                self.observed = observed  # the first failing batch's
        elif not self.failed:
            self.observed = observed

    def result(self) -> CheckResult:
        detail = f"{self.failed} of {self.batches} batches failed"
        return self._result(self.observed, self.failed == 0, detail)


_EVALUATORS: dict[str, Callable[[Check, CheckRun], _Evaluator]] = {
    "not_null": _NotNull,
    "between": _Between,
    "unique_keys": _UniqueKeys,
    "row_count": _RowCount,
    "freshness": _Freshness,
    "custom": _Custom,
}


class CheckRun:
    """The view's checks over one window's (or one push's) output; nothing to do without checks.

    ``window`` is the materialized window (a push's: the span of its rows); ``mode`` is
    ``"window"`` or ``"push"``. A check naming a column the applied output lacks is a
    :class:`~featurekit.errors.DefinitionError` here, before any row is read.
    """

    def __init__(
        self, view: FeatureView, version: ViewVersion, *, window: tuple[datetime, datetime], mode: str
    ) -> None:
        self.view = view
        self.version = version
        self.window = window
        self.mode = mode
        self.on_failure = view.on_check_failure
        problems = column_problems(view, version.schema)
        if problems:
            raise DefinitionError(problems)
        created = [view.created_timestamp_field] if view.created_timestamp_field else []
        self.row_columns = [*view.join_keys, view.timestamp_field, *created]
        self.evaluators = [_EVALUATORS[c.kind](c, self) for c in view.checks]
        self.results: list[CheckResult] = []

    def add(self, table: pa.Table, tallies: Mapping[str, BatchTally] | None = None) -> None:
        """Count one output batch; ``tallies``: the profile's counts of it, by column (see the module docstring)."""
        self.add_untallied(table)
        self.add_tallied(table, tallies)

    def add_untallied(self, table: pa.Table) -> None:
        """The part of :meth:`add` that needs no tally: the checks of no single column (unique_keys,
        row_count, freshness, custom), which may run while the profile counts the same batch."""
        for evaluator in self.evaluators:
            if evaluator.check.column is None:
                evaluator.add(table)

    def add_tallied(self, table: pa.Table, tallies: Mapping[str, BatchTally] | None = None) -> None:
        """The rest of :meth:`add`: the checks of one column (not_null, between), after the profile's tallies."""
        for evaluator in self.evaluators:
            column = evaluator.check.column
            if column is not None:
                evaluator.add(table, tallies.get(column) if tallies is not None else None)

    def conclude(self) -> None:
        """Decide: a failing check of a ``"fail"`` view raises :class:`~featurekit.errors.CheckError`."""
        self.results = [e.result() for e in self.evaluators]
        if self.on_failure == "fail" and self.failed:
            raise CheckError(self._message("nothing was committed, offline or online, and the watermark stays"),
                             self.results)  # fmt: skip

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.passed is False]

    def warn(self) -> None:
        """After the commit: report the failures a ``"warn"`` view committed anyway."""
        if self.failed:
            message = self._message("it was committed anyway (on_check_failure='warn')")
            warnings.warn(message, CheckWarning, stacklevel=_outside_featurekit())

    def records(self) -> dict[str, str]:
        if not self.evaluators:
            return {}
        commit = CommitChecks(
            self.view.name, self.version.version, 0, None, self.mode, self.window, tuple(self.results)
        )
        return {"checks": commit.to_json()}

    def _message(self, outcome: str) -> str:
        what = "window" if self.mode == "window" else "push"
        span = f"[{self.window[0].isoformat()}, {self.window[1].isoformat()})"
        lines = [
            f"feature view '{self.view.name}' v{self.version.version} ({self.view.location}): the output of the "
            f"{what} {span} failed {len(self.failed)} of {len(self.results)} checks; {outcome}"
        ]
        for result in self.failed:
            lines.append(
                f"  - {result.check}: observed {result.observed!r}, threshold: {result.threshold} ({result.detail})"
            )
            lines += [f"      {row}" for row in result.rows]
        lines.append(
            "Fix the source data or the view's function and run again, or change the check in the view's checks=[...]"
        )
        return "\n".join(lines)
