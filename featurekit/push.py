"""Push: fresh raw source rows through the view's own function, into the online store (and offline).

Streaming ingestion takes the same path as batch materialization: the rows are conformed to the
source schema recorded at apply, run through :func:`featurekit.transform.run_view`, checked, and
reduced to each entity's newest row by the engine, in the order the point-in-time join uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from featurekit.definitions import FeatureView
from featurekit.errors import DataError, SchemaError
from featurekit.faults import checkpoint
from featurekit.frames import as_arrow
from featurekit.manifest import table_digest
from featurekit.offline.freshness import FreshnessRecorder
from featurekit.offline.inputs import view_input
from featurekit.offline.materialize import Materializer, check_output
from featurekit.online.loading import write_newest
from featurekit.online.window_state import StateWrite, WindowStates
from featurekit.quality.inspection import Inspection
from featurekit.registry import ViewVersion
from featurekit.timestamps import normalize_timestamps
from featurekit.transform import run_view

PushTarget = Literal["online", "online_and_offline"]


@dataclass(frozen=True)
class PushResult:
    """What a push wrote."""

    view: str
    version: int
    rows: int
    online_rows: int
    data_version: int | None


def conform(rows: Any, version: ViewVersion, view: FeatureView) -> pa.Table:
    """Raw rows in the source's recorded schema (column order and dtypes), or a clear error."""
    table = as_arrow(rows, f"rows pushed to '{view.name}'")
    schema = version.source_schema
    assert schema is not None
    missing = [c for c in schema.names if c not in table.column_names]
    if missing:
        raise SchemaError(
            f"rows pushed to '{view.name}' lack source columns {missing} (they have {table.column_names}); "
            "push raw source rows, the view's function computes the features"
        )
    timestamps = [c for c in view.source.timestamp_columns if c in schema.names]
    table = normalize_timestamps(table.select(schema.names), timestamps, f"rows pushed to '{view.name}'")
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(f"rows pushed to '{view.name}' do not fit the source schema {schema}: {exc}") from exc


def push(view: FeatureView, version: ViewVersion, rows: Any, to: PushTarget, materializer: Materializer) -> PushResult:
    """Run ``view`` on raw ``rows`` and write the result online (and, if asked, offline)."""
    if to not in ("online", "online_and_offline"):
        raise SchemaError(f"push to= must be 'online' or 'online_and_offline', got {to!r}")
    freshness = FreshnessRecorder(view.timestamp_field, materializer.registry, version.id)
    raw = conform(rows, version, view)
    now = datetime.now(UTC)
    out = run_view(view, raw, version.schema)
    out = check_output(view, out, datetime.min.replace(tzinfo=UTC), now + timedelta(microseconds=1))
    if out.num_rows and pc.max(out.column(view.timestamp_field)).as_py() > now:
        raise DataError(f"rows pushed to '{view.name}' have event times in the future; push them when they happen")
    out = out.cast(version.schema)
    inspection = Inspection(view, version, materializer.registry, window=_span(out, view, now), mode="push")
    inspection.add(out)
    freshness.add(out)
    inspection.conclude()  # a failing check: nothing is written, offline or online
    result = _write(view, version, out, to, materializer, inspection=inspection, freshness=freshness)
    inspection.committed()  # warns of failed "warn" checks, now that the rows are written
    return result


def _write(
    view: FeatureView,
    version: ViewVersion,
    out: pa.Table,
    to: PushTarget,
    materializer: Materializer,
    *,
    inspection: Inspection,
    freshness: FreshnessRecorder,
) -> PushResult:
    """Write checked output rows online (and, for ``to="online_and_offline"``, commit them offline first)."""
    data_version = None
    if to == "online_and_offline" and out.num_rows:
        tables, registry = materializer.tables, materializer.registry
        with tables.lock(view.name, wait_s=materializer.lock_wait_s):
            recorded = registry.last_materialization(version.id)
            base = recorded.data_version if recorded is not None else None
            tables.prepare(view.name, version.version, base)
            digest = table_digest(out)
            earlier = registry.pushed(version.id, digest)
            if earlier is not None:
                # The same rows were committed by an earlier push (a retry after a failure):
                # adding them again would duplicate them; only the online write is repeated.
                return _online(view, version, out, materializer, data_version=base, commit=earlier.commit_id)
            data_version = tables.append(
                view.name, version.version, out, {"featurekit.view": view.name, "featurekit.push": "true"}
            )
            times = out.column(view.timestamp_field)
            start = pc.min(times).as_py()
            end = pc.max(times).as_py() + timedelta(microseconds=1)
            committed = registry.record_materialization(
                version.id,
                base_data_version=base,
                data_version=data_version,
                window=(start, end),
                rows=out.num_rows,
                mode="push",
                summary=f"push {out.num_rows} rows to {view.name} v{version.version}",
                batch_digest=digest,
                quality={**inspection.records(), **freshness.records()},
                view_quality=inspection.view_records(),
            )
        checkpoint("push.after_offline")
        return _online(view, version, out, materializer, data_version=data_version, commit=committed.commit_id)
    return _online(view, version, out, materializer, data_version=data_version, commit=None)


def _span(out: pa.Table, view: FeatureView, now: datetime) -> tuple[datetime, datetime]:
    """The event-time span of pushed rows, ``[first, last]`` (``now`` for no rows)."""
    if not out.num_rows:
        return now, now
    times = out.column(view.timestamp_field)
    return pc.min(times).as_py(), pc.max(times).as_py() + timedelta(microseconds=1)


def _online(
    view: FeatureView,
    version: ViewVersion,
    out: pa.Table,
    materializer: Materializer,
    *,
    data_version: int | None,
    commit: int | None,
) -> PushResult:
    """Write the newest pushed row of each entity online (only if at least as new as the stored one).

    ``commit`` is the registry commit of the rows' offline copy: recorded as loaded once they are.
    A window view's pushed events are merged into its entities' stored events instead.
    """
    if version.is_window:
        online_rows = _merge_windows(version, out, materializer)
        if commit is not None:
            materializer.registry.record_online_load([commit])
        return PushResult(view.name, version.version, out.num_rows, online_rows, data_version)
    newest = materializer.engine.newest_rows(view_input(version, []), rows=out)
    online_rows = write_newest(
        materializer.online,
        view.name,
        version.version,
        newest,
        join_keys=list(view.join_keys),
        features=version.features,
    )
    if commit is not None:
        materializer.registry.record_online_load([commit])
    return PushResult(view.name, version.version, out.num_rows, online_rows, data_version)


def _merge_windows(version: ViewVersion, out: pa.Table, materializer: Materializer) -> int:
    """Add pushed events to the online window states, under the view's lock (a read-merge-write)."""
    if not out.num_rows:
        return 0
    states = WindowStates(version)
    with materializer.tables.lock(version.view, wait_s=materializer.lock_wait_s):
        write = StateWrite(trim_at=None, stamp=materializer.registry.head_commit())
        return states.merge(materializer.online, states.events(out), write)
