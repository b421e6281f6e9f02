"""The skew check: the same entities through the training path and the serving path, compared.

For a sample of entities, ``training_set`` computes every requested feature as of one moment from
the offline store, and ``online_features`` computes them as of the same moment from the online
store; every cell that differs is reported with the entity, both values and the view version.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from featurekit.errors import NotAppliedError, SchemaError
from featurekit.offline.engine import OfflineEngine
from featurekit.offline.inputs import view_input
from featurekit.offline.tables import OfflineTables
from featurekit.references import ResolvedFeatures
from featurekit.registry import Registry, ViewVersion
from featurekit.windows import FLOAT_TOLERANCE, WindowSpec, tolerant


class NothingComparedWarning(UserWarning):
    """A skew check found every value null on both paths, so it could not show skew."""


SPINE_TIME = "__verify_at"  # the spine column holding the moment both paths are asked about


@dataclass(frozen=True)
class Mismatch:
    """One feature of one entity that differs between training and serving."""

    entity: dict[str, Any]
    feature: str
    view: str
    version: int
    training: Any
    serving: Any

    def __str__(self) -> str:
        return (
            f"{self.view} v{self.version} {self.feature} for {self.entity}: "
            f"training {self.training!r} != serving {self.serving!r}"
        )


@dataclass
class SkewReport:
    """The outcome of a skew check."""

    entities: int
    features: list[str]
    at: Any
    mismatches: list[Mismatch] = field(default_factory=list)
    compared: int = 0  # cells where at least one path had a value (null on both proves nothing)

    @property
    def ok(self) -> bool:
        """No mismatch, and something was compared (all-null cells cannot show skew)."""
        return not self.mismatches and self.compared > 0

    def __str__(self) -> str:
        head = f"skew check at {self.at.isoformat()}: {self.entities} entities x {len(self.features)} features"
        if not self.mismatches:
            if not self.compared:
                return f"{head}: nothing was compared (every value was null on both paths)"
            return f"{head}: no skew in {self.compared} values"
        shown = "\n".join(f"  {m}" for m in self.mismatches[:50])
        more = f"\n  ... and {len(self.mismatches) - 50} more" if len(self.mismatches) > 50 else ""
        count = len(self.mismatches)
        return f"{head}: {count} mismatch{'es' if count != 1 else ''}\n{shown}{more}"


def same(a: Any, b: Any, tolerance: float) -> bool:
    """Equal values; NaN equals NaN (inside lists and structs too); floats within ``tolerance``
    (relative) when it is non-zero."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or (tolerance > 0 and math.isclose(a, b, rel_tol=tolerance))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, tolerance) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], tolerance) for k in a)
    return bool(a == b)


def compare(
    keys: dict[str, list[Any]],
    training: dict[str, list[Any]],
    serving: dict[str, list[Any]],
    owners: dict[str, tuple[str, int]],
    tolerance: float | dict[str, float],
) -> list[Mismatch]:
    """Every differing cell of the feature columns named in ``owners`` (feature -> view, version).

    ``tolerance``: one for every feature, or per feature name.
    """
    found = []
    count = len(next(iter(keys.values()), []))
    for feature, (view, version) in owners.items():
        allowed = tolerance.get(feature, 0.0) if isinstance(tolerance, dict) else tolerance
        for row in range(count):
            a, b = training[feature][row], serving[feature][row]
            if not same(a, b, allowed):
                entity = {k: v[row] for k, v in keys.items()}
                found.append(Mismatch(entity, feature, view, version, a, b))
    return found


def check_skew(
    plan: ResolvedFeatures,
    keys: dict[str, list[Any]],
    *,
    at: datetime,
    request: dict[str, Any] | None,
    tolerance: float,
    training: Callable[[pa.Table], pa.Table],
    serving: Callable[[], dict[str, list[Any]]],
) -> SkewReport:
    """Compute ``plan``'s features for ``keys`` at ``at`` through ``training`` and ``serving``; compare."""
    count = len(next(iter(keys.values()), []))
    spine: dict[str, Any] = dict(keys)
    spine[SPINE_TIME] = pa.array([at] * count, pa.timestamp("us", tz="UTC"))
    for name, value in (request or {}).items():
        spine[name] = list(value) if isinstance(value, (list, tuple)) else [value] * count
    trained = training(pa.table(spine))
    served = serving()
    names = plan.output_names(False)
    owners = {n: (v.view, v.version) for (v, _), n in zip(plan.outputs, names, strict=True)}
    columns = {n: trained.column(n).to_pylist() for n in names}
    allowed = {n: allowed_tolerance(v, f, tolerance) for (v, f), n in zip(plan.outputs, names, strict=True)}
    mismatches = compare(keys, columns, served, owners, allowed)
    compared = sum(
        1 for n in names for a, b in zip(columns[n], served[n], strict=True) if a is not None or b is not None
    )
    if not compared:
        warnings.warn(
            f"the skew check at {at.isoformat()} compared nothing: every value of {names} was null on both "
            "paths (no entity, or every value past its TTL); pass entities= or at= where data exists",
            NothingComparedWarning,
            stacklevel=3,
        )
    return SkewReport(entities=count, features=names, at=at, mismatches=mismatches, compared=compared)


def allowed_tolerance(version: ViewVersion, feature: str, tolerance: float) -> float:
    """The tolerance of one feature: window sums of floats (and means, std, var) may differ in the last bits."""
    if not version.is_window:
        return tolerance
    spec = WindowSpec.of(version.definition)
    chosen = next(f for f in spec.features if f.name == feature)
    return max(tolerance, FLOAT_TOLERANCE) if tolerant(chosen, version.schema) else tolerance


def sample_entities(
    engine: OfflineEngine, registry: Registry, tables: OfflineTables, plan: ResolvedFeatures, *, sample: int, seed: int
) -> dict[str, list[Any]]:
    """A random ``sample`` (fixed ``seed``) of the entities the plan's first batch view holds."""
    if not plan.batch:
        raise SchemaError("verify needs entities=... when the features come from no batch view")
    version = plan.batch[0].version
    materialized = registry.last_materialization(version.id)
    if materialized is None:
        raise NotAppliedError(f"feature view '{version.view}' has no materialized data to sample entities from")
    files = tables.files(version.view, version.version, materialized.data_version)
    keys = list(version.definition["join_keys"])
    newest = engine.newest_rows(view_input(version, files, [])) if files else pa.table({})
    rows = list(zip(*(newest.column(k).to_pylist() for k in keys), strict=True)) if newest.num_rows else []
    chosen = random.Random(seed).sample(rows, min(sample, len(rows)))  # noqa: S311 -- sampling, not security
    return {k: [r[i] for r in chosen] for i, k in enumerate(keys)}
