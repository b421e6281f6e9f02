"""``FeatureStore``: the facade every entry point (notebook, job, CLI) goes through.

It owns the repo's configuration, its loaded definitions, the registry, the offline tables and a
DuckDB connection, and delegates each operation to the module that implements it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb

from featurekit.config import RepoConfig, load_config
from featurekit.definitions import FeatureView
from featurekit.errors import (
    ConflictError,
    DataError,
    NotAppliedError,
    SchemaError,
    UnknownNameError,
    WindowError,
    did_you_mean,
)
from featurekit.offline.engine import connect
from featurekit.offline.materialize import Materializer, MaterializeResult
from featurekit.offline.retrieval import PointInTimeQuery, TrainingSet, ViewInput
from featurekit.offline.spine import prepare_spine
from featurekit.offline.tables import OfflineTables
from featurekit.plan import Plan, git_commit, make_plan, static_definition
from featurekit.progress import Progress, make_progress
from featurekit.references import FeatureRequest, resolve
from featurekit.registry import ActiveView, Materialization, Registry, ViewVersion
from featurekit.repo import RepoDefinitions, load_repo
from featurekit.timestamps import utc
from featurekit.versioning import code_hash

_APPLY_ATTEMPTS = 5


@dataclass(frozen=True)
class ViewInfo:
    """A view as the registry knows it: applied version, features and latest materialization."""

    name: str
    version: ViewVersion
    metadata: dict[str, Any]
    materialization: Materialization | None

    def __str__(self) -> str:
        v = self.version
        lines = [
            f"{self.name} v{v.version} (code {v.code_hash}, defined at {v.location})",
            f"  entity keys: {', '.join(v.definition['join_keys'])}",
            f"  ttl: {_ttl_text(v.definition['ttl_us'])}",
            f"  source: {v.definition['source'].get('path') or v.definition['source'].get('query')}",
            "  features: " + ", ".join(f"{f} ({v.definition['schema'][f]})" for f in v.features),
        ]
        if self.metadata.get("description"):
            lines.append(f"  description: {self.metadata['description']}")
        m = self.materialization
        if m is None:
            lines.append("  materialized: never")
        else:
            lines.append(
                f"  materialized: up to {m.watermark.isoformat()} (data version {m.data_version}, "
                f"last window [{m.window_start.isoformat()}, {m.window_end.isoformat()}), {m.rows} rows)"
            )
        return "\n".join(lines)


def _ttl_text(ttl_us: int | None) -> str:
    if ttl_us is None:
        return "none"
    seconds = ttl_us / 1_000_000
    return f"{seconds / 86_400:g} days" if seconds >= 86_400 else f"{seconds:g} s"


class FeatureStore:
    """A feature repo and its store: apply, materialize, and build training sets.

    Args:
        repo: the feature repo folder (holding the feature modules and ``featurekit.yaml``).
        progress: ``"auto"`` (a bar on stderr when it is a terminal), ``True``, ``False``, or an
            object with ``start/advance/finish`` methods.
    """

    def __init__(
        self, repo: str | Path = "feature_repo", *, progress: bool | Literal["auto"] | Progress = "auto"
    ) -> None:
        self.root = Path(repo)
        if not self.root.is_dir():
            raise SchemaError(f"feature repo {self.root} is not a folder; run `featurekit init {self.root}` first")
        self.config: RepoConfig = load_config(self.root)
        self.store_root = self.root / self.config.store_dir
        self.registry = Registry(self.store_root / "registry.db")
        self.tables = OfflineTables(self.store_root)
        self._progress = make_progress(progress)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._definitions: RepoDefinitions | None = None

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = connect(self.config.offline, self.root)
        return self._con

    @property
    def definitions(self) -> RepoDefinitions:
        """The repo's definitions, loaded (and validated) on first use."""
        if self._definitions is None:
            self._definitions = load_repo(self.root, self.config.include)
        return self._definitions

    def close(self) -> None:
        """Release the registry and DuckDB connections."""
        self.registry.close()
        if self._con is not None:
            self._con.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loaded_view(self, name: str) -> FeatureView:
        views = self.definitions.views
        found = next((v for n, v in views.items() if n.lower() == name.lower()), None)
        if found is None:
            raise UnknownNameError(f"no feature view {name!r} in {self.root}{did_you_mean(name, views)}")
        return found

    def _check_applied(self, view: FeatureView, applied: ViewVersion) -> None:
        """Refuse to run code the registry has not applied (no silent skew)."""
        static = static_definition(view)
        stored = {k: applied.definition.get(k) for k in static}
        if code_hash(view.function) != applied.code_hash or static != stored:
            raise NotAppliedError(
                f"feature view '{view.name}' in {view.location} differs from its applied version "
                f"v{applied.version} (code {applied.code_hash}); run `featurekit apply` to register it"
            )

    def _applied(self, names: Sequence[str] | None) -> list[tuple[FeatureView, ViewVersion]]:
        active = self.registry.active()
        names = list(names) if names else sorted(self.definitions.views)
        pairs = []
        for name in names:
            view = self._loaded_view(name)
            current = next((a for n, a in active.items() if n.lower() == view.name.lower()), None)
            if current is None:
                raise NotAppliedError(f"feature view '{view.name}' is not applied yet; run `featurekit apply`")
            self._check_applied(view, current.version)
            pairs.append((view, current.version))
        return pairs

    # -- registry ---------------------------------------------------------------------------

    def plan(self) -> Plan:
        """What :meth:`apply` would change, without changing anything."""
        return make_plan(self.definitions.views, self.registry, self.con, self.root)

    def apply(self) -> Plan:
        """Register new versions of changed views in one registry transaction; returns the plan."""
        for attempt in range(_APPLY_ATTEMPTS):
            plan = self.plan()
            if not plan.has_changes:
                return plan
            try:
                plan.registry_version = self.registry.apply(
                    plan.new_versions,
                    plan.active,
                    expected_head=plan.expected_head,
                    summary="; ".join(str(c) for c in plan.changes if c.kind != "unchanged"),
                    git_commit=git_commit(self.root),
                )
            except ConflictError:
                # Another apply landed between our plan and our commit: plan again against it.
                if attempt == _APPLY_ATTEMPTS - 1:
                    raise
                continue
            return plan
        raise AssertionError("unreachable")

    def list_views(self) -> list[ViewInfo]:
        """The applied views with their versions and latest materializations."""
        return [self._info(name, active) for name, active in self.registry.active().items()]

    def show(self, view: str) -> ViewInfo:
        """One applied view (``"name"``), or an old version of it (``"name@v1"``)."""
        name, _, pinned = view.partition("@v")
        if pinned:
            if not pinned.isdigit():
                raise UnknownNameError(f"cannot read {view!r}; write VIEW or VIEW@vN")
            version = self.registry.version(name, int(pinned))
            return ViewInfo(version.view, version, {}, self.registry.latest_materialization(version.id))
        active = self.registry.active()
        found = next(((n, a) for n, a in active.items() if n.lower() == name.lower()), None)
        if found is None:
            raise UnknownNameError(f"no applied feature view {name!r}{did_you_mean(name, active)}")
        return self._info(*found)

    def _info(self, name: str, active: ActiveView) -> ViewInfo:
        return ViewInfo(name, active.version, active.metadata, self.registry.latest_materialization(active.version.id))

    # -- materialize ------------------------------------------------------------------------

    def _materializer(self) -> Materializer:
        return Materializer(self.con, self.root, self.tables, self.registry, self.config.offline.batch_rows)

    def materialize(
        self, start: datetime | str, end: datetime | str, views: Sequence[str] | None = None
    ) -> list[MaterializeResult]:
        """Compute ``[start, end)`` of the views (default: all) and commit each as a new data version.

        Re-materializing a window replaces its rows. Naive datetimes mean UTC.
        """
        start_at, end_at = utc(start, "start"), utc(end, "end")
        now = datetime.now(UTC)
        if start_at >= end_at:
            raise WindowError(f"start {start_at.isoformat()} must be before end {end_at.isoformat()}")
        if end_at > now:
            raise WindowError(
                f"end {end_at.isoformat()} is in the future (now is {now.isoformat()}); data after now does "
                "not exist yet, so a later run could not replace it consistently; pass an end up to now"
            )
        materializer = self._materializer()
        return [
            materializer.run(view, applied, start_at, end_at, incremental=False, progress=self._progress)
            for view, applied in self._applied(views)
        ]

    def materialize_incremental(
        self, end: datetime | str | None = None, views: Sequence[str] | None = None
    ) -> list[MaterializeResult]:
        """Continue each view from its watermark (first run: its earliest source row) up to ``end`` (now)."""
        end_at = utc(end, "end") if end is not None else datetime.now(UTC)
        if end_at > datetime.now(UTC):
            raise WindowError(f"end {end_at.isoformat()} is in the future; pass an end up to now")
        materializer = self._materializer()
        results = []
        for view, applied in self._applied(views):
            last = self.registry.latest_materialization(applied.id)
            if last is not None:
                start_at = last.watermark
            else:
                earliest = materializer.reader(view).min_timestamp()
                if earliest is None:
                    continue  # an empty source: nothing to materialize yet
                start_at = utc(earliest, "earliest source timestamp")
            if start_at >= end_at:
                continue
            results.append(materializer.run(view, applied, start_at, end_at, incremental=True, progress=self._progress))
        return results

    # -- training sets ----------------------------------------------------------------------

    def training_set(
        self,
        spine: Any,
        features: Sequence[FeatureRequest] | FeatureRequest,
        *,
        timestamp_field: str = "event_timestamp",
        full_names: bool = False,
    ) -> TrainingSet:
        """Join ``features`` point-in-time correct onto ``spine``.

        Args:
            spine: pandas, polars or Arrow frame, or a path to a Parquet file, with the join keys,
                a timestamp column and any other columns (labels); it comes back whole and in order.
            features: ``"view:feature"``, ``"view"`` (all its features), ``"view@v2:feature"``
                (a pinned version) or ``view["feature"]``.
            timestamp_field: the spine's time column.
            full_names: name feature columns ``view__feature`` (needed when two views share a
                feature name).
        """
        requests: Sequence[FeatureRequest] = (
            [features] if isinstance(features, (str, FeatureView)) or not isinstance(features, Sequence) else features
        )
        resolved, order = resolve(requests, self.registry.active(), self.registry)
        for item in resolved:
            if not item.pinned:
                self._check_applied(self._loaded_view(item.version.view), item.version)
        names = [f"{resolved[i].version.view}__{f}" if full_names else f for i, f in order]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise SchemaError(
                f"features {clashes} come from more than one view; pass full_names=True to get view__feature columns"
            )
        keys: dict[str, Any] = {}
        inputs = []
        for index, item in enumerate(resolved):
            version = item.version
            materialized = self.registry.latest_materialization(version.id)
            if materialized is None:
                raise DataError(
                    f"feature view '{version.view}' v{version.version} has no materialized data; "
                    "run `featurekit materialize --start ... --end ...` first"
                )
            for key in version.definition["join_keys"]:
                keys.setdefault(key, version.schema.field(key).type)
            source = version.definition["source"]
            ttl_us = version.definition["ttl_us"]
            inputs.append(
                ViewInput(
                    name=version.view,
                    files=self.tables.files(version.view, version.version, materialized.data_version),
                    schema=version.schema,
                    join_keys=version.definition["join_keys"],
                    timestamp_field=source["timestamp_field"],
                    created_field=source["created_timestamp_field"],
                    ttl=None if ttl_us is None else timedelta(microseconds=ttl_us),
                    features=[(f, names[order.index((index, f))]) for f in item.features],
                )
            )
        spine_input, keep_alive = prepare_spine(self.con, spine, timestamp_field, keys)
        taken = set(spine_input.columns)
        overlap = sorted(n for n in names if n in taken)
        if overlap:
            raise SchemaError(
                f"spine columns {overlap} have the same names as requested features; "
                "rename them or pass full_names=True"
            )
        output_order = [(i, item.features.index(f)) for i, f in order for item in [resolved[i]]]
        query = PointInTimeQuery(self.con, spine_input, inputs, output_order)
        return TrainingSet(query, keep_alive)
