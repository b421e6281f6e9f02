"""What the registry records of a definition, and the check that loaded code is an applied version.

Apply planning (:mod:`featurekit.plan`), the code finder (:mod:`featurekit.codebase`) and online
serving all need these; keeping them here means serving depends on neither the apply planner
(schema inference, a git subprocess) nor an engine.
"""

from __future__ import annotations

from typing import Any

from featurekit.definitions import FeatureSet, FeatureView, OnDemandView, WindowView
from featurekit.errors import NotAppliedError
from featurekit.references import parse_ref
from featurekit.registry import ViewVersion
from featurekit.transform import declared_types
from featurekit.versioning import view_code_hash


def static_definition(view: FeatureView | OnDemandView) -> dict[str, Any]:
    """The data-relevant decorator arguments, knowable without reading any data."""
    if isinstance(view, OnDemandView):
        inputs = [parse_ref(i) for i in view.inputs]
        return {
            "kind": "on_demand",
            "inputs": [{"view": r.view, "feature": r.feature} for r in inputs],
            "request": {name: str(dtype) for name, dtype in view.request.items()},
            "frame": view.frame,
        }
    ttl = view.ttl
    declared = {"declared_schema": {n: str(t) for n, t in declared_types(view).items()}} if view.schema else {}
    if isinstance(view, WindowView):
        from featurekit.windows import spec_of

        declared["window"] = spec_of(view).describe()
    return {
        "kind": "window" if isinstance(view, WindowView) else "batch",
        "entities": [{"name": e.name, "join_keys": list(e.join_keys)} for e in view.entities],
        "join_keys": list(view.join_keys),
        "ttl_us": None if ttl is None else (ttl.days * 86_400 + ttl.seconds) * 1_000_000 + ttl.microseconds,
        "source": view.source.describe(),
        "frame": view.frame,
        **declared,  # only when declared: views without one keep their fingerprints
    }


def check_applied(view: FeatureView | OnDemandView, applied: ViewVersion) -> None:
    """Refuse to run (or serve) code the registry has not applied: no silent skew."""
    static = static_definition(view)
    stored = {k: applied.definition.get(k) for k in static}
    if view_code_hash(view) != applied.code_hash or static != stored:
        raise NotAppliedError(
            f"feature view '{view.name}' in {view.location} differs from its applied version "
            f"v{applied.version} (code {applied.code_hash}); run `featurekit apply` to register it"
        )


def feature_set_definition(feature_set: FeatureSet) -> dict[str, Any]:
    """What the registry records of a feature set: its requests, as canonical strings."""
    from featurekit.references import canonical

    requests = canonical(list(feature_set.features))
    return {"kind": "feature_set", "requests": requests, "features": requests}


def metadata(view: FeatureView | OnDemandView | FeatureSet) -> dict[str, Any]:
    """What may change without a new data version (a view's checks too, recorded only when it has some)."""
    recorded: dict[str, Any] = {"description": view.description, "tags": view.tags, "owner": view.owner}
    if isinstance(view, FeatureView) and view.checks:
        recorded["checks"] = [c.describe() for c in view.checks]
        recorded["on_check_failure"] = view.on_check_failure
    return recorded
