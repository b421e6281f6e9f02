"""What ``TrainingSet.explain()`` reports: per view, what was read, how it was joined, and what came of it.

The figures are computed by :mod:`featurekit.offline.explain`; this module holds them and shows
them three ways: :meth:`Explanation.to_dict` (JSON-ready: instants as ISO-8601 text, durations in
seconds), :meth:`Explanation.to_pandas` (one row per feature) and ``str()`` (what the CLI prints).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# How many offending rows a finding lists as examples.
EXAMPLES = 5


@dataclass(frozen=True)
class FeatureCoverage:
    """How many spine rows got a value of one feature."""

    feature: str
    column: str | None  # its column in the training set (None: read only as an on-demand input)
    rows_with_value: int  # batch views: non-null values; window views: rows whose window held an event it counts
    coverage: float  # rows_with_value / spine rows (0.0 for an empty spine)
    events: int | None = None  # window views: the events it aggregated, summed over the spine rows


@dataclass(frozen=True)
class Staleness:
    """Quantiles of t - e (spine instant minus the matched row's event time) over the matched rows.

    Nearest-rank quantiles: ``p90`` is the smallest value at least 90% of the matched rows do not
    exceed, so every figure is a staleness some row really has.
    """

    matched: int
    p50: timedelta | None
    p90: timedelta | None
    p99: timedelta | None
    max: timedelta | None


@dataclass(frozen=True)
class LateRow:
    """A spine row that got a value written after its own time."""

    row: int  # position in the spine
    keys: dict[str, Any]
    spine_time: datetime
    event_time: datetime
    created_time: datetime


@dataclass(frozen=True)
class CreatedAfterSpine:
    """Matched rows created (written) after the spine time: values a model could not have known then."""

    count: int
    unknown: int  # matched rows with a null created time: when they were known cannot be told
    examples: list[LateRow]


@dataclass(frozen=True)
class OutsideRange:
    """Spine rows outside the materialized range of a view: their values are silent nulls or incomplete.

    Before: no materialized event can reach them (row views: ``t`` before the first event; window
    views: ``t - delay`` at or before it). After: events the source may hold for them were never
    materialized (row views: ``t`` at or after the watermark; window views: ``t - delay`` after it).
    """

    first_event: datetime | None  # the data version's earliest event (None: no rows)
    watermark: datetime | None  # end of the last materialized window (None: pushes only)
    before: int
    before_range: tuple[datetime, datetime] | None  # earliest and latest such spine instant
    after: int
    after_range: tuple[datetime, datetime] | None


@dataclass(frozen=True)
class ViewExplanation:
    """One view of a training set: what was read, how it was joined, coverage, staleness, leakage."""

    view: str
    version: int
    kind: str  # "batch", "window" or "on_demand"
    data_version: int | None = None
    materialized_at_registry_version: int | None = None
    files: list[str] = field(default_factory=list)
    rows_scanned: int | None = None  # rows in the files read
    strategy: str | None = None  # the join strategy the engine took
    reason: str | None = None  # why it took it
    ttl: timedelta | None = None
    window_rule: str | None = None
    features: list[FeatureCoverage] = field(default_factory=list)
    staleness: Staleness | None = None
    created_after_spine: CreatedAfterSpine | None = None  # None: not checked (see notes)
    outside_range: OutsideRange | None = None
    inputs: list[str] = field(default_factory=list)  # on-demand views: "view:feature" and "request:name"
    outputs: dict[str, str | None] = field(default_factory=dict)  # on-demand views: feature -> column
    notes: list[str] = field(default_factory=list)

    def feature(self, name: str) -> FeatureCoverage:
        """The coverage of feature ``name`` of this view."""
        for item in self.features:
            if item.feature == name:
                return item
        raise KeyError(f"view {self.view!r} reported no feature {name!r}; it has {[f.feature for f in self.features]}")


@dataclass(frozen=True)
class Explanation:
    """How a training set was built and what its features look like, view by view."""

    registry_version: int
    spine_rows: int
    known_at: datetime | None
    views: list[ViewExplanation]

    def view(self, name: str) -> ViewExplanation:
        """The explanation of view ``name``."""
        for item in self.views:
            if item.view == name:
                return item
        raise KeyError(f"the training set read no view {name!r}; it read {[v.view for v in self.views]}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: instants as ISO-8601 text, durations in seconds."""
        return {
            "registry_version": self.registry_version,
            "spine_rows": self.spine_rows,
            "known_at": _iso(self.known_at),
            "views": [_json(v.__dict__) for v in self.views],
        }

    def to_pandas(self) -> Any:
        """One row per feature of each view (on-demand views: one row per output, with their inputs)."""
        import pandas as pd

        rows = []
        for view in self.views:
            base = {"view": view.view, "version": view.version, "kind": view.kind, "strategy": view.strategy}
            late = view.created_after_spine
            outside = view.outside_range
            shared = {
                "data_version": view.data_version,
                "rows_scanned": view.rows_scanned,
                "created_after_spine": None if late is None else late.count,
                "before_first_event": None if outside is None else outside.before,
                "after_watermark": None if outside is None else outside.after,
            }
            staleness = {f"staleness_{q}": getattr(view.staleness, q, None) for q in ("p50", "p90", "p99", "max")}
            for item in view.features:
                rows.append({**base, **item.__dict__, **staleness, **shared})
            for feature, column in view.outputs.items():
                rows.append({**base, "feature": feature, "column": column, "inputs": ", ".join(view.inputs)})
        columns = [
            "view", "version", "kind", "feature", "column", "coverage", "rows_with_value", "events",
            "staleness_p50", "staleness_p90", "staleness_p99", "staleness_max", "created_after_spine",
            "before_first_event", "after_watermark", "strategy", "data_version", "rows_scanned", "inputs",
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=columns)

    def __str__(self) -> str:
        known = "not given" if self.known_at is None else _iso(self.known_at)
        lines = [f"training set of {_rows(self.spine_rows, 'spine row')} at registry version {self.registry_version} "]
        lines[0] += f"(known_at {known})"
        for view in self.views:
            lines.append("")
            lines.extend(_view_lines(view))
        return "\n".join(lines)


def _view_lines(view: ViewExplanation) -> list[str]:
    head = f"{view.view} v{view.version} ({view.kind})"
    if view.kind == "on_demand":
        outputs = ", ".join(f if c in (None, f) else f"{f} (column {c})" for f, c in view.outputs.items())
        notes = [f"  note: {note}" for note in view.notes]
        return [head, f"  inputs: {', '.join(view.inputs)}", f"  outputs: {outputs}", *notes]
    head += f", data version {view.data_version} (materialized at registry version "
    head += f"{view.materialized_at_registry_version})"
    lines = [head, f"  read: {_rows(len(view.files), 'file')}, {_rows(view.rows_scanned or 0, 'row')}"]
    lines.append(f"  join: {view.strategy}: {view.reason}")
    if view.window_rule is not None:
        lines.append(f"  window rule: {view.window_rule}")
    else:
        lines.append(f"  ttl: {'none' if view.ttl is None else view.ttl}")
    for item in view.features:
        where = "" if item.column in (None, item.feature) else f" (column {item.column})"
        if item.column is None:
            where = " (on-demand input)"
        events = "" if item.events is None else f", {item.events:,} events counted"
        rows = _rows(item.rows_with_value, "row")
        lines.append(f"  {item.feature}{where}: {item.coverage:.1%} coverage ({rows}){events}")
    staleness = view.staleness
    if staleness is not None:
        if staleness.matched:
            lines.append(
                f"  staleness t - e over {_rows(staleness.matched, 'matched row')}: p50 {staleness.p50}, "
                f"p90 {staleness.p90}, p99 {staleness.p99}, max {staleness.max}"
            )
        else:
            lines.append("  staleness: no spine row matched a row")
    late = view.created_after_spine
    if late is not None:
        if late.count:
            were = "row was" if late.count == 1 else "rows were"
            lines.append(f"  LEAKAGE: {late.count:,} matched {were} created after the spine time (not known then):")
            lines.extend(
                f"    row {e.row} {_keys(e.keys)}: spine {_iso(e.spine_time)}, event {_iso(e.event_time)}, "
                f"created {_iso(e.created_time)}"
                for e in late.examples
            )
        else:
            lines.append("  leakage: no matched row was created after its spine time")
        if late.unknown:
            lines.append(f"  {_rows(late.unknown, 'matched row')} without a created time: when known is unknown")
    outside = view.outside_range
    if outside is not None:
        span = f"from {_iso(outside.first_event)}" if outside.first_event is not None else "no rows"
        mark = f"watermark {_iso(outside.watermark)}" if outside.watermark is not None else "no watermark (pushes only)"
        lines.append(f"  materialized: {span}, {mark}")
        if outside.before:
            where = "before the first event" if outside.first_event is not None else "with no row to match"
            before = f"{_rows(outside.before, 'spine row')} {where} (silent nulls)"
            lines.append(f"  {before}{_span(outside.before_range)}")
        if outside.after:
            after = f"{_rows(outside.after, 'spine row')} after the watermark (data not materialized)"
            lines.append(f"  {after}{_span(outside.after_range)}")
    lines.extend(f"  note: {note}" for note in view.notes)
    return lines


def _rows(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _keys(keys: dict[str, Any]) -> str:
    return " ".join(f"{k}={v!r}" for k, v in keys.items())


def _span(found: tuple[datetime, datetime] | None) -> str:
    return "" if found is None else f": {_iso(found[0])} to {_iso(found[1])}"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _json(value: Any) -> Any:
    """``value`` with instants as ISO-8601 text, durations in seconds, dataclasses as dicts."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return _json(value.__dict__)
    return value
