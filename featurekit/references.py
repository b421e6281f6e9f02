"""Feature references: parse ``"view"``, ``"view:feature"``, ``"view@v2:feature"``, a
:class:`~featurekit.definitions.FeatureRef` or a view object, and resolve them against the registry.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from featurekit.definitions import FeatureRef, FeatureView
from featurekit.errors import UnknownNameError, did_you_mean
from featurekit.registry import ActiveView, Registry, ViewVersion

_REF = re.compile(r"^(?P<view>[^:@]+)(?:@v(?P<version>\d+))?(?::(?P<feature>[^:]+))?$")

FeatureRequest = str | FeatureRef | FeatureView


def parse_ref(item: FeatureRequest) -> FeatureRef:
    """Turn one feature request into a :class:`FeatureRef`."""
    if isinstance(item, FeatureRef):
        return item
    if isinstance(item, FeatureView):
        return FeatureRef(item.name)
    if not isinstance(item, str):
        raise UnknownNameError(
            f"feature request {item!r} must be 'view:feature', 'view', 'view@v2:feature' or view['feature']"
        )
    match = _REF.match(item.strip())
    if match is None:
        raise UnknownNameError(
            f"cannot read feature request {item!r}; write 'view:feature', 'view' or 'view@v2:feature'"
        )
    version = match.group("version")
    return FeatureRef(match.group("view"), match.group("feature"), int(version) if version else None)


@dataclass
class ResolvedView:
    """One view version a request reads, with the features asked of it (in request order)."""

    version: ViewVersion
    pinned: bool
    features: list[str] = field(default_factory=list)


def resolve(
    requests: Sequence[FeatureRequest], active: dict[str, ActiveView], registry: Registry
) -> tuple[list[ResolvedView], list[tuple[int, str]]]:
    """Resolve requests to view versions; returns the views and the output order (view index, feature)."""
    if isinstance(requests, (str, FeatureRef, FeatureView)):
        requests = [requests]
    if not requests:
        raise UnknownNameError("no features requested; pass features=['view:feature', ...]")
    views: list[ResolvedView] = []
    order: list[tuple[int, str]] = []
    by_lower = {name.lower(): a for name, a in active.items()}
    for item in requests:
        ref = parse_ref(item)
        if ref.version is None:
            current = by_lower.get(ref.view.lower())
            if current is None:
                raise UnknownNameError(
                    f"no applied feature view {ref.view!r}{did_you_mean(ref.view, active)}; "
                    "if it is new, run `featurekit apply`"
                )
            version, pinned = current.version, False
        else:
            version, pinned = registry.version(ref.view, ref.version), True
        index = next((i for i, v in enumerate(views) if v.version.id == version.id and v.pinned == pinned), None)
        if index is None:
            views.append(ResolvedView(version, pinned))
            index = len(views) - 1
        wanted = version.features if ref.feature is None else [ref.feature]
        for feature in wanted:
            if feature not in version.features:
                raise UnknownNameError(
                    f"feature view '{version.view}' v{version.version} has no feature {feature!r}"
                    f"{did_you_mean(feature, version.features)}"
                )
            if (index, feature) not in order:
                order.append((index, feature))
                views[index].features.append(feature)
    return views, order
