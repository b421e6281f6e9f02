"""The feature-quality parts of the pages: check status, the profile with histograms, and drift.

Each part appears only where this featurekit has the API it reads (``featurekit.check`` with the
check results the registry stores per commit, ``FeatureStore.profile`` and ``FeatureStore.drift``
of the feature-quality work); without it the part is left out of the page and of its JSON twin,
never shown as an empty placeholder. The data parts return JSON-ready dicts (or ``None``), the
``*_html`` functions render them.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import featurekit
from featurekit.errors import FeaturekitError
from featurekit.quality.check_results import CheckResult
from featurekit.quality.sides import ViewData
from featurekit.registry import Registry, ViewVersion
from featurekit.store import FeatureStore
from featurekit.ui.html import Html, esc, section, table
from featurekit.ui.svg import histogram_svg

CHECKS = "checks"  # the registry's quality-record kind of check results


def latest_checks(registry: Registry, at: int) -> dict[int, tuple[int, str]]:
    """Every view version's newest check results at ``at`` (one read; nothing without the checks API)."""
    return registry.latest_quality(CHECKS, at) if hasattr(featurekit, "check") else {}


def checks(latest: tuple[int, str] | None) -> dict[str, Any] | None:
    """A view version's newest check results (its newest ``checks`` record: commit id, payload) and
    whether all passed; None without the checks API."""
    if not hasattr(featurekit, "check"):
        return None
    if latest is None:
        return {"status": "none", "registry_version": None, "results": []}
    commit, payload = latest
    record = json.loads(payload)  # featurekit.quality.check_results.CommitChecks.to_json
    items = [CheckResult.from_dict(r) for r in record.get("results", [])]
    failed = [r for r in items if r.passed is False]
    return {
        "status": "failed" if failed else "passed",
        "registry_version": commit,
        "results": [{"status": r.status, **r.to_dict()} for r in items],
    }


def profile(store: FeatureStore, version: ViewVersion, at: int | None = None) -> dict[str, Any] | None:
    """The view version's profile as of registry version ``at`` (``FeatureStore.profile``), None
    without that API, for computed views, or before the version's first materialization."""
    if not hasattr(store, "profile") or version.definition.get("kind") in ("on_demand", "feature_set"):
        return None
    if not _materialized(store.registry, version, at):
        return None
    try:
        made: Any = store.profile(f"{version.view}@v{version.version}", as_of=at)
    except FeaturekitError as exc:  # the page still shows everything else, and says why
        return {"error": str(exc)}
    return dict(made.to_dict())


def drift(store: FeatureStore, view: str, old: int, new: int, at: int | None = None) -> dict[str, Any] | None:
    """Drift of a view's features from version ``old`` to ``new`` (``FeatureStore.drift``), each
    version's data as it was at registry version ``at`` (default: now); None without data."""
    if not hasattr(store, "drift"):
        return None
    a, b = store.registry.version(view, old), store.registry.version(view, new)
    computed = a.definition.get("kind") in ("on_demand", "feature_set")
    if computed or not (_materialized(store.registry, a, at) and _materialized(store.registry, b, at)):
        return None
    shared = [f"{view}:{f}" for f in a.features if f in b.features]
    # Read as of ``at`` even at the head: a commit landing while this runs must not leak into a
    # report that the page (and the Reader's cache) files under ``at``.
    moment = store.registry.head_commit() if at is None else at
    reference, current = ViewData(f"{view}@v{old}", as_of=moment), ViewData(f"{view}@v{new}", as_of=moment)
    try:
        report: Any = store.drift(shared, reference=reference, current=current)
    except FeaturekitError as exc:
        return {"error": str(exc)}
    return dict(report.to_dict())


def window_drift(
    store: FeatureStore,
    version: ViewVersion,
    reference: tuple[datetime, datetime],
    current: tuple[datetime, datetime],
    at: int,
) -> dict[str, Any] | None:
    """Drift of a view version's features from one window of its data to another (each
    [start, end) of event times; ``FeatureStore.drift`` reads their rows), None without data."""
    if not hasattr(store, "drift"):
        return None
    if version.definition.get("kind") in ("on_demand", "feature_set") or not _materialized(store.registry, version, at):
        return None
    named = f"{version.view}@v{version.version}"
    try:  # as of ``at`` even at the head, for the reason given in :func:`drift`
        report: Any = store.drift(
            reference=ViewData(named, reference[0], reference[1], as_of=at),
            current=ViewData(named, current[0], current[1], as_of=at),
        )
    except FeaturekitError as exc:
        return {"error": str(exc)}
    return dict(report.to_dict())


def _materialized(registry: Registry, version: ViewVersion, at: int | None = None) -> bool:
    return registry.last_materialization(version.id, at) is not None


def _generic(items: list[Any]) -> Html:
    """A list of JSON objects as a table (one column per key); anything else as JSON text."""
    rows = [i for i in items if isinstance(i, dict)]
    if not rows or len(rows) != len(items):
        return Html(f"<pre>{esc(json.dumps(items, indent=2, default=str))}</pre>")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return table(keys, [[_cell(r.get(k)) for k in keys] for r in rows])


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def checks_html(found: dict[str, Any] | None) -> Html:
    if found is None:
        return Html("")
    if found["status"] == "none":
        return section("Checks", Html("<p>No check results recorded.</p>"), "checks")
    head = Html(f'<p>Status: <strong class="status {esc(found["status"])}">{esc(found["status"])}</strong> '
                f"(registry version {esc(found['registry_version'])})</p>")  # fmt: skip
    return section("Checks", Html(head + _generic(found["results"])), "checks")


def _unavailable(title: str, anchor: str, found: dict[str, Any]) -> Html:
    return section(title, Html(f"<p>Not available: {esc(found['error'])}</p>"), anchor)


def profile_html(found: dict[str, Any] | None) -> Html:
    if found is None:
        return Html("")
    if "error" in found:
        return _unavailable("Profile", "profile", found)
    rows = []
    for column in found.get("columns") or []:
        counts = [int(c) for c in column.get("histogram") or []]
        rows.append(
            Html(
                f'<div class="profile-column"><h3>{esc(column.get("name"))}</h3>'
                f"<p>{esc(column.get('rows'))} rows, {esc(column.get('nulls'))} nulls, min {esc(column.get('min'))}, "
                f"max {esc(column.get('max'))}, mean {esc(column.get('mean'))}</p>"
                f"{histogram_svg(str(column.get('name')), counts)}</div>"
            )
        )
    return section("Profile", Html(f"<p>{esc(found.get('source'))}</p>" + "".join(rows)), "profile")


def drift_html(found: dict[str, Any] | None) -> Html:
    if found is None:
        return Html("")
    if "error" in found:
        return _unavailable("Drift", "drift", found)
    features = found.get("features") or []
    return section("Drift", _generic(features if isinstance(features, list) else [features]), "drift")
