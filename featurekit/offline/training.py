"""Build a training set: resolve features, check the spine, join, then run on-demand views."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from featurekit.errors import DataError, SchemaError
from featurekit.offline.retrieval import PointInTimeQuery, TrainingSet, ViewInput
from featurekit.offline.spine import prepare_spine
from featurekit.offline.tables import OfflineTables
from featurekit.ondemand import OnDemandStep, needed_columns, run_steps
from featurekit.references import FeaturePlan, internal_name
from featurekit.registry import Registry


def build_training_set(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    tables: OfflineTables,
    plan: FeaturePlan,
    *,
    steps: list[OnDemandStep],
    spine: Any,
    timestamp_field: str,
    full_names: bool,
    as_of: int | None = None,
) -> TrainingSet:
    """The training set of ``plan`` on ``spine`` (data as committed at registry version ``as_of``)."""
    names = plan.output_names(full_names)
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise SchemaError(
            f"features {clashes} come from more than one view; pass full_names=True to get view__feature columns"
        )
    final = {(v.id, f): n for (v, f), n in zip(plan.outputs, names, strict=True)}
    keys: dict[str, pa.DataType] = {}
    inputs = []
    for item in plan.batch:
        version = item.version
        materialized = registry.latest_materialization(version.id, as_of)
        if materialized is None:
            raise DataError(
                f"feature view '{version.view}' v{version.version} has no materialized data; "
                "run `featurekit materialize --start ... --end ...` first"
            )
        for key in version.definition["join_keys"]:
            keys.setdefault(key, version.schema.field(key).type)
        # Without on-demand views the join names columns as the user will see them; otherwise it
        # uses internal names and the post-processing renames after the on-demand views ran.
        columns = [(f, internal_name(version, f) if steps else final[(version.id, f)]) for f in item.features]
        files = tables.files(version.view, version.version, materialized.data_version)
        inputs.append(ViewInput.from_version(version, files, columns))
    spine_input, keep_alive = prepare_spine(con, spine, timestamp_field, keys)
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
    return TrainingSet(query, keep_alive, post)


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
