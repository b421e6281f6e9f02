"""Plan an apply: compare the repo's loaded definitions with the registry's active versions.

For each view the plan infers the output schema (the function run on zero source rows, through
:mod:`featurekit.transform`), computes the code hash and fingerprint, and classifies the change:
new view, new version, back to an earlier version, metadata only, unchanged, or removed.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pyarrow as pa

from featurekit.applied import feature_set_definition, metadata, static_definition
from featurekit.definitions import FeatureSet, FeatureView, OnDemandView, WindowView
from featurekit.errors import (
    DefinitionError,
    FeatureFunctionError,
    FeaturekitError,
    InvalidNameError,
    SchemaError,
    did_you_mean,
)
from featurekit.frames import arrow_to_polars
from featurekit.names import case_clashes, name_problem
from featurekit.offline.engine import OfflineEngine
from featurekit.offline.sources import SourceReader
from featurekit.online.codecs import check_servable
from featurekit.quality.checks import column_problems as check_column_problems
from featurekit.references import parse_ref
from featurekit.registry import ActiveView, NewVersion, Registry
from featurekit.repo import RepoDefinitions
from featurekit.transform import run_on_demand, run_view, storage_type
from featurekit.versioning import fingerprint, view_code_hash, view_source
from featurekit.windows import registered_type

ChangeKind = Literal["new", "changed", "reverted", "metadata", "unchanged", "removed"]

_SYMBOLS = {"new": "+", "changed": "~", "reverted": "~", "metadata": "~", "unchanged": "=", "removed": "-"}


@dataclass(frozen=True)
class ViewChange:
    """How one view differs between the repo and the registry."""

    view: str
    kind: ChangeKind
    old_version: int | None
    new_version: int | None
    detail: str

    def __str__(self) -> str:
        old = f"v{self.old_version}" if self.old_version is not None else ""
        new = f"v{self.new_version}" if self.new_version is not None else ""
        versions = f"{old} -> {new}" if old and new and old != new else (new or old)
        return f"{_SYMBOLS[self.kind]} {self.view} {versions}: {self.detail}".rstrip()


@dataclass
class Plan:
    """What an apply changes (or changed); ``str(plan)`` is the human-readable diff."""

    changes: list[ViewChange]
    registry_version: int | None = None
    new_versions: list[NewVersion] = field(default_factory=list, repr=False)
    active: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict, repr=False)
    expected_apply: int = field(default=0, repr=False)  # the newest apply commit it was planned against

    @property
    def has_changes(self) -> bool:
        return any(c.kind != "unchanged" for c in self.changes)

    def __str__(self) -> str:
        if not self.changes:
            return "no feature views defined"
        lines = [str(c) for c in self.changes]
        if not self.has_changes:
            lines.append("nothing to apply")
        elif self.registry_version is not None:
            lines.append(f"applied as registry version {self.registry_version}")
        return "\n".join(lines)


def git_commit(root: Path) -> str | None:
    """The repo's git commit (with ``-dirty`` when it has uncommitted changes), if it is a checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _describe_version(view: FeatureView, engine: OfflineEngine, root: Path) -> NewVersion:
    reader = SourceReader(engine, root, view.source)
    source_schema = reader.schema()
    output = run_view(view, source_schema.empty_table())
    features = [c for c in output.column_names if c not in (*view.join_keys, *view.source.timestamp_columns)]
    problems = [
        f"{view.location}: feature {p}"
        for f in features
        if (p := name_problem(f, f"of view {view.name!r}")) is not None
    ]
    for group in case_clashes([*output.column_names]):
        problems.append(f"{view.location}: view {view.name!r} output columns clash case-insensitively: {group}")
    if problems:
        raise InvalidNameError(problems)
    schema = output.schema
    checked = check_column_problems(view, schema)
    if checked:
        raise DefinitionError(checked)
    definition = static_definition(view)
    if isinstance(view, WindowView):
        from featurekit.windows import column_problems, spec_of

        bad = column_problems(view, schema)
        if bad:
            raise SchemaError(bad[0] if len(bad) == 1 else "; ".join(bad))
        features = [f.name for f in spec_of(view).features]
    else:
        unservable = check_servable(schema, features)
        if unservable:  # refused now, not corrupted at the first online load
            raise SchemaError(f"feature view '{view.name}' ({view.location}): {'; '.join(unservable)}")
    definition["features"] = features
    definition["schema"] = {f.name: str(storage_type(f.type)) for f in schema}
    code = view_code_hash(view)
    return NewVersion(
        view=view.name,
        fingerprint=fingerprint(code, definition, []),
        code_hash=code,
        definition=definition,
        schema=schema,
        source_schema=source_schema,
        source_text=view_source(view),
        location=str(view.location),
    )


def on_demand_order(on_demand: dict[str, OnDemandView]) -> list[str]:
    """On-demand views, each after the on-demand views it reads; a cycle is a definition error."""
    lowered = {n.lower(): n for n in on_demand}
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = " -> ".join([*path, name])
            raise DefinitionError([f"{on_demand[name].location}: on-demand views read each other in a cycle: {cycle}"])
        state[name] = "visiting"
        for item in on_demand[name].inputs:
            dependency = lowered.get(parse_ref(item).view.lower())
            if dependency is not None:
                visit(dependency, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in sorted(on_demand):
        visit(name, [])
    return order


def _describe_on_demand(view: OnDemandView, known: dict[str, NewVersion]) -> NewVersion:
    by_lower = {n.lower(): v for n, v in known.items()}
    schema: dict[str, Any] = {}
    problems: list[str] = []
    deps: list[str] = []
    where = f"{view.location}: on-demand view {view.name!r}"
    for item in view.inputs:
        ref = parse_ref(item)
        source = by_lower.get(ref.view.lower())
        if source is None:
            problems.append(
                f"{where} reads {str(ref)!r}, but the repo defines no view {ref.view!r}{did_you_mean(ref.view, known)}"
            )
            continue
        feature = str(ref.feature)
        if feature not in source.definition["features"]:
            problems.append(
                f"{where} reads {str(ref)!r}, but {source.view!r} has no feature {feature!r}"
                f"{did_you_mean(feature, source.definition['features'])}"
            )
            continue
        if feature in schema:
            problems.append(f"{where} has two inputs named {feature!r}")
        schema[feature] = arrow_to_polars(registered_type(source.definition, source.schema, feature))
        deps.append(source.fingerprint)
    for name, dtype in view.request.items():
        if name in schema:
            problems.append(f"{where}: request input {name!r} has the name of a feature input")
        schema[name] = dtype
    if problems:
        raise DefinitionError(problems)
    output = run_on_demand(view, pl.DataFrame(schema=schema), schema).to_arrow()
    features = output.column_names
    bad = [f"{view.location}: feature {p}" for f in features if (p := name_problem(f, f"of view {view.name!r}"))]
    if bad:
        raise InvalidNameError(bad)
    definition = static_definition(view)
    definition["features"] = features
    definition["schema"] = {f.name: str(storage_type(f.type)) for f in output.schema}
    definition["input_fingerprints"] = deps
    code = view_code_hash(view)
    return NewVersion(
        view=view.name,
        fingerprint=fingerprint(code, definition, deps),
        code_hash=code,
        definition=definition,
        schema=output.schema,
        source_schema=None,
        source_text=view_source(view),
        location=str(view.location),
    )


def _describe_feature_set(feature_set: FeatureSet, known: dict[str, NewVersion], registry: Registry) -> NewVersion:
    """A feature set's version: its requests, each checked against the views being applied."""
    by_lower = {n.lower(): v for n, v in known.items()}
    where = f"{feature_set.location}: feature set {feature_set.name!r}"
    problems = []
    definition = feature_set_definition(feature_set)
    for text in definition["requests"]:
        ref = parse_ref(text)
        view = by_lower.get(ref.view.lower())
        if view is None:
            problems.append(
                f"{where} lists {text!r}, but the repo defines no view {ref.view!r}{did_you_mean(ref.view, known)}"
            )
            continue
        if ref.version is not None:
            try:
                features = registry.version(view.view, ref.version).features
            except FeaturekitError as exc:
                problems.append(f"{where} lists {text!r}: {exc}")
                continue
        else:
            features = view.definition["features"]
        if ref.feature is not None and ref.feature not in features:
            problems.append(
                f"{where} lists {text!r}, but {view.view!r} has no feature {ref.feature!r}"
                f"{did_you_mean(ref.feature, features)}"
            )
    if problems:
        raise DefinitionError(problems)
    code = fingerprint("feature_set", definition, [])
    listed = ", ".join(repr(r) for r in definition["requests"])
    return NewVersion(
        view=feature_set.name,
        fingerprint=fingerprint(code, definition, []),
        code_hash=code,
        definition=definition,
        schema=pa.schema([]),
        source_schema=None,
        source_text=f"fk.FeatureSet({feature_set.name!r}, features=[{listed}])",
        location=str(feature_set.location),
    )


class _Problems:
    """Collects every view's problem; one problem keeps its own error class, several become one list."""

    def __init__(self) -> None:
        self.errors: list[tuple[FeaturekitError, str]] = []

    def add(self, error: FeaturekitError, where: str) -> None:
        self.errors.append((error, where))

    def raise_any(self) -> None:
        if not self.errors:
            return
        texts: list[str] = []
        for error, where in self.errors:
            if isinstance(error, DefinitionError):
                texts.extend(error.problems)
            elif isinstance(error, FeatureFunctionError):  # it names the view and its line already
                texts.append(str(error))
            else:
                texts.append(f"{where}: {error}")
        if len(self.errors) == 1:
            error = self.errors[0][0]
            if isinstance(error, DefinitionError):
                raise error
            raise type(error)(texts[0]) from error  # e.g. a SourceError stays a SourceError
        raise DefinitionError(texts)


def make_plan(definitions: RepoDefinitions, registry: Registry, engine: OfflineEngine) -> Plan:
    """Compare the repo's views and feature sets with the registry's head; collect every problem at once."""
    views, on_demand, feature_sets = definitions.views, definitions.on_demand, definitions.feature_sets
    root = definitions.root
    expected_apply = registry.head_apply()  # read first: an apply landing before `active` only causes a retry
    head: dict[str, ActiveView] = registry.active(expected_apply)
    described: dict[str, NewVersion] = {}
    problems = _Problems()
    for name, view in sorted(views.items()):
        try:
            described[name] = _describe_version(view, engine, root)
        except FeaturekitError as exc:
            problems.add(exc, f"{view.location}: feature view {name!r}")
    problems.raise_any()
    for name in on_demand_order(on_demand):
        try:
            described[name] = _describe_on_demand(on_demand[name], described)
        except FeaturekitError as exc:
            problems.add(exc, f"{on_demand[name].location}: on-demand view {name!r}")
    problems.raise_any()
    for name, feature_set in sorted(feature_sets.items()):
        try:
            described[name] = _describe_feature_set(feature_set, described, registry)
        except FeaturekitError as exc:
            problems.add(exc, f"{feature_set.location}: feature set {name!r}")
    problems.raise_any()
    every: dict[str, FeatureView | OnDemandView | FeatureSet] = {**views, **on_demand, **feature_sets}
    changes: list[ViewChange] = []
    plan = Plan(changes=changes, expected_apply=expected_apply)
    head_by_lower = {n.lower(): a for n, a in head.items()}
    for name, new in described.items():
        defined = every[name]
        plan.active[name] = (new.fingerprint, metadata(defined))
        current = head_by_lower.get(name.lower())
        known = {v.fingerprint: v.version for v in registry.versions(name)}
        next_version = max(known.values(), default=0) + 1
        if current is None:
            if new.fingerprint in known:
                kind: ChangeKind = "reverted"
                detail = f"back to registered v{known[new.fingerprint]}"
            else:
                what = "feature set" if new.definition["kind"] == "feature_set" else "view, features"
                kind, detail = "new", f"new {what} " + ", ".join(new.definition["features"])
            changes.append(ViewChange(name, kind, None, known.get(new.fingerprint, next_version), detail))
            if new.fingerprint not in known:
                plan.new_versions.append(new)
            continue
        old = current.version
        if new.fingerprint == old.fingerprint:
            if metadata(defined) != current.metadata:
                now = metadata(defined)
                edited = sorted(k for k in {*now, *current.metadata} if current.metadata.get(k) != now.get(k))
                changes.append(ViewChange(name, "metadata", old.version, old.version, "metadata: " + ", ".join(edited)))
            else:
                changes.append(ViewChange(name, "unchanged", old.version, old.version, "unchanged"))
        elif new.fingerprint in known:
            changes.append(
                ViewChange(name, "reverted", old.version, known[new.fingerprint], f"back to v{known[new.fingerprint]}")
            )
        else:
            changes.append(ViewChange(name, "changed", old.version, next_version, _what_changed(old.definition, new)))
            plan.new_versions.append(new)
    for name, current in head.items():
        if name.lower() not in {n.lower() for n in described}:
            changes.append(
                ViewChange(name, "removed", current.version.version, None, "removed from the repo (history kept)")
            )
    return plan


def _what_changed(old: dict[str, Any], new: NewVersion) -> str:
    parts = []
    if old.get("features") != new.definition["features"]:
        parts.append(f"features {old.get('features')} -> {new.definition['features']}")
    for key in ("join_keys", "ttl_us", "source", "frame", "declared_schema"):
        if old.get(key) != new.definition.get(key):
            parts.append(f"{key} changed")
    if old.get("schema") != new.definition.get("schema") and not parts:
        parts.append("output dtypes changed")
    return "new version: " + (", ".join(parts) if parts else "code changed")
