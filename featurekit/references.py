"""Feature references: parse ``"view"``, ``"view:feature"``, ``"view@v2:feature"``, a
:class:`~featurekit.definitions.FeatureRef` or a view object, and resolve them against the registry
into the batch view versions to read and the on-demand views to run (inputs first).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from featurekit.definitions import FeatureRef, FeatureSet, FeatureView, OnDemandView
from featurekit.errors import UnknownNameError, did_you_mean
from featurekit.registry import ActiveView, Registry, ViewVersion

_REF = re.compile(r"^(?P<view>[^:@]+)(?:@v(?P<version>\d+))?(?::(?P<feature>[^:]+))?$")

FeatureRequest = str | FeatureRef | FeatureView | OnDemandView | FeatureSet


def canonical(requests: Sequence[FeatureRequest] | FeatureRequest) -> list[str]:
    """The requests as ``view[@vN][:feature]`` strings (how manifests record them)."""
    if isinstance(requests, (str, FeatureRef, FeatureView, OnDemandView, FeatureSet)):
        requests = [requests]
    return [str(parse_ref(item)) for item in requests]


def parse_ref(item: FeatureRequest) -> FeatureRef:
    """Turn one feature request into a :class:`FeatureRef`."""
    if isinstance(item, FeatureRef):
        return item
    if isinstance(item, (FeatureView, OnDemandView, FeatureSet)):
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


def internal_name(version: ViewVersion, feature: str) -> str:
    """A column name unique to (view version, feature), used between the join and the output."""
    return f"__fk_{version.id}_{feature}"


@dataclass
class ResolvedView:
    """One view version a request reads or runs, with the features needed of it."""

    version: ViewVersion
    pinned: bool
    features: list[str] = field(default_factory=list)

    @property
    def on_demand(self) -> bool:
        return bool(self.version.definition.get("kind") == "on_demand")


@dataclass
class ResolvedFeatures:
    """What a request needs: batch views to read, on-demand views to run (inputs first), outputs."""

    batch: list[ResolvedView]
    on_demand: list[ResolvedView]
    outputs: list[tuple[ViewVersion, str]]
    pinned: set[int] = field(default_factory=set)  # ids of versions requested as view@vN
    sets: list[ViewVersion] = field(default_factory=list)  # the feature sets requested (expanded above)

    def output_names(self, full_names: bool) -> list[str]:
        """Feature column names: ``feature``, or with ``full_names`` ``view__feature`` (``view_v1__feature``
        for a pinned version, so that two versions of a view can be read side by side)."""
        if not full_names:
            return [f for _, f in self.outputs]
        return [f"{v.view}_v{v.version}__{f}" if v.id in self.pinned else f"{v.view}__{f}" for v, f in self.outputs]


class _Resolver:
    def __init__(self, active: dict[str, ActiveView], registry: Registry, as_of: int | None) -> None:
        self.as_of = as_of
        self.active = active
        self.by_lower = {name.lower(): a for name, a in active.items()}
        self.registry = registry
        self.views: dict[int, ResolvedView] = {}
        self.on_demand_order: list[int] = []

    def version_of(self, ref: FeatureRef) -> tuple[ViewVersion, bool]:
        if ref.version is not None:
            pinned = self.registry.version(ref.view, ref.version)
            if self.as_of is not None and pinned.commit_id > self.as_of:
                raise UnknownNameError(
                    f"feature view '{pinned.view}' v{pinned.version} was applied at registry version "
                    f"{pinned.commit_id}, after registry version {self.as_of} this request reads as of"
                )
            return pinned, True
        current = self.by_lower.get(ref.view.lower())
        if current is None:
            raise UnknownNameError(
                f"no applied feature view {ref.view!r}{did_you_mean(ref.view, self.active)}; "
                "if it is new, run `featurekit apply`"
            )
        return current.version, False

    def need(self, version: ViewVersion, feature: str, pinned: bool) -> None:
        if feature not in version.features:
            raise UnknownNameError(
                f"feature view '{version.view}' v{version.version} has no feature {feature!r}"
                f"{did_you_mean(feature, version.features)}"
            )
        resolved = self.views.get(version.id)
        if resolved is None:
            resolved = self.views[version.id] = ResolvedView(version, pinned)
            if resolved.on_demand:
                definition = version.definition
                for item, fp in zip(definition["inputs"], definition["input_fingerprints"], strict=True):
                    source = self.registry.version_by_fingerprint(item["view"], fp)
                    self.need(source, item["feature"], pinned or source.id != self._head_id(item["view"]))
                resolved.features = list(version.features)  # an on-demand function computes them all
                self.on_demand_order.append(version.id)
        if feature not in resolved.features:
            resolved.features.append(feature)

    def _head_id(self, view: str) -> int | None:
        current = self.by_lower.get(view.lower())
        return None if current is None else current.version.id


def resolve(
    requests: Sequence[FeatureRequest] | FeatureRequest,
    active: dict[str, ActiveView],
    registry: Registry,
    as_of: int | None = None,
) -> ResolvedFeatures:
    """Resolve requests into a :class:`ResolvedFeatures`; unknown names fail with a "did you mean".

    ``active`` is the set of applied views at registry version ``as_of`` (default: now); pins of
    versions applied after ``as_of`` are refused.
    """
    if isinstance(requests, (str, FeatureRef, FeatureView, OnDemandView, FeatureSet)):
        requests = [requests]
    if not requests:
        raise UnknownNameError("no features requested; pass features=['view:feature', ...]")
    resolver = _Resolver(active, registry, as_of)
    outputs: list[tuple[ViewVersion, str]] = []
    pinned_ids: set[int] = set()
    sets: list[ViewVersion] = []
    pending = [parse_ref(item) for item in requests]
    while pending:
        ref = pending.pop(0)
        version, pinned = resolver.version_of(ref)
        if is_feature_set(version):
            if ref.feature is not None:
                raise UnknownNameError(
                    f"{ref.view!r} is a feature set, not a view: request it whole ('{ref.view}'), or ask for "
                    f"the view its feature {ref.feature!r} comes from"
                )
            if version not in sets:
                sets.append(version)
                # Its requests take its place, in order; a set never holds another (checked at apply).
                pending[0:0] = [parse_ref(r) for r in version.definition["requests"]]
            continue
        if pinned:
            pinned_ids.add(version.id)
        wanted = version.features if ref.feature is None else [ref.feature]
        for feature in wanted:
            resolver.need(version, feature, pinned)
            if (version, feature) not in outputs:
                outputs.append((version, feature))
    batch = [r for r in resolver.views.values() if not r.on_demand]
    on_demand = [resolver.views[i] for i in resolver.on_demand_order]
    return ResolvedFeatures(batch, on_demand, outputs, pinned_ids, sets)


def is_feature_set(version: ViewVersion) -> bool:
    return bool(version.definition.get("kind") == "feature_set")
