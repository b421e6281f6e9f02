"""Build a training set: resolve features, check the spine, join, then run on-demand views.

A training set is always built at one registry version (the head when none is asked for): the
view versions and their data versions are the ones committed at it, so the same registry version
gives the same result bit for bit, and the manifest records exactly what was read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from featurekit.errors import DataError, RetentionError, SchemaError
from featurekit.manifest import Manifest, ViewRecord
from featurekit.offline.retrieval import PointInTimeQuery, TrainingSet, ViewInput
from featurekit.offline.spine import prepare_spine
from featurekit.offline.tables import OfflineTables
from featurekit.ondemand import OnDemandStep, needed_columns, run_steps
from featurekit.references import FeaturePlan, internal_name
from featurekit.registry import Registry, ViewVersion


@dataclass(frozen=True)
class BuildOptions:
    """How a training set is asked for (recorded in its manifest)."""

    project: str
    features: list[str]  # the requests, as ``view[@vN][:feature]``
    registry_version: int
    timestamp_field: str
    full_names: bool
    known_at: datetime | None


def build_training_set(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    tables: OfflineTables,
    plan: FeaturePlan,
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
        inputs.append(ViewInput.from_version(version, files, columns, known_at))
    records += [_record(registry, item.version, None, None) for item in plan.on_demand]
    spine_input, keep_alive = prepare_spine(con, spine, options.timestamp_field, keys)
    overlap = sorted(n for n in names if n in spine_input.columns)
    if overlap:
        raise SchemaError(
            f"spine columns {overlap} have the same names as requested features; rename them or pass full_names=True"
        )
    missing_request = sorted({r for s in steps for r in s.request if r not in spine_input.columns})
    if missing_request:
        raise SchemaError(
            f"on-demand features need request inputs {missing_request}; add spine columns of those names "
            f"(the spine has {spine_input.columns})"
        )
    position = {item.version.id: i for i, item in enumerate(plan.batch)}
    order: list[tuple[int, int]] | None = None  # default: every fetched column, for the on-demand views
    post = _post_processor(steps, spine_input.columns, plan, names) if steps else None
    if not steps:
        order = [(position[v.id], plan.batch[position[v.id]].features.index(f)) for v, f in plan.outputs]
    query = PointInTimeQuery(con, spine_input, inputs, order)

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
            spine_digest=spine_input.digest(),
            spine_rows=spine_input.rows,
            spine_columns=spine_input.columns,
            views=records,
        )

    return TrainingSet(query, keep_alive, post, manifest)


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
    steps: list[OnDemandStep], spine_columns: list[str], plan: FeaturePlan, names: list[str]
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
