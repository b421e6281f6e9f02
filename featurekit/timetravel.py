"""Reading the registry as of a moment: registry versions, reproduction checks, history and diffs.

Nothing in the registry is ever updated or deleted, so "as of" is a registry version (a commit
id): the applied definitions are those of the newest apply at or before it, and each view
version's data is its newest materialization at or before it. A datetime means the newest
commit made at or before that instant.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from featurekit.errors import ManifestError, SchemaError, UnknownNameError, WindowError
from featurekit.manifest import Manifest
from featurekit.registry import Registry, ViewVersion
from featurekit.timestamps import utc

AsOf = datetime | str | int


def registry_version(registry: Registry, as_of: AsOf | None) -> int:
    """The registry version ``as_of`` denotes (default: the head), or a clear error."""
    head = registry.head_commit()
    if as_of is None:
        if head == 0:
            raise UnknownNameError("the registry is empty; run `featurekit apply` first")
        return head
    if isinstance(as_of, bool) or not isinstance(as_of, (int, datetime, str)):
        raise SchemaError(f"as_of must be a datetime or a registry version number, got {as_of!r}")
    if isinstance(as_of, int):
        if not 1 <= as_of <= head:
            raise UnknownNameError(f"registry version {as_of} does not exist; the registry has versions 1 to {head}")
        return as_of
    moment = utc(as_of, "as_of")
    now = datetime.now(UTC)
    if moment > now:
        raise WindowError(
            f"as_of {moment.isoformat()} is in the future (now is {now.isoformat()}); "
            "a later commit could still change what it reads"
        )
    version = registry.commit_at(moment)
    if version == 0:
        first = registry.commits()[:1]
        since = f"; the first commit was at {first[0].committed_at.isoformat()}" if first else ""
        raise UnknownNameError(f"nothing was committed at or before as_of {moment.isoformat()}{since}")
    return version


def check_reproduction(expected: Manifest, built: Manifest) -> None:
    """Fail loudly unless a rebuild read exactly what the manifest records, on the same spine."""
    if built.spine_digest != expected.spine_digest:
        details = []
        if built.spine_rows != expected.spine_rows:
            details.append(f"{built.spine_rows} rows instead of {expected.spine_rows}")
        if built.spine_columns != expected.spine_columns:
            details.append(f"columns {built.spine_columns} instead of {expected.spine_columns}")
        raise ManifestError(
            "the spine differs from the one the manifest's training set was built on ("
            + ("; ".join(details) or "same shape, different values")
            + "); pass the original spine to reproduce it"
        )
    if built.views != expected.views:
        got = {(v.view, v.version, v.data_version) for v in built.views}
        want = {(v.view, v.version, v.data_version) for v in expected.views}
        raise ManifestError(
            f"rebuilding at registry version {expected.registry_version} read {sorted(got - want)} where the manifest "
            f"recorded {sorted(want - got)}; the registry or the store was changed outside featurekit"
        )


@dataclass(frozen=True)
class HistoryEntry:
    """One event of a view's history: an apply that changed it, a materialization or a push."""

    registry_version: int
    at: datetime
    kind: str  # "apply", "materialize", "incremental", "push"
    view: str
    version: int
    code_hash: str
    change: str | None = None  # applies: "new", "changed", "reverted", "removed"
    window_start: datetime | None = None
    window_end: datetime | None = None
    rows: int | None = None
    data_version: int | None = None
    git_commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}

    def __str__(self) -> str:
        head = f"r{self.registry_version:<4} {self.at.isoformat(timespec='seconds')}  {self.kind:<11} "
        head += f"{self.view} v{self.version} (code {self.code_hash})"
        if self.kind == "apply":
            return head + f" {self.change}" + (f", git {self.git_commit}" if self.git_commit else "")
        assert self.window_start is not None
        assert self.window_end is not None
        return head + (
            f" [{self.window_start.isoformat()}, {self.window_end.isoformat()}) {self.rows} rows"
            f" -> data version {self.data_version}"
        )


def history(registry: Registry, view: str | None = None) -> list[HistoryEntry]:
    """Applies and materializations, oldest first (of one view, or all)."""
    versions = {v.id: v for v in registry.versions()}
    if view is not None and not any(v.view.lower() == view.lower() for v in versions.values()):
        raise UnknownNameError(f"no feature view {view!r} in the registry")
    commits = {c.id: c for c in registry.commits()}
    entries: list[HistoryEntry] = []
    previous: dict[str, int] = {}
    for commit_id, active in registry.applied_sets():
        commit = commits[commit_id]
        for name in sorted(set(previous) | set(active)):
            old, new = previous.get(name), active.get(name)
            if old == new:
                continue
            shown = versions[new if new is not None else old]  # type: ignore[index]
            if new is None:
                change = "removed"
            elif old is None:
                change = "new" if shown.commit_id == commit_id else "re-added"
            else:
                change = "changed" if shown.commit_id == commit_id else "reverted"
            entries.append(
                HistoryEntry(
                    commit_id,
                    commit.committed_at,
                    "apply",
                    name,
                    shown.version,
                    shown.code_hash,
                    change,
                    git_commit=commit.git_commit,
                )
            )
        previous = active
    for m in registry.materializations():
        version = versions[m.version_id]
        kind = {"window": "materialize", "incremental": "incremental", "push": "push"}[m.mode]
        entries.append(
            HistoryEntry(
                m.commit_id,
                m.committed_at,
                kind,
                version.view,
                version.version,
                version.code_hash,
                window_start=m.window_start,
                window_end=m.window_end,
                rows=m.rows,
                data_version=m.data_version,
            )
        )
    entries.sort(key=lambda e: (e.registry_version, e.view))
    return [e for e in entries if view is None or e.view.lower() == view.lower()]


def diff(registry: Registry, view: str, old: int, new: int) -> str:
    """A readable diff of two versions of a view: definition changes, then a unified code diff."""
    a, b = registry.version(view, old), registry.version(view, new)
    lines = [f"--- {a.view} v{a.version} (code {a.code_hash}, registry version {a.commit_id})"]
    lines.append(f"+++ {b.view} v{b.version} (code {b.code_hash}, registry version {b.commit_id})")
    lines += _definition_changes(a, b)
    code = difflib.unified_diff(
        a.source_text.splitlines(), b.source_text.splitlines(), f"v{a.version}", f"v{b.version}", lineterm=""
    )
    lines += list(code)[2:] or ["(same code)"]
    return "\n".join(lines)


def _definition_changes(a: ViewVersion, b: ViewVersion) -> list[str]:
    changes = []
    for key in sorted(set(a.definition) | set(b.definition)):
        if key == "input_fingerprints":
            continue
        before, after = a.definition.get(key), b.definition.get(key)
        if before != after:
            changes.append(f"# {key}: {before} -> {after}")
    return changes
