"""The skew check: the same entities through the training path and the serving path, compared.

For a sample of entities, ``training_set`` computes every requested feature as of one moment from
the offline store, and ``online_features`` computes them as of the same moment from the online
store; every cell that differs is reported with the entity, both values and the view version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


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

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def __str__(self) -> str:
        head = f"skew check at {self.at.isoformat()}: {self.entities} entities x {len(self.features)} features"
        if self.ok:
            return f"{head}: no skew"
        shown = "\n".join(f"  {m}" for m in self.mismatches[:50])
        more = f"\n  ... and {len(self.mismatches) - 50} more" if len(self.mismatches) > 50 else ""
        return f"{head}: {len(self.mismatches)} mismatches\n{shown}{more}"


def same(a: Any, b: Any, tolerance: float) -> bool:
    """Equal values; NaN equals NaN; floats within ``tolerance`` (relative) when it is non-zero."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or (tolerance > 0 and math.isclose(a, b, rel_tol=tolerance))
    return bool(a == b)


def compare(
    keys: dict[str, list[Any]],
    training: dict[str, list[Any]],
    serving: dict[str, list[Any]],
    owners: dict[str, tuple[str, int]],
    tolerance: float,
) -> list[Mismatch]:
    """Every differing cell of the feature columns named in ``owners`` (feature -> view, version)."""
    found = []
    count = len(next(iter(keys.values()), []))
    for feature, (view, version) in owners.items():
        for row in range(count):
            a, b = training[feature][row], serving[feature][row]
            if not same(a, b, tolerance):
                entity = {k: v[row] for k, v in keys.items()}
                found.append(Mismatch(entity, feature, view, version, a, b))
    return found
