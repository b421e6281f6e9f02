"""On-demand steps: the same preparation and execution of on-demand views for training and serving.

Both paths hold the fetched batch features in a polars frame under internal names (see
:func:`featurekit.references.internal_name`) with the dtypes the registry recorded, plus the request
columns; :func:`run_steps` renames each view's inputs to their declared names and hands them to
:func:`featurekit.transform.run_on_demand`, the one executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from featurekit.codebase import Codebase
from featurekit.definitions import OnDemandView
from featurekit.errors import FeatureFunctionError, SchemaError
from featurekit.frames import arrow_to_polars
from featurekit.references import ResolvedFeatures, internal_name
from featurekit.registry import Registry
from featurekit.transform import input_column, run_on_demand


@dataclass(frozen=True)
class OnDemandStep:
    """One on-demand view ready to run on a frame of internal columns."""

    view: OnDemandView
    name: str
    version: int
    inputs: list[tuple[str, str]]  # (internal column, declared input name)
    request: list[str]
    schema: dict[str, Any]  # declared input schema, in order
    outputs: list[tuple[str, str]]  # (function output column, internal name)


def build_steps(plan: ResolvedFeatures, codebase: Codebase, registry: Registry) -> list[OnDemandStep]:
    """Pair each on-demand version of the plan with importable code of exactly that version."""
    steps = []
    for resolved in plan.on_demand:
        version = resolved.version
        loaded = codebase.code_for(version)
        assert isinstance(loaded, OnDemandView)  # only an on-demand definition matches an on-demand version
        definition = version.definition
        inputs: list[tuple[str, str]] = []
        schema: dict[str, Any] = {}
        for item, fp in zip(definition["inputs"], definition["input_fingerprints"], strict=True):
            source = registry.version_by_fingerprint(item["view"], fp)
            inputs.append((internal_name(source, item["feature"]), item["feature"]))
            schema[item["feature"]] = arrow_to_polars(source.feature_type(item["feature"]))
        for name, dtype in loaded.request.items():
            schema[name] = dtype
        steps.append(
            OnDemandStep(
                view=loaded,
                name=version.view,
                version=version.version,
                inputs=inputs,
                request=list(loaded.request),
                schema=schema,
                outputs=[(f, internal_name(version, f)) for f in version.features],
            )
        )
    return steps


def request_inputs(steps: list[OnDemandStep]) -> dict[str, Any]:
    """Every request input the steps need, with its declared dtype."""
    needed: dict[str, Any] = {}
    for step in steps:
        for name in step.request:
            needed.setdefault(name, step.schema[name])
    return needed


def needed_columns(steps: list[OnDemandStep]) -> list[str]:
    """Internal columns and request names the steps read that no earlier step produces."""
    produced: set[str] = set()
    needed: list[str] = []
    for step in steps:
        for name in [internal for internal, _ in step.inputs] + step.request:
            if name not in produced and name not in needed:
                needed.append(name)
        produced.update(internal for _, internal in step.outputs)
    return needed


def run_steps(steps: list[OnDemandStep], columns: dict[str, pl.Series | list[Any]]) -> dict[str, pl.Series | list[Any]]:
    """Run the steps in order, each adding its outputs (under internal names) to ``columns``.

    Inputs may be polars series (training sets) or Python lists (online lookups); both become
    series of the declared dtypes by one rule (:func:`featurekit.transform.input_column`) before
    the function sees them.
    """
    for step in steps:
        missing = [r for r in step.request if r not in columns]
        if missing:
            raise SchemaError(
                f"on-demand view '{step.name}' needs request inputs {missing}; pass them as request={{...}} online, "
                "or as spine columns of the same names in a training set"
            )
        frame = pl.DataFrame(
            [input_column(step.view, name, columns[internal], step.schema[name]) for internal, name in step.inputs]
            + [input_column(step.view, r, columns[r], step.schema[r]) for r in step.request]
        )
        result = run_on_demand(step.view, frame, step.schema)
        missing_out = [c for c, _ in step.outputs if c not in result.columns]
        if missing_out:
            raise FeatureFunctionError(
                f"on-demand view '{step.name}' v{step.version} returned no column {missing_out} "
                f"(it returned {result.columns}); run `featurekit apply` if the function changed"
            )
        for column, internal in step.outputs:
            columns[internal] = result.get_column(column)
    return columns
