"""``TrainingSet.explain()``: the training set's own join, run again with the matched rows' times.

Nothing is computed while a training set is built: it keeps the spine, the engine inputs it
joined and the strategies its join took (:class:`ExplainPlan`), and ``explain()`` asks the engine
for the very same join with ``matched=True`` (the spine instant and each matched row's event and
created time come with the values) and reduces it batch by batch. Window views are joined for a
``count`` of the events each feature aggregates over its window instead of the feature itself (the
same window join; coverage is the share of spine rows with a count above 0). The only other reads
are the Parquet footers of the files the join reads (rows, earliest event time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurekit.errors import StorageError
from featurekit.offline.engine import (
    SPINE_INSTANT,
    JoinStrategy,
    OfflineEngine,
    Spine,
    ViewInput,
    local_path,
    matched_created,
    matched_event,
)
from featurekit.offline.explanation import (
    EXAMPLES,
    CreatedAfterSpine,
    Explanation,
    FeatureCoverage,
    LateRow,
    OutsideRange,
    Staleness,
    ViewExplanation,
)
from featurekit.registry import Materialization, ViewVersion
from featurekit.timestamps import from_micros, to_micros
from featurekit.windows import WindowFeature, WindowSpec, window_suffix

_BATCH_ROWS = 262_144
_QUANTILES = (50, 90, 99)


@dataclass(frozen=True)
class ExplainedView:
    """What a training set read of one batch or window view (kept so that explain needs no lookup)."""

    version: ViewVersion
    materialization: Materialization
    input: ViewInput
    columns: dict[str, str | None]  # feature -> its training-set column (None: an on-demand input only)


@dataclass(frozen=True)
class ExplainPlan:
    """Everything ``explain()`` needs, gathered for free while the training set is planned."""

    engine: OfflineEngine
    spine: Spine
    check: Callable[[], None]  # raises DataError if a spine file changed under the join
    registry_version: int
    known_at: datetime | None
    views: list[ExplainedView]
    strategies: list[JoinStrategy]  # those the training set's own join took, one per view
    on_demand: list[tuple[ViewVersion, dict[str, str | None]]]  # each on-demand version, feature -> column


def explain(plan: ExplainPlan) -> Explanation:
    """Run the training set's join with matched times and report each view (see :class:`Explanation`)."""
    tallies = [_Tally(item, index, plan) for index, item in enumerate(plan.views)]
    join = plan.engine.point_in_time(plan.spine, [t.input for t in tallies], matched=True)
    try:
        offset = 0
        for batch in join.to_batches(_BATCH_ROWS):
            instants = _micros(batch.column(SPINE_INSTANT))
            for tally in tallies:
                tally.add(batch, instants, offset)
            offset += batch.num_rows
    finally:
        join.close()
    plan.check()
    views = [t.result(s.name, s.reason) for t, s in zip(tallies, plan.strategies, strict=True)]
    views += [_on_demand(version, columns) for version, columns in plan.on_demand]
    return Explanation(plan.registry_version, plan.spine.rows, plan.known_at, views)


class _Tally:
    """One view's figures, accumulated over the join's batches."""

    def __init__(self, item: ExplainedView, index: int, plan: ExplainPlan) -> None:
        self.item = item
        self.index = index
        self.spine_rows = plan.spine.rows
        self.known_at = plan.known_at
        view = item.input
        self.features = [stored for stored, _ in view.features]
        self.outputs = [f"__fk_x{index}_{j}" for j in range(len(self.features))]
        self.with_value = [0] * len(self.features)
        self.rows_scanned, first = _data_extent(view.files, view.timestamp_field)
        self.first_us = None if first is None else to_micros(first)
        watermark = item.materialization.watermark
        self.watermark_us = None if watermark is None else to_micros(watermark)
        self.outside = {"before": _Span(), "after": _Span()}
        self.window = view.window
        if view.window is None:
            self.input = replace(view, features=list(zip(self.features, self.outputs, strict=True)))
            self.staleness: list[np.ndarray] = []
            self.late = 0
            self.unknown = 0
            self.examples: list[LateRow] = []
            return
        # Per feature, the count of the events it aggregates (those with a value of its column;
        # count(): every event) over its window: a feature of the same window join.
        by_name = {f.name: f for f in view.window.features}
        wanted = [by_name[name] for name in self.features]
        counters: dict[tuple[str | None, int], str] = {}
        for feature in wanted:
            counters.setdefault((feature.column, feature.window_us), f"__fk_n{index}_{len(counters)}")
        self.counter_of = [counters[(f.column, f.window_us)] for f in wanted]
        extra = tuple(WindowFeature(name, "count", column, w) for (column, w), name in counters.items())
        spec = WindowSpec(view.window.delay_us, view.window.features + extra)
        # The features themselves are not needed: their coverage is that of their counts.
        self.input = replace(view, window=spec, features=[(n, n) for n in counters.values()])
        self.events = [0] * len(self.features)
        self.delay_us = view.window.delay_us

    def add(self, batch: pa.RecordBatch, instants: tuple[np.ndarray, np.ndarray], offset: int) -> None:
        spine_us, spine_valid = instants
        if self.window is None:
            for j, name in enumerate(self.outputs):
                column = batch.column(name)
                self.with_value[j] += len(column) - column.null_count
            self._add_matched(batch, spine_us, spine_valid, offset)
            shifted, before_first = spine_us, True
        else:
            counts = {name: batch.column(name).fill_null(0).to_numpy(zero_copy_only=False) for name in self.counter_of}
            for j, name in enumerate(self.counter_of):
                self.with_value[j] += int(np.count_nonzero(counts[name]))
                self.events[j] += int(counts[name].sum())
            shifted, before_first = spine_us - self.delay_us, False
        if self.first_us is None:
            before = spine_valid
        else:  # a window ends before t - delay: an event at t - delay itself is not in it
            before = spine_valid & ((shifted < self.first_us) if before_first else (shifted <= self.first_us))
        self.outside["before"].add(spine_us[before])
        if self.watermark_us is not None:
            # Row views see events up to t itself; a window's events end before t - delay.
            after = spine_valid & ((shifted >= self.watermark_us) if before_first else (shifted > self.watermark_us))
            self.outside["after"].add(spine_us[after])

    def _add_matched(self, batch: pa.RecordBatch, spine_us: np.ndarray, spine_valid: np.ndarray, offset: int) -> None:
        event_us, matched = _micros(batch.column(matched_event(self.index)))
        self.staleness.append(spine_us[matched] - event_us[matched])
        if self.known_at is not None or self.item.input.created_field is None:
            return
        created_us, created_valid = _micros(batch.column(matched_created(self.index)))
        self.unknown += int(np.count_nonzero(matched & ~created_valid))
        late = matched & created_valid & (created_us > spine_us)
        self.late += int(np.count_nonzero(late))
        room = EXAMPLES - len(self.examples)
        if room <= 0:
            return
        keys = self.item.input.join_keys
        for position in np.flatnonzero(late)[:room].tolist():
            self.examples.append(
                LateRow(
                    row=offset + position,
                    keys={k: batch.column(k)[position].as_py() for k in keys},
                    spine_time=from_micros(int(spine_us[position])),
                    event_time=from_micros(int(event_us[position])),
                    created_time=from_micros(int(created_us[position])),
                )
            )

    def result(self, strategy: str, reason: str) -> ViewExplanation:
        item, view = self.item, self.item.input
        rows = self.spine_rows
        features = [
            FeatureCoverage(
                feature=name,
                column=item.columns.get(name),
                rows_with_value=count,
                coverage=count / rows if rows else 0.0,
                events=None if self.window is None else self.events[j],
            )
            for j, (name, count) in enumerate(zip(self.features, self.with_value, strict=True))
        ]
        before, after = self.outside["before"], self.outside["after"]
        outside = OutsideRange(
            first_event=None if self.first_us is None else from_micros(self.first_us),
            watermark=item.materialization.watermark,
            before=before.count,
            before_range=before.range(),
            after=after.count,
            after_range=after.range(),
        )
        found = ViewExplanation(
            view=item.version.view,
            version=item.version.version,
            kind="window" if self.window is not None else "batch",
            data_version=item.materialization.data_version,
            materialized_at_registry_version=item.materialization.commit_id,
            files=list(view.files),
            rows_scanned=self.rows_scanned,
            strategy=strategy,
            reason=reason,
            ttl=view.ttl,
            features=features,
            outside_range=outside,
        )
        if self.window is not None:
            return replace(found, ttl=None, window_rule=_window_rule(self.window, self.features), notes=_window_notes())
        staleness = np.concatenate(self.staleness) if self.staleness else np.empty(0, np.int64)
        notes = []
        late = None
        if self.known_at is not None:
            notes.append("created-after-spine leakage not checked: known_at bounds every row's created time")
        elif view.created_field is None:
            notes.append("created-after-spine leakage not checked: the view's source declares no created timestamp")
        else:
            late = CreatedAfterSpine(self.late, self.unknown, self.examples)
        return replace(found, staleness=staleness_quantiles(staleness), created_after_spine=late, notes=notes)


@dataclass
class _Span:
    """How many spine instants fell in a group, and the earliest and latest of them."""

    count: int = 0
    low: int | None = None
    high: int | None = None

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        self.count += len(values)
        low, high = int(values.min()), int(values.max())
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)

    def range(self) -> tuple[datetime, datetime] | None:
        if self.low is None or self.high is None:
            return None
        return from_micros(self.low), from_micros(self.high)


def _micros(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A UTC microsecond timestamp column as int64 values (0 where null) and a validity mask."""
    values = pc.cast(column, pa.int64())
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    return values.fill_null(0).to_numpy(zero_copy_only=False), valid


def staleness_quantiles(values: np.ndarray) -> Staleness:
    """Nearest-rank p50, p90, p99 and the max of staleness values in microseconds (see :class:`Staleness`)."""
    if not len(values):
        return Staleness(0, None, None, None, None)
    ordered = np.sort(values)
    n = len(ordered)
    # Nearest rank ceil(p * n / 100), in integers: 0.9 * 10 is 9.000000000000002 in floats.
    p50, p90, p99 = (timedelta(microseconds=int(ordered[(p * n + 99) // 100 - 1])) for p in _QUANTILES)
    return Staleness(n, p50, p90, p99, timedelta(microseconds=int(ordered[-1])))


def _data_extent(files: list[str], timestamp_field: str) -> tuple[int, datetime | None]:
    """Rows in the files and their earliest event time, from the Parquet footers (exact statistics)."""
    rows = 0
    first: datetime | None = None
    for uri in files:
        path = local_path(uri)
        try:
            metadata = pq.read_metadata(path)
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(
                f"the data file {path} could not be read: {exc}; run `featurekit verify` to find damaged files "
                "(other versions stay readable)"
            ) from exc
        rows += metadata.num_rows
        column = metadata.schema.to_arrow_schema().get_field_index(timestamp_field)
        for group in range(metadata.num_row_groups):
            chunk = metadata.row_group(group)
            if chunk.num_rows == 0:
                continue
            statistics = chunk.column(column).statistics
            if statistics is not None and statistics.has_min_max:
                low = statistics.min
            else:  # a writer that kept no statistics: read the column
                low = pc.min(pq.read_table(path, columns=[timestamp_field]).column(0)).as_py()
            if low is None:
                continue
            low = low if low.tzinfo is not None else low.replace(tzinfo=UTC)
            first = low if first is None else min(first, low)
    return rows, first


def _window_rule(spec: WindowSpec, features: list[str]) -> str:
    delay = timedelta(microseconds=spec.delay_us)
    windows = sorted({f.window_us for f in spec.features if f.name in features})
    sizes = ", ".join(window_suffix(w) for w in windows)
    lag = f" - {delay}" if spec.delay_us else ""
    return f"events with t{lag} - w <= e < t{lag}, for w in {sizes}"


def _window_notes() -> list[str]:
    return [
        "coverage of a window feature: spine rows whose window held at least one event it aggregates "
        "(count(): any event; otherwise one with a value of its column); events: those events, summed",
    ]


def _on_demand(version: ViewVersion, columns: dict[str, str | None]) -> ViewExplanation:
    definition = version.definition
    inputs = [f"{i['view']}:{i['feature']}" for i in definition["inputs"]]
    inputs += [f"request:{name}" for name in definition.get("request", {})]
    return ViewExplanation(
        view=version.view,
        version=version.version,
        kind="on_demand",
        inputs=inputs,
        outputs={f: columns.get(f) for f in version.features},
        notes=["computed after the join from these inputs (their coverage is under the views they come from)"],
    )
