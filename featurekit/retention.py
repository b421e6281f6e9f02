"""gc: remove offline data that no retained state of the registry can read.

The policy keeps, for every view version:

* the data current now, if the version is applied, pinned (``pins:`` in ``featurekit.yaml``, or
  an input of an applied on-demand view) or among the newest ``keep_versions`` versions of its
  view;
* everything time travel into the last ``keep_days`` can read: the data versions committed in
  that window and the one current at its start, for every version applied at any moment of the
  window or pinned.

Everything else is removed: the Parquet files no retained data version references (replaced
windows, versions nobody can read any more), tables of versions with nothing retained, the online
tables of versions that are neither applied, pinned nor among the newest, and tables set aside by
killed writers (``trash/``). The registry records what was removed before any file is deleted,
so a killed gc leaves files that the next gc removes, never a retained version without its files;
time travel into removed data fails with :class:`~featurekit.errors.RetentionError` saying when.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from featurekit.errors import ConflictError, SchemaError
from featurekit.faults import checkpoint
from featurekit.offline.tables import OfflineTables
from featurekit.online.base import OnlineStore
from featurekit.online.loading import table_name
from featurekit.online.window_state import tail_table
from featurekit.references import parse_ref
from featurekit.registry import Materialization, Registry, ViewVersion


@dataclass(frozen=True)
class Policy:
    """How much history gc keeps."""

    keep_days: float
    keep_versions: int

    def __post_init__(self) -> None:
        if self.keep_days < 0 or self.keep_versions < 1:
            raise SchemaError(
                f"gc needs keep_days >= 0 and keep_versions >= 1, got {self.keep_days} and {self.keep_versions}"
            )

    def __str__(self) -> str:
        return f"keep-days={self.keep_days:g} keep-versions={self.keep_versions}"


@dataclass
class GcReport:
    """What gc removed (or, with ``dry_run``, would remove)."""

    policy: Policy
    dry_run: bool
    removed: list[tuple[str, int, int]] = field(default_factory=list)  # (view, version, data version)
    files: int = 0
    bytes: int = 0
    online_tables: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # views busy with a writer

    def __str__(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        lines = [
            f"gc ({self.policy}) {verb} {len(self.removed)} data versions, {self.files} files "
            f"({self.bytes / 1e6:.1f} MB), {len(self.online_tables)} online tables"
        ]
        lines += [f"  {view} v{version} data version {data}" for view, version, data in self.removed]
        lines += [f"  skipped {view}: a writer holds it; run gc again later" for view in self.skipped]
        return "\n".join(lines)


def _retained(
    registry: Registry, policy: Policy, pinned: set[int], now: datetime
) -> tuple[dict[int, set[int]], set[int]]:
    """Retained data versions per view version id, and the version ids whose online table stays."""
    cutoff = now - timedelta(days=policy.keep_days)
    versions = registry.versions()
    by_view: dict[str, list[ViewVersion]] = {}
    for version in versions:
        by_view.setdefault(version.view.lower(), []).append(version)
    newest = {
        v.id for group in by_view.values() for v in sorted(group, key=lambda v: v.version)[-policy.keep_versions :]
    }
    cutoff_version = registry.commit_at(cutoff)
    in_window = {i for commit, active in registry.applied_sets() if commit > cutoff_version for i in active.values()}
    at_cutoff = registry.active(cutoff_version) if cutoff_version else {}
    in_window |= {a.version.id for a in at_cutoff.values()}
    current = {a.version.id for a in registry.active().values()}
    materializations: dict[int, list[Materialization]] = {}
    for m in registry.materializations():
        materializations.setdefault(m.version_id, []).append(m)
    retained: dict[int, set[int]] = {}
    for version in versions:
        history = materializations.get(version.id, [])
        keep: set[int] = set()
        if history and version.id in current | pinned | newest:
            keep.add(history[-1].data_version)
        if version.id in in_window | pinned:
            before = [m for m in history if m.committed_at < cutoff]
            keep |= {m.data_version for m in history if m.committed_at >= cutoff}
            if before:
                keep.add(before[-1].data_version)
        retained[version.id] = keep
    return retained, current | pinned | newest


def pinned_versions(registry: Registry, pins: Iterable[str]) -> set[int]:
    """Version ids gc must keep: the configured pins and inputs of applied on-demand views."""
    ids: set[int] = set()
    for pin in pins:
        ref = parse_ref(pin)
        if ref.version is None:
            raise SchemaError(f"pin {pin!r} in featurekit.yaml must name a version, like 'driver_stats@v1'")
        ids.add(registry.version(ref.view, ref.version).id)
    for active in registry.active().values():
        definition = active.version.definition
        for item, fp in zip(definition.get("inputs", []), definition.get("input_fingerprints", []), strict=True):
            ids.add(registry.version_by_fingerprint(item["view"], fp).id)
    return ids


def collect_garbage(
    registry: Registry,
    tables: OfflineTables,
    online: OnlineStore | None,
    *,
    policy: Policy,
    pins: Iterable[str],
    now: datetime,
    dry_run: bool = False,
) -> GcReport:
    """Apply ``policy``: record what goes, then delete it, one view at a time under its writer lock.

    What a view keeps is decided under its lock, from the registry as it is then: a
    materialization that committed while gc worked on other views is retained, never deleted.
    """
    report = GcReport(policy, dry_run)
    pinned = pinned_versions(registry, pins)
    for view in sorted({v.view.lower() for v in registry.versions()}):
        checkpoint("gc.view")
        try:
            with nullcontext() if dry_run else tables.lock(view):  # a dry run writes nothing, not even a lock
                versions = registry.versions()
                retained, keep_online = _retained(registry, policy, pinned, now)
                materialized: dict[int, list[int]] = {}
                for m in registry.materializations():
                    materialized.setdefault(m.version_id, []).append(m.data_version)
                own = [v for v in versions if v.view.lower() == view]
                _collect_view(
                    registry,
                    tables,
                    own,
                    retained=retained,
                    materialized=materialized,
                    already=registry.removals(),
                    report=report,
                )
        except ConflictError:
            report.skipped.append(view)
            continue
        if online is not None:
            for version in own:
                name = table_name(version.view, version.version)
                if version.id not in keep_online and not retained[version.id]:
                    names = [name, tail_table(name)] if version.is_window else [name]
                    report.online_tables.extend(names)
                    if not dry_run:
                        for each in names:  # a window state's base, then its tail
                            online.drop_table(each)
    if not dry_run and tables.trash.exists():
        report.files += sum(1 for p in tables.trash.rglob("*") if p.is_file())
        shutil.rmtree(tables.trash)
    return report


def _collect_view(
    registry: Registry,
    tables: OfflineTables,
    versions: list[ViewVersion],
    *,
    retained: dict[int, set[int]],
    materialized: dict[int, list[int]],
    already: set[tuple[int, int]],
    report: GcReport,
) -> None:
    removed = [
        (v.id, d)
        for v in versions
        for d in materialized.get(v.id, [])
        if d not in retained[v.id] and (v.id, d) not in already
    ]
    names = {v.id: v for v in versions}
    report.removed += [(names[i].view, names[i].version, d) for i, d in removed]
    doomed: list[Path] = []
    for version in versions:
        if not tables.path(version.view, version.version).exists():
            continue
        keep = {f.path for d in retained[version.id] for f in tables.data_files(version.view, version.version, d)}
        doomed += tables.stray_files(version.view, version.version, keep)
    report.files += len(doomed)
    report.bytes += sum(p.stat().st_size for p in doomed)
    if report.dry_run:
        return
    if removed:
        registry.record_removal(removed, str(report.policy))
    checkpoint("gc.recorded")
    for index, path in enumerate(doomed):
        path.unlink(missing_ok=True)
        if index == len(doomed) // 2:
            checkpoint("gc.mid_delete")
