"""``FeatureStore``: the facade every entry point (notebook, serving code, job, CLI) goes through.

It owns the repo's configuration, its loaded definitions, the registry, the offline tables, the
online store and a DuckDB connection, and delegates each operation to the module that implements it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from featurekit.applied import check_applied
from featurekit.codebase import Codebase
from featurekit.config import RepoConfig, load_config, serving_log_folder
from featurekit.errors import (
    ConfigError,
    ConflictError,
    SchemaError,
    UnknownNameError,
    WindowError,
    did_you_mean,
)
from featurekit.info import ViewInfo
from featurekit.integrity import IntegrityReport, check_store
from featurekit.offline.duckdb_engine import DuckDBEngine
from featurekit.offline.engine import OfflineEngine
from featurekit.offline.materialize import Materializer, MaterializeResult
from featurekit.offline.tables import OfflineTables
from featurekit.offline.training import TrainingRequest, TrainingSet, build_training_set
from featurekit.ondemand import build_steps
from featurekit.online.base import OnlineStore
from featurekit.online.factory import online_packer, open_online_store
from featurekit.online.serving import OnlineReader, OnlineResponse, entity_columns
from featurekit.plan import Plan, git_commit, make_plan
from featurekit.progress import Progress, make_progress
from featurekit.push import PushResult, PushTarget, push
from featurekit.quality.check_results import CommitChecks, stored_checks
from featurekit.quality.consistency import ConsistencyReport
from featurekit.quality.drift import DriftReport, Thresholds
from featurekit.quality.profile import Profile
from featurekit.quality.serving_log import ServingLog
from featurekit.quality.sides import measure as measure_drift
from featurekit.references import FeatureRequest, resolve
from featurekit.registry import ActiveView, Registry
from featurekit.repo import RepoDefinitions, load_repo
from featurekit.retention import GcReport, Policy, collect_garbage
from featurekit.skew import SPINE_TIME, SkewReport, check_skew, sample_entities
from featurekit.timestamps import utc
from featurekit.timetravel import AsOf, HistoryEntry, check_reproduction, diff, history, registry_version

_APPLY_ATTEMPTS = 5


class FeatureStore:
    """A feature repo and its store: apply, materialize, training sets, online lookups.

    Args:
        repo: the feature repo folder (holding the feature modules and ``featurekit.yaml``).
        progress: ``"auto"`` (a bar on stderr when it is a terminal), ``True``, ``False``, or an
            object with ``start/advance/finish`` methods.
        engine: the offline engine (an :class:`~featurekit.offline.engine.OfflineEngine`); default:
            DuckDB in this process, or Spark with ``offline: {engine: spark}``, configured by
            ``offline:`` in ``featurekit.yaml``. The store closes it in :meth:`close`.
        spark: a SparkSession for the Spark engine (implies it); default: one built from
            ``offline.spark`` in the config when the engine is Spark. A session handed in is
            not stopped by :meth:`close`.
    """

    def __init__(
        self,
        repo: str | Path = "feature_repo",
        *,
        progress: bool | Literal["auto"] | Progress = "auto",
        engine: OfflineEngine | None = None,
        spark: Any = None,
    ) -> None:
        self.root = Path(repo)
        if not self.root.is_dir():
            raise SchemaError(f"feature repo {self.root} is not a folder; run `featurekit init {self.root}` first")
        self.config: RepoConfig = load_config(self.root)
        self.store_root = self.root / self.config.store_dir
        self.tables = OfflineTables(self.store_root)  # first: it refuses a folder Delta cannot hold
        self.registry = Registry(self.store_root / "registry.db")
        self._progress = make_progress(progress)
        self._engine: OfflineEngine | None = engine
        self._spark = spark
        self._online: OnlineStore | None = None
        self._server: OnlineReader | None = None
        self._log: ServingLog | None = None
        self._log_lock = threading.Lock()
        self._definitions: RepoDefinitions | None = None
        self.codebase = Codebase(self.root, lambda: self.definitions, list(self.config.archive), self.registry)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def engine(self) -> OfflineEngine:
        """The offline engine (default: DuckDB, in-process) that scans sources and builds training sets."""
        if self._engine is None:
            offline = self.config.offline
            if offline.engine == "spark" or self._spark is not None:
                from featurekit.offline.spark_engine import SparkEngine

                settings = offline.spark
                self._engine = SparkEngine(
                    self._spark,
                    master=settings.master,
                    conf=dict(settings.conf),
                    executor_wait_s=settings.executor_wait_s,
                )
            else:
                self._engine = DuckDBEngine(self.root, threads=offline.threads, memory_limit=offline.memory_limit)
        return self._engine

    @property
    def online(self) -> OnlineStore:
        """The configured online store."""
        if self._online is None:
            self._online = open_online_store(self.config.online, self.store_root)
        return self._online

    @property
    def definitions(self) -> RepoDefinitions:
        """The repo's definitions, loaded (and validated) on first use."""
        if self._definitions is None:
            self._definitions = load_repo(self.root, self.config.include)
        return self._definitions

    def close(self) -> None:
        """Write the serving log's waiting rows; release the registry, online store and DuckDB connections."""
        if self._log is not None:
            self._log.close()
        self.registry.close()
        if self._online is not None:
            self._online.close()
        if self._engine is not None:
            self._engine.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _materializer(self) -> Materializer:
        return Materializer(
            self.engine,
            root=self.root,
            tables=self.tables,
            registry=self.registry,
            online=lambda: self.online,
            batch_rows=self.config.offline.batch_rows,
            lock_wait_s=self.config.offline.lock_wait_s,
            packer=online_packer(self.config.online),
        )

    # -- registry ---------------------------------------------------------------------------

    def plan(self) -> Plan:
        """What :meth:`apply` would change, without changing anything."""
        return make_plan(self.definitions, self.registry, self.engine)

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
                    expected_apply=plan.expected_apply,
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
        """The applied views with their versions and last materializations."""
        return [self._info(name, active) for name, active in self.registry.active().items()]

    def show(self, view: str) -> ViewInfo:
        """One applied view (``"name"``), or an old version of it (``"name@v1"``)."""
        name, _, pinned = view.partition("@v")
        if pinned:
            if not pinned.isdigit():
                raise UnknownNameError(f"cannot read {view!r}; write VIEW or VIEW@vN")
            version = self.registry.version(name, int(pinned))
            return ViewInfo(version.view, version, {}, self.registry.last_materialization(version.id))
        active = self.registry.active()
        found = next(((n, a) for n, a in active.items() if n.lower() == name.lower()), None)
        if found is None:
            raise UnknownNameError(f"no applied feature view {name!r}{did_you_mean(name, active)}")
        return self._info(*found)

    def check_results(self, view: str, version: int | None = None) -> list[CommitChecks]:
        """The check results stored with each commit of a view version (default: the applied one), oldest first.

        One entry per materialization or offline push that ran checks: its data version, window
        and every check's observed value, threshold and status (see :mod:`featurekit.check`).
        """
        info = self.show(view if version is None else f"{view.partition('@v')[0]}@v{version}")
        return stored_checks(self.registry, info.version)

    def _info(self, name: str, active: ActiveView) -> ViewInfo:
        return ViewInfo(name, active.version, active.metadata, self.registry.last_materialization(active.version.id))

    # -- materialize ------------------------------------------------------------------------

    def materialize(
        self,
        start: datetime | str,
        end: datetime | str,
        views: Sequence[str] | None = None,
        *,
        online: bool = True,
    ) -> list[MaterializeResult]:
        """Compute ``[start, end)`` of the views (default: all) and commit each as a new data version.

        Re-materializing a window replaces its rows. The newest row of each entity the window
        touched then goes to the online store (``online=False`` skips that, e.g. for backfills of
        old history). Naive datetimes mean UTC.
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
            materializer.run(view, applied, start_at, end_at, incremental=False, progress=self._progress, online=online)
            for view, applied in self.codebase.batch_views(views)
        ]

    def materialize_incremental(
        self, end: datetime | str | None = None, views: Sequence[str] | None = None, *, online: bool = True
    ) -> list[MaterializeResult]:
        """Continue each view from its watermark (first run: its earliest source row) up to ``end`` (now).

        A view with no source rows since its watermark commits nothing and is left out of the
        result; its watermark stays, so late rows of that span are taken by the next run.
        """
        end_at = utc(end, "end") if end is not None else datetime.now(UTC)
        if end_at > datetime.now(UTC):
            raise WindowError(f"end {end_at.isoformat()} is in the future; pass an end up to now")
        materializer = self._materializer()
        results = []
        for view, applied in self.codebase.batch_views(views):
            last = self.registry.last_materialization(applied.id)
            if last is not None and last.watermark is not None:
                start_at = last.watermark
            else:
                earliest = materializer.reader(view).min_timestamp()
                if earliest is None:
                    continue  # an empty source: nothing to materialize yet
                start_at = utc(earliest, "earliest source timestamp")
            # Nothing new: commit nothing (a cron job would fill the registry with empty data versions)
            # and keep the watermark, so rows that arrive late for this window are picked up next time.
            if start_at >= end_at or materializer.reader(view).count(start_at, end_at) == 0:
                if online:  # nothing new, but a killed run may have left committed windows out of the store
                    materializer.catch_up_online(applied)
                continue
            results.append(
                materializer.run(
                    view, applied, start_at, end_at, incremental=True, progress=self._progress, online=online
                )
            )
        return results

    def push(self, view: str, rows: Any, *, to: PushTarget = "online") -> PushResult:
        """Run ``view``'s function on raw source ``rows`` and write the result online (and offline).

        ``to="online_and_offline"`` also commits the computed rows to the offline table. A key's
        online value changes only if the pushed row is at least as new (event time, then created).
        """
        ((loaded, applied),) = self.codebase.batch_views([view])
        return push(loaded, applied, rows, to, self._materializer())

    # -- training and serving ---------------------------------------------------------------

    def training_set(
        self,
        spine: Any,
        features: Sequence[FeatureRequest] | FeatureRequest | None = None,
        *,
        timestamp_field: str | None = None,
        full_names: bool | None = None,
        as_of: AsOf | None = None,
        known_at: datetime | str | None = None,
        manifest: Any = None,
    ) -> TrainingSet:
        """Join ``features`` point-in-time correct onto ``spine``, then compute on-demand features.

        Args:
            spine: pandas, polars or Arrow frame, or a path to a Parquet file, with the join keys,
                a timestamp column and any other columns (labels; request inputs of on-demand
                views); it comes back whole and in order.
            features: ``"view:feature"``, ``"view"`` (all its features), ``"view@v2:feature"``
                (a pinned version) or ``view["feature"]``.
            timestamp_field: the spine's time column (default ``event_timestamp``).
            full_names: name feature columns ``view__feature`` (needed when two views share a
                feature name).
            as_of: rebuild with the definitions and data committed at that moment (a datetime)
                or registry version (an int); later applies and materializations change nothing.
            known_at: bitemporal read: only feature rows whose created timestamp is at or before
                it (views without a created timestamp cannot be read this way).
            manifest: a training set's ``manifest`` (dict, JSON, or a file written by
                ``to_parquet``): rebuild exactly that training set; the spine must be the same.
        """
        asked = TrainingRequest.of(
            features,
            timestamp_field=timestamp_field,
            full_names=full_names,
            as_of=as_of,
            known_at=known_at,
            manifest=manifest,
        )
        at = registry_version(self.registry, asked.as_of)
        plan = resolve(asked.features, self.registry.active(at), self.registry, at)
        if asked.as_of is None:
            for item in plan.batch:  # training on the current definitions: the repo must match them
                if not item.pinned:
                    check_applied(self.codebase.loaded_view(item.version.view), item.version)
        options = asked.options(str(self.config.project), at)
        steps = build_steps(plan, self.codebase, self.registry)
        built = build_training_set(
            self.engine, self.registry, self.tables, plan, steps=steps, spine=spine, options=options
        )
        if asked.expected is not None:
            check_reproduction(asked.expected, built.manifest_model)
        return built

    def profile(
        self,
        view: str,
        *,
        window: tuple[datetime | str, datetime | str] | None = None,
        as_of: AsOf | None = None,
        edges: dict[str, tuple[float, ...]] | None = None,
    ) -> Profile:
        """The profile of a view version's committed data (``"view"`` or ``"view@v1"``).

        Without ``window``: the current data version's (as of ``as_of``), from the records its
        commits stored (see :mod:`featurekit.quality.data_profiles`). With ``window=(start, end)``:
        the committed rows with event times in it, read through the engine; histograms use the
        version's fixed edges either way, or ``edges`` (column -> edges) when given (drift profiles
        one side on the other's bins this way), which reads the rows only when the data version's
        stored states cannot count them exactly (edges off their bucket grid, which no view
        version's edges are).
        """
        from featurekit.quality.data_profiles import data_version_profile, resolve_version, window_profile
        from featurekit.quality.sketches import on_bucket_grid

        at = registry_version(self.registry, as_of)
        version = resolve_version(self.registry, view, at)
        if window is None and (edges is None or all(on_bucket_grid(e) for e in edges.values())):
            return data_version_profile(self.registry, self.tables, self.engine, version, as_of=at, edges=edges)
        if window is None:
            return window_profile(self.registry, self.tables, self.engine, version, None, as_of=at, edges=edges)
        start, end = utc(window[0], "window start"), utc(window[1], "window end")
        if start >= end:
            raise WindowError(f"window start {start.isoformat()} must be before its end {end.isoformat()}")
        return window_profile(self.registry, self.tables, self.engine, version, (start, end), as_of=at, edges=edges)

    # -- history, retention, integrity ------------------------------------------------------

    def check_integrity(self) -> IntegrityReport:
        """Check the registry, every recorded data file and the online tables (see :mod:`featurekit.integrity`)."""
        return check_store(self.store_root, self.online)

    def history(self, view: str | None = None) -> list[HistoryEntry]:
        """Applies and materializations (of one view, or all), oldest first."""
        return history(self.registry, view)

    def diff(self, view: str, old: int, new: int) -> str:
        """The definition and code differences between two versions of a view."""
        return diff(self.registry, view, old, new)

    def gc(self, keep_days: float, keep_versions: int, *, dry_run: bool = False) -> GcReport:
        """Remove offline data no retained state reads (see :mod:`featurekit.retention`)."""
        return collect_garbage(
            self.registry,
            self.tables,
            self.online,
            policy=Policy(keep_days, keep_versions),
            pins=self.config.pins,
            now=datetime.now(UTC),
            dry_run=dry_run,
        )

    def _serving(self) -> OnlineReader:
        if self._server is None:
            self._server = OnlineReader(self.registry, self.codebase, self.online, self.config.online.refresh_s)
        return self._server

    def online_features(
        self,
        entities: Any,
        features: Sequence[FeatureRequest] | FeatureRequest,
        *,
        request: dict[str, Any] | None = None,
        at: datetime | None = None,
        full_names: bool = False,
    ) -> OnlineResponse:
        """Look up the newest features of ``entities`` (a missing entity gives nulls).

        Args:
            entities: ``[{"driver_id": 1001}, ...]``, ``{"driver_id": [1001, 1002]}`` or a frame.
            features: as for :meth:`training_set`, including on-demand views.
            request: request-time inputs of on-demand views, one list (or one value) per name.
            at: the lookup time for TTLs (default: now); a value older than its view's TTL is null.
            full_names: name features ``view__feature`` (``view_v1__feature`` for pins), as in
                :meth:`training_set`.
        """
        response = self._serving().lookup(entities, features, request, at, full_names)
        log = self._log or self.serving_log
        if log is not None:
            log.offer(response, features, request)
        return response

    @property
    def serving_log(self) -> ServingLog | None:
        """The serving log (``online.log`` in ``featurekit.yaml``), or None when it is off.

        ``store.serving_log.counters()`` says how many served rows were logged, written, dropped
        (the queue was full) and are pending; see :mod:`featurekit.quality.serving_log`.
        """
        settings = self.config.online.log
        if settings is None:
            return None
        with self._log_lock:
            if self._log is None:
                self._log = ServingLog(serving_log_folder(self.root, settings), settings)
            return self._log

    def consistency(
        self,
        log: str | Path | Any = None,
        *,
        window: tuple[datetime | str, datetime | str] | None = None,
        features: Sequence[str] | None = None,
    ) -> ConsistencyReport:
        """Recompute served rows through the training path and compare (see :mod:`featurekit.quality.consistency`).

        Args:
            log: a serving log folder or file, or a table :func:`~featurekit.quality.serving_log.read_log`
                returned; default: this repo's ``online.log`` (its waiting rows are written first).
            window: ``(start, end)``: only rows served in ``[start, end)``.
            features: only these log columns (``view:feature``), served versions (``view@vN:feature``)
                or views (``view``, ``view@vN``).
        """
        from featurekit.quality.consistency import SPINE_AT, check_consistency
        from featurekit.quality.serving_log import in_window, read_log

        if log is None:
            own = self.serving_log
            if own is None:
                raise ConfigError("this repo has no serving log: set online.log in featurekit.yaml, or pass log=PATH")
            own.flush()
            log = own.folder
        table = read_log(log, window) if isinstance(log, (str, Path)) else in_window(log, window)

        def training(spine: Any, references: list[str]) -> Any:
            return self.training_set(spine, references, timestamp_field=SPINE_AT, full_names=True).to_arrow()

        return check_consistency(table, self.registry, training, features)

    def drift(
        self,
        features: Sequence[str] | None = None,
        *,
        reference: Any,
        current: Any,
        thresholds: Thresholds | None = None,
    ) -> DriftReport:
        """Did ``features`` drift from ``reference`` to ``current``?

        Each side is a view version's committed data (``"driver_stats@v1"``, or
        ``("driver_stats@v1", start, end)`` for a window of it), a training set (the object, or its
        Parquet file or folder by path or URI, whose manifest holds its profile),
        ``fk.ServedValues()`` (the serving log),
        an Arrow table of feature values, or a :class:`~featurekit.quality.profile.Profile`. The
        current side is profiled on the reference's histogram bins (reading its rows when its
        stored profile has other bins). Per feature: PSI, Jensen-Shannon distance, the
        Kolmogorov-Smirnov statistic (numerics) or L-infinity distance and new categories
        (categoricals), and the null-rate change, each with its threshold, noise level and status
        (:mod:`featurekit.quality.drift`). ``features`` default to every column both sides profile.
        """
        return measure_drift(self, list(features) if features is not None else None, reference, current, thresholds)

    def verify(
        self,
        features: Sequence[FeatureRequest] | FeatureRequest,
        *,
        entities: Any = None,
        sample: int = 100,
        request: dict[str, Any] | None = None,
        tolerance: float = 0.0,
        seed: int = 0,
        at: datetime | str | None = None,
    ) -> SkewReport:
        """Compare training and serving values of ``features`` for a sample of entities.

        Entities default to a random ``sample`` (fixed ``seed``) of those the first batch view
        holds. Both paths compute the features as of the same moment ``at`` (default: now; the
        online store holds the newest values, so ``at`` should not precede the last materialized
        window); every differing value is reported with the entity, both values and the view version.
        """
        at = utc(at, "at") if at is not None else datetime.now(UTC)
        plan = resolve(features, self.registry.active(), self.registry)
        if entities is not None:
            keys = entity_columns(entities)
        else:
            keys = sample_entities(self.engine, self.registry, self.tables, plan, sample=sample, seed=seed)
        return check_skew(
            plan,
            keys,
            at=at,
            request=request,
            tolerance=tolerance,
            training=lambda spine: self.training_set(spine, features, timestamp_field=SPINE_TIME).to_arrow(),
            serving=lambda: self.online_features(keys, features, request=request, at=at).to_dict(),
        )
