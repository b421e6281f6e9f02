"""Training sets: resolve features, check the spine, join on the engine, then run on-demand views.

A training set is always built at one registry version (the head when none is asked for): the
view versions and their data versions are the ones committed at it, so the same registry version
gives the same result bit for bit, and the manifest records exactly what was read.
"""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from featurekit.errors import (
    ConfigError,
    DataError,
    ManifestError,
    RetentionError,
    SchemaError,
    StorageError,
    UnknownNameError,
)
from featurekit.manifest import MANIFEST_FILE, METADATA_KEY, Manifest, ViewRecord, load_manifest
from featurekit.offline.engine import JoinResult, OfflineEngine, Spine, local_path, uri_scheme
from featurekit.offline.explain import ExplainedView, ExplainPlan, explain
from featurekit.offline.explanation import Explanation
from featurekit.offline.inputs import view_input
from featurekit.offline.spine import prepare_spine
from featurekit.offline.spine_types import SpineTypes
from featurekit.offline.tables import OfflineTables
from featurekit.ondemand import OnDemandStep, needed_columns, run_steps
from featurekit.quality.profile import Profile
from featurekit.quality.profiling import ProfileState, RowsProfiler, version_edges
from featurekit.references import ResolvedFeatures, canonical, internal_name
from featurekit.registry import Registry, ViewVersion
from featurekit.timestamps import utc

PART_ROWS = 1_000_000  # rows per Parquet part of a training set written to a folder (by this process)


@dataclass(frozen=True)
class BuildOptions:
    """How a training set is asked for (recorded in its manifest)."""

    project: str
    features: list[str]  # the requests, as ``view[@vN][:feature]``
    registry_version: int
    timestamp_field: str
    full_names: bool
    known_at: datetime | None


@dataclass(frozen=True)
class TrainingRequest:
    """What a caller asked for, with a manifest's recorded request filled in."""

    features: Any  # FeatureRequest or a sequence of them
    timestamp_field: str
    full_names: bool
    as_of: Any  # a datetime, a registry version, or None (the head)
    known_at: datetime | None
    expected: Manifest | None  # the manifest to reproduce

    @classmethod
    def of(
        cls,
        features: Any,
        *,
        timestamp_field: str | None,
        full_names: bool | None,
        as_of: Any,
        known_at: datetime | str | None,
        manifest: Any,
    ) -> TrainingRequest:
        """The request of ``training_set(...)``; ``manifest=`` fixes everything it recorded."""
        expected = None
        if manifest is not None:
            expected = load_manifest(manifest)
            given = {"features": features, "as_of": as_of, "known_at": known_at}
            clashing = [name for name, value in given.items() if value is not None]
            if clashing:
                raise ManifestError(f"pass manifest= alone: it fixes {clashing} already")
            features, as_of, known_at = expected.features, expected.registry_version, expected.known_at
            timestamp_field = timestamp_field or expected.timestamp_field
            full_names = expected.full_names if full_names is None else full_names
        if features is None:
            raise UnknownNameError("no features requested; pass features=['view:feature', ...]")
        return cls(
            features=features,
            timestamp_field=timestamp_field or "event_timestamp",
            full_names=bool(full_names),
            as_of=as_of,
            known_at=None if known_at is None else utc(known_at, "known_at"),
            expected=expected,
        )

    def options(self, project: str, registry_version: int) -> BuildOptions:
        return BuildOptions(
            project=project,
            features=canonical(self.features),
            registry_version=registry_version,
            timestamp_field=self.timestamp_field,
            full_names=self.full_names,
            known_at=self.known_at,
        )


def build_training_set(
    engine: OfflineEngine,
    registry: Registry,
    tables: OfflineTables,
    plan: ResolvedFeatures,
    *,
    steps: list[OnDemandStep],
    spine: Any,
    options: BuildOptions,
) -> TrainingSet:
    """The training set of ``plan`` on ``spine``, with the data committed at ``options.registry_version``."""
    full_names, as_of, known_at = options.full_names, options.registry_version, options.known_at
    names = plan.output_names(full_names)
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise SchemaError(
            f"features {clashes} come from more than one view; pass full_names=True to get view__feature columns"
        )
    final = {(v.id, f): n for (v, f), n in zip(plan.outputs, names, strict=True)}
    if known_at is not None:
        lacking = [i.version.view for i in plan.batch if not i.version.definition["source"]["created_timestamp_field"]]
        if lacking:
            raise SchemaError(
                f"known_at needs a created (write-time) timestamp, and feature views {lacking} declare none; "
                "pass created_timestamp_field= to their sources, or leave known_at out"
            )
    keys: dict[str, pa.DataType] = {}
    inputs = []
    records = []
    explained = []
    for item in plan.batch:
        version = item.version
        materialized = registry.last_materialization(version.id, as_of)
        if materialized is None:
            raise DataError(
                f"feature view '{version.view}' v{version.version} has no materialized data at registry version "
                f"{as_of}; run `featurekit materialize --start ... --end ...` first"
            )
        removal = registry.removal(version.id, materialized.data_version)
        if removal is not None:
            raise RetentionError(
                f"data version {materialized.data_version} of feature view '{version.view}' v{version.version} "
                f"(committed at registry version {materialized.commit_id}, {materialized.committed_at.isoformat()}) "
                f"was removed by gc at {removal.removed_at.isoformat()} under policy {removal.policy}; "
                "time travel to before the retention window is not possible"
            )
        records.append(_record(registry, version, materialized.data_version, materialized.commit_id))
        for key in version.definition["join_keys"]:
            keys.setdefault(key, version.schema.field(key).type)
        # Without on-demand views the join names columns as the user will see them; otherwise it
        # uses internal names and the post-processing renames after the on-demand views ran.
        columns = [(f, internal_name(version, f) if steps else final[(version.id, f)]) for f in item.features]
        files = tables.files(version.view, version.version, materialized.data_version)
        entities, unique_times = registry.data_stats(version.id, as_of)
        inputs.append(
            view_input(version, files, columns, known_at=known_at, entities=entities, unique_times=unique_times)
        )
        outputs = {f: final.get((version.id, f)) for f in item.features}
        explained.append(ExplainedView(version, materialized, inputs[-1], outputs))
    records += [_record(registry, item.version, None, None) for item in plan.on_demand]
    records += [_record(registry, version, None, None) for version in plan.sets]  # the model's feature set
    prepared = prepare_spine(spine, options.timestamp_field, keys, spark=engine.name == "spark")
    spine_columns = prepared.spine.columns
    overlap = sorted(n for n in names if n in spine_columns)
    if overlap:
        raise SchemaError(
            f"spine columns {overlap} have the same names as requested features; rename them or pass full_names=True"
        )
    missing_request = sorted({r for s in steps for r in s.request if r not in spine_columns})
    if missing_request:
        raise SchemaError(
            f"on-demand features need request inputs {missing_request}; add spine columns of those names "
            f"(the spine has {spine_columns})"
        )
    position = {item.version.id: i for i, item in enumerate(plan.batch)}
    order: list[tuple[int, int]] | None = None  # default: every fetched column, for the on-demand views
    post = _post_processor(steps, spine_columns, plan, names) if steps else None
    if not steps:
        order = [(position[v.id], plan.batch[position[v.id]].features.index(f)) for v, f in plan.outputs]
    join = engine.point_in_time(prepared.spine, inputs, order)

    def manifest() -> Manifest:
        from featurekit import __version__

        return Manifest(
            featurekit_version=__version__,
            project=options.project,
            registry_version=as_of,
            built_at=datetime.now(UTC).isoformat(),
            features=options.features,
            full_names=full_names,
            timestamp_field=options.timestamp_field,
            known_at=None if known_at is None else known_at.isoformat(),
            spine_digest=prepared.digest(),
            spine_rows=prepared.spine.rows,
            spine_columns=spine_columns,
            views=records,
        )

    on_demand = [(i.version, {f: final.get((i.version.id, f)) for f in i.version.features}) for i in plan.on_demand]
    explain_plan = ExplainPlan(
        engine, prepared.spine, prepared.check, as_of, known_at, explained, join.strategies, on_demand
    )

    def written(location: str, made: Manifest) -> None:
        registry.record_training_set(location, made.registry_version, made.to_json())

    return TrainingSet(
        join,
        prepared.check,
        post,
        manifest,
        explanation=lambda: explain(explain_plan),
        written=written,
        profiler=_profiler(registry, plan, final),
        spine=prepared.spine,
    )


def _dictionary(schema: pa.Schema) -> list[str] | bool:
    """The columns a training set's Parquet dictionary-encodes: all but the floating-point ones.

    Float features rarely repeat, so pyarrow builds a dictionary of every value of a column chunk
    (up to its 1 MB page limit) and then writes it beside the indices: at 100k rows and 8 float
    features that was 70% of the writer's CPU time (55 of 79 ms) and made the file 18% larger.
    With a nested column, all (pyarrow names a nested column's leaves by path, not by its name).
    """
    if any(pa.types.is_nested(field.type) for field in schema):
        return True
    return [field.name for field in schema if not pa.types.is_floating(field.type)]


def _parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer of a training set's ``schema``; a column Parquet cannot hold is a SchemaError.

    The schema is tried on a writer in memory first: pyarrow opens the file before it converts the
    schema, and a writer that failed there keeps the file open while its exception lives.
    """
    try:
        pq.ParquetWriter(pa.BufferOutputStream(), schema).close()
    except pa.ArrowNotImplementedError as exc:
        raise _unwritable(schema, exc) from None
    return pq.ParquetWriter(path, schema, use_dictionary=_dictionary(schema))


def _write_table(table: pa.Table, path: Path) -> None:
    """Write one Parquet file of a training set's rows (see :func:`_parquet_writer`)."""
    with _parquet_writer(path, table.schema) as writer:
        writer.write_table(table)


def _unwritable(schema: pa.Schema, exc: pa.ArrowNotImplementedError) -> SchemaError:
    """The error for a training set whose ``schema`` holds columns of types Parquet has no form for."""
    named = []
    for field in schema:
        try:
            pq.ParquetWriter(pa.BufferOutputStream(), pa.schema([field])).close()
        except pa.ArrowNotImplementedError:
            named.append(f"{field.name} ({field.type})")
    return SchemaError(
        f"the training set cannot be written to Parquet: Parquet has no type for column(s) "
        f"{', '.join(named) or '?'} ({exc}); cast them in the spine (a duration to int64 microseconds, say) "
        "or take the rows with to_arrow() / to_pandas()"
    )


def _profiler(
    registry: Registry, plan: ResolvedFeatures, final: dict[tuple[int, str], str]
) -> Callable[[], RowsProfiler]:
    """A profiler of the training set's feature columns; batch views' on their versions' edges."""
    edges: dict[str, tuple[float, ...]] = {}
    for item in plan.batch:
        if not item.version.is_window:  # a window view's edges are of its events, not of its aggregates
            stored = version_edges(registry, item.version) or {}
            # (features fetched only as inputs of on-demand views are not columns of the result)
            edges |= {final[(item.version.id, f)]: stored[f] for f in stored if (item.version.id, f) in final}
    columns = list(final.values())
    return lambda: RowsProfiler(columns, edges, "training set")


def _record(registry: Registry, version: ViewVersion, data_version: int | None, commit: int | None) -> ViewRecord:
    return ViewRecord(
        view=version.view,
        version=version.version,
        kind=str(version.definition.get("kind", "batch")),
        code_hash=version.code_hash,
        fingerprint=version.fingerprint,
        data_version=data_version,
        materialized_at_registry_version=commit,
        git_commit=registry.commit(version.commit_id).git_commit,
    )


def _post_processor(
    steps: list[OnDemandStep], spine_columns: list[str], plan: ResolvedFeatures, names: list[str]
) -> Callable[[pa.Table], pa.Table]:
    outputs = [(internal_name(v, f), n) for (v, f), n in zip(plan.outputs, names, strict=True)]
    needed = list(dict.fromkeys(needed_columns(steps) + [i for i, _ in outputs]))

    def post(table: pa.Table) -> pa.Table:
        frame = pl.DataFrame(table.select([c for c in needed if c in table.column_names]))
        columns = run_steps(steps, {name: frame.get_column(name) for name in frame.columns})
        computed = pl.DataFrame([pl.Series(n, columns[i]) for i, n in outputs]).to_arrow()
        # The spine's own columns stay the Arrow columns it came with, untouched by polars.
        result = table.select(spine_columns)
        for name in computed.column_names:
            result = result.append_column(name, computed.column(name))
        return result

    return post


class TrainingSet:
    """A point-in-time-correct training set; computed when first converted.

    ``to_arrow()`` / ``to_pandas()`` / ``to_polars()`` materialize it in memory once;
    ``to_parquet(path)`` streams it to a file in bounded memory instead.
    """

    def __init__(
        self,
        join: JoinResult,
        check: Callable[[], None] = lambda: None,
        post: Callable[[pa.Table], pa.Table] | None = None,
        manifest: Callable[[], Manifest] | None = None,
        *,
        explanation: Callable[[], Explanation] | None = None,
        written: Callable[[str, Manifest], None] | None = None,
        profiler: Callable[[], RowsProfiler] | None = None,
        spine: Spine | None = None,
    ) -> None:
        self._join = join
        self._types = SpineTypes(spine) if spine is not None else None  # the spine's columns in its own types
        self._check = check  # raises DataError if a spine file changed under the join
        # The engine holds the spine while this object lives (it can be converted again); then it
        # is released, so a notebook's old spines do not pile up in memory.
        weakref.finalize(self, join.close)
        self._post = post  # on-demand features, computed batch by batch after the join
        self._make_manifest = manifest
        self._manifest: Manifest | None = None
        self._written = written  # records a file written by to_parquet (the lineage of training sets)
        self._table: pa.Table | None = None
        self._make_explanation = explanation
        self._explanation: Explanation | None = None
        self._profiler = profiler  # the feature columns' profile, taken when the rows are first produced
        self._profile: Profile | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        """What this training set was built from, as a JSON-ready dict.

        ``store.training_set(spine, manifest=ts.manifest)`` rebuilds it bit for bit.
        """
        return self.manifest_model.to_dict()

    @property
    def manifest_model(self) -> Manifest:
        """The manifest as a :class:`~featurekit.manifest.Manifest` (computed once: it hashes the spine).

        It holds the feature columns' profile once the rows were produced (``to_arrow``,
        ``to_parquet``, ``profile()``); asking for the manifest alone reads no feature data.
        """
        if self._manifest is None:
            if self._make_manifest is None:
                raise AssertionError("this training set was built without a manifest")
            self._manifest = self._make_manifest()
        if self._manifest.profile is None and self._profile is None and self._table is not None:
            self._profile_rows()
        if self._manifest.profile is None and self._profile is not None:
            # The profile is taken in the pass that produces the rows (or from the rows in memory);
            # the manifest never reads the data itself (a manifest must stay available to rebuild
            # from after gc removed the data).
            self._manifest = self._manifest.model_copy(update={"profile": self._profile.to_dict()})
        return self._manifest

    def profile(self) -> Profile | None:
        """The profile of the feature columns (the model's reference for drift); also in the manifest.

        Taken in the pass that produces the rows (``to_arrow``, ``to_parquet``); asked for first,
        it computes the training set in memory. None for a training set built without one.
        """
        if self._profile is None and self._profiler is not None:
            self.to_arrow()
            self._profile_rows()
        return self._profile

    def _profile_rows(self) -> None:
        """Profile the rows in memory, once asked for (``to_arrow`` alone does not pay for it)."""
        if self._profiler is not None and self._profile is None and self._table is not None:
            profiler = self._profiler()
            profiler.add(self._table)
            self._profile = profiler.result()

    @property
    def description(self) -> str:
        """How the engine builds this training set (for DuckDB: the plans chosen and the SQL)."""
        return self._join.description

    def explain(self) -> Explanation:
        """How this training set is built and what its features look like, view by view (computed once).

        Per view: the version, data version and files read, rows scanned, the join strategy the
        engine took and why, each feature's coverage (share of spine rows with a value), the
        staleness quantiles of t - e (spine time minus the matched row's event time), and leakage
        findings: matched rows created after the spine time (when ``known_at`` was not given) and
        spine rows outside the materialized range (silent nulls). Window views report coverage,
        the window rule and the events counted; on-demand views their inputs. It runs the
        training set's own join once more, with the matched rows' times; building the training
        set computes none of it.
        """
        if self._explanation is None:
            if self._make_explanation is None:
                raise AssertionError("this training set was built without what explain() needs")
            self._explanation = self._make_explanation()
        return self._explanation

    def to_arrow(self) -> pa.Table:
        """The training set as an Arrow table."""
        if self._table is None:
            table = self._join.to_arrow()
            self._check()
            if self._types is not None:
                table = self._types.table(table)
            self._table = self._post(table) if self._post is not None else table
        return self._table

    def to_pandas(self) -> Any:
        """The training set as a pandas DataFrame."""
        return self.to_arrow().to_pandas()

    def to_polars(self) -> Any:
        """The training set as a polars DataFrame."""
        import polars as pl

        return pl.from_arrow(self.to_arrow())

    def to_parquet(self, path: str | os.PathLike[str]) -> Path | str:
        """Write the training set to a Parquet file or folder, streaming when it was not computed yet.

        The file's key-value metadata holds the manifest under ``featurekit.manifest``
        (read it back with ``featurekit.manifest.load_manifest(path)``). The store records the
        file and its manifest in the registry (``Registry.training_sets``), which lineage shows.

        A ``path`` ending in ``/`` (or an existing folder) gets a folder of Parquet parts, in row
        order by name, with the manifest beside them in ``_featurekit_manifest.json`` (Parquet
        readers skip it); on the Spark engine the executors write the parts. The folder appears
        whole or not at all; a folder written before is replaced. Returns the path written. A
        column Parquet has no type for (an interval) is a SchemaError naming it, and nothing is
        written.

        On the Spark engine ``path`` may be a URI of any filesystem Spark is configured for
        (``s3a://bucket/train/``, ``hdfs://...``, ``file://...``): it is always a folder, the
        executors write the parts there and profile them, and the folder is published by markers
        (see :mod:`featurekit.offline.spark_folders`), since an object store cannot rename it into
        place. A folder URI that holds a training set is never overwritten (a StorageError); one
        whose write died (``_featurekit_writing`` still in it) is refused by every featurekit reader
        and emptied by the next write. Returns the URI. The DuckDB engine writes local paths and
        ``file://`` URIs only.
        """
        location = os.fspath(path)
        scheme = uri_scheme(location) if isinstance(path, str) else None
        folder_of = getattr(self._join, "folder", None)  # the Spark engine writes URIs through Hadoop
        if scheme is not None and folder_of is not None:
            return self._to_uri(folder_of(location))
        if scheme is not None and scheme != "file":
            raise StorageError(
                f"the DuckDB engine cannot write a training set to {scheme}:// ({location}): it writes local paths "
                "and file:// URIs; write to a local folder and copy it there, or build the training set on the "
                "Spark engine (offline: {engine: spark}), which writes to any filesystem Spark is configured for"
            )
        target = Path(local_path(location))
        target.parent.mkdir(parents=True, exist_ok=True)
        if location.endswith(("/", os.sep)) or target.is_dir():
            return self._to_directory(target)
        temporary = target.with_name(f".{target.name}.partial")
        try:
            if self._table is not None:
                table = self._table
                _write_table(table.replace_schema_metadata(self._metadata(table.schema)), temporary)
            # Streamed through this process (not the engine's own writer), so that the profile in
            # the manifest is taken in the same pass; the manifest goes into the footer at the end.
            elif not self._stream(temporary):  # an empty spine: no batch came
                table = self.to_arrow()
                _write_table(table.replace_schema_metadata(self._metadata(table.schema)), temporary)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        try:
            self._check()
        except DataError:
            temporary.unlink(missing_ok=True)
            raise
        temporary.replace(target)  # readers never see a half-written file
        if self._written is not None and self._make_manifest is not None:
            self._written(str(target.resolve()), self.manifest_model)
        return target

    def _to_uri(self, folder: Any) -> str:
        """:meth:`to_parquet` into a folder URI on Spark (a :class:`~featurekit.offline.spark_folders.SparkFolder`)."""
        folder.begin()
        try:
            if self._post is None and self._table is None:
                folder.write_parts(self._join.spark_frame())  # type: ignore[attr-defined]  # the Spark join's
                if self._profiler is not None and self._profile is None:
                    profiler = self._profiler()
                    for text in folder.profile_states(profiler.columns):  # taken on the executors
                        state = ProfileState.from_json(text)
                        profiler.state = state if profiler.state is None else profiler.state.merge(state)
                    self._profile = profiler.result()
            else:  # computed here (on-demand views ran in this process): handed to Spark to write
                from featurekit.offline.spark_join import spark_frame_of

                folder.write_parts(spark_frame_of(folder.session, self.to_arrow()))
            self._check()
            folder.commit(self.manifest_model.to_json())
        except BaseException:
            folder.abort()
            raise
        if self._written is not None and self._make_manifest is not None:
            self._written(folder.uri, self.manifest_model)
        return str(folder.uri)

    def to_spark(self, session: Any = None) -> Any:
        """The training set as a Spark DataFrame.

        Built on the Spark engine, it is the join's own DataFrame: Spark computes it where it is
        used, and no row passes through this process (so no profile is taken, and a spine file
        replaced meanwhile is not noticed). Built on DuckDB (or with on-demand features), the rows
        are computed here and handed to ``session`` (on DuckDB it is required).
        """
        native = getattr(self._join, "spark_frame", None)  # only the Spark engine's join has one
        if native is not None and self._post is None:
            return native()
        session = session if session is not None else getattr(self._join, "session", None)
        if session is None:
            raise ConfigError(
                "to_spark() on a training set built by the DuckDB engine needs a Spark session to hand the rows "
                "to: ts.to_spark(spark); or build it on Spark (offline: {engine: spark}, or "
                "FeatureStore(repo, spark=spark))"
            )
        from featurekit.offline.spark_join import spark_frame_of

        return spark_frame_of(session, self.to_arrow())

    def _to_directory(self, target: Path) -> Path:
        """:meth:`to_parquet` into a folder: Parquet parts in row order by name, the manifest beside them."""
        temporary = target.with_name(f".{target.name}.partial")
        shutil.rmtree(temporary, ignore_errors=True)
        kept = list(target.iterdir()) if target.is_dir() else []
        if kept and not (target / MANIFEST_FILE).is_file():
            raise StorageError(
                f"{target} is a folder holding files that are not a training set ({kept[0].name}, ...); "
                "pass a new or empty folder"
            )
        profiler = self._profiler() if self._profiler is not None else None
        parts = getattr(self._join, "write_parts", None)  # the Spark engine's executors write the parts
        try:
            if parts is not None and self._post is None and self._table is None:
                for text in parts(temporary, profiler.columns if profiler is not None else []):
                    if profiler is not None:  # a partition's profile state, taken on the executors
                        state = ProfileState.from_json(text)
                        profiler.state = state if profiler.state is None else profiler.state.merge(state)
            else:
                temporary.mkdir(parents=True)
                batches = self._table.to_batches(PART_ROWS) if self._table is not None else self.iter_batches(PART_ROWS)
                index = -1
                for index, batch in enumerate(batches):
                    part = pa.Table.from_batches([batch])
                    if profiler is not None:
                        profiler.add_beside(part)  # profiled while the part is encoded
                    _write_table(part, temporary / f"part-{index:05d}.parquet")
                if index < 0:  # an empty spine: one empty part keeps the columns
                    _write_table(self.to_arrow(), temporary / "part-00000.parquet")
            if profiler is not None and self._profile is None:
                self._profile = profiler.result()
            self._check()
            (temporary / MANIFEST_FILE).write_text(self.manifest_model.to_json())
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        finally:
            if profiler is not None:
                profiler.close()
        replaced = target.with_name(f".{target.name}.replaced")
        if target.exists():
            target.rename(replaced)
        temporary.rename(target)  # readers see the old folder or the new one, never a half-written one
        shutil.rmtree(replaced, ignore_errors=True)
        if self._written is not None and self._make_manifest is not None:
            self._written(str(target.resolve()), self.manifest_model)
        return target

    def _stream(self, path: Path) -> bool:
        """Write the batches to ``path``, profiling them; the manifest goes into the footer. False: none came."""
        profiler = self._profiler() if self._profiler is not None else None
        writer: pq.ParquetWriter | None = None
        try:
            for batch in self.iter_batches():
                if writer is None:
                    writer = _parquet_writer(path, batch.schema)
                if profiler is not None:
                    profiler.add_beside(pa.Table.from_batches([batch]))  # profiled while the batch is encoded
                writer.write_batch(batch)
            if writer is not None:
                if profiler is not None:
                    self._profile = profiler.result()
                writer.add_key_value_metadata(self._metadata(writer.schema))
        finally:
            if profiler is not None:
                profiler.close()
            if writer is not None:
                writer.close()
        return writer is not None

    def _metadata(self, schema: pa.Schema) -> dict[str, str]:
        """The file's key-value metadata: the schema's own, and the manifest (with the profile)."""
        metadata = {key.decode(): value.decode() for key, value in (schema.metadata or {}).items()}
        if self._make_manifest is not None:
            metadata[METADATA_KEY] = self.manifest_model.to_json()
        return metadata

    def iter_batches(self, rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        """Stream the training set as Arrow record batches."""
        for returned in self._join.to_batches(rows):
            batch = self._types.batch(returned) if self._types is not None else returned
            if self._post is None:
                yield batch
            else:
                yield from self._post(pa.Table.from_batches([batch])).to_batches()
        self._check()

    def __len__(self) -> int:
        return int(self.to_arrow().num_rows)
