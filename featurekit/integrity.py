"""``featurekit verify``: check a store's integrity and name every problem, hiding nothing that is fine.

Checks, each independent of the others so that one broken part does not mask the rest:

* the registry opens and passes SQLite's ``quick_check``;
* every data version the registry records (and gc has not removed) opens at its Delta version,
  and every Parquet file it references exists with the size the Delta log recorded and a
  readable footer;
* the online store holds a table for every applied, materialized batch view version, with the
  registered features, and no table of a version the registry does not know.

When the registry itself is unreadable, the offline tables found on disk are still checked on
their own (their newest Delta version), so the data that is fine is reported as fine.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from featurekit.config import load_config
from featurekit.errors import FeaturekitError
from featurekit.offline.tables import DataFile, OfflineTables
from featurekit.online.base import OnlineStore
from featurekit.online.factory import open_online_store
from featurekit.online.loading import table_name
from featurekit.online.window_state import COLUMNS as WINDOW_COLUMNS
from featurekit.online.window_state import TAIL_COLUMNS, tail_table
from featurekit.registry import Registry, ViewVersion


@dataclass
class IntegrityReport:
    """What ``verify`` checked, and every problem it found."""

    problems: list[str] = field(default_factory=list)
    fine: list[str] = field(default_factory=list)  # what was checked and is readable
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = (
            f"store integrity: {len(self.fine)} data versions and {self.files} files readable, "
            f"{len(self.problems)} problems"
        )
        lines = [head]
        lines += [f"  PROBLEM {p}" for p in self.problems]
        lines += [f"  ok {f}" for f in self.fine]
        return "\n".join(lines)


class _FileChecker:
    """Checks each data file once (data versions share most files)."""

    def __init__(self, report: IntegrityReport) -> None:
        self.report = report
        self.seen: dict[str, str | None] = {}

    def check(self, tables: OfflineTables, table: Path, data_version: int) -> list[str]:
        try:
            files = tables.version_files(table, data_version)
        except FeaturekitError as exc:
            return [f"{table}: Delta version {data_version} cannot be opened ({str(exc).splitlines()[0]})"]
        return self.check_files(files)

    def check_files(self, files: list[DataFile]) -> list[str]:
        problems = []
        for file in files:
            key = str(file.path)
            if key not in self.seen:
                self.seen[key] = _file_problem(file.path, file.size)
                self.report.files += 1
            if self.seen[key] is not None:
                problems.append(f"{file.path}: {self.seen[key]}")
        return problems


def _file_problem(path: Path, size: int) -> str | None:
    if not path.is_file():
        return "missing"
    actual = path.stat().st_size
    if actual != size:
        return f"{actual} bytes, the Delta log recorded {size} (truncated or overwritten)"
    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowException) as exc:
        return f"unreadable Parquet footer ({str(exc).splitlines()[0]})"
    return None


def verify_store(repo: str | Path) -> IntegrityReport:
    """Check the store of the repo at ``repo`` (works even when its registry is unreadable)."""
    root = Path(repo)
    config = load_config(root)
    store_root = root / config.store_dir
    online: OnlineStore | None = None
    report = IntegrityReport()
    try:
        online = open_online_store(config.online, store_root) if config.online.type != "memory" else None
    except (FeaturekitError, sqlite3.Error) as exc:
        report.problems.append(f"online store: cannot be opened ({exc})")
    try:
        return check_store(store_root, online, report)
    finally:
        if online is not None:
            online.close()


def check_store(store_root: Path, online: OnlineStore | None, report: IntegrityReport | None = None) -> IntegrityReport:
    """Check the registry, the offline tables it references and the online tables."""
    report = report if report is not None else IntegrityReport()
    path = store_root / "registry.db"
    try:
        registry = Registry(path)
        problems = registry.quick_check()
        if problems:
            report.problems.append(f"{path}: SQLite quick_check found {'; '.join(problems[:5])}")
    except (FeaturekitError, sqlite3.Error) as exc:
        report.problems.append(f"{path}: {exc}")
        _check_tables_on_disk(OfflineTables(store_root), report)
        return report
    try:
        _check_offline(registry, OfflineTables(store_root), report)
        if online is not None:
            _check_online(registry, online, report)
    finally:
        registry.close()
    return report


def _check_offline(registry: Registry, tables: OfflineTables, report: IntegrityReport) -> None:
    checker = _FileChecker(report)
    removed = registry.removals()
    versions = {v.id: v for v in registry.versions()}
    for m in registry.materializations():
        if (m.version_id, m.data_version) in removed:
            continue
        version = versions[m.version_id]
        table = tables.path(version.view, version.version)
        name = f"{version.view} v{version.version} data version {m.data_version} (registry version {m.commit_id})"
        problems = checker.check(tables, table, m.data_version)
        if problems:
            report.problems += [f"{name}: {p}" for p in problems]
        else:
            report.fine.append(name)


def _check_online(registry: Registry, online: OnlineStore, report: IntegrityReport) -> None:
    try:
        present = online.tables()
    except (FeaturekitError, sqlite3.Error) as exc:
        report.problems.append(f"online store: cannot list its tables ({exc})")
        return
    known = {table_name(v.view, v.version): v for v in registry.versions()}
    tails = {tail_table(name): v for name, v in known.items() if v.is_window}
    for name in sorted(set(present) - set(known) - set(tails)):
        report.problems.append(f"online table {name} belongs to no registered view version")
    for name in sorted(set(present) & set(tails)):
        if present[name] != TAIL_COLUMNS:
            report.problems.append(f"online table {name} has columns {present[name]}, window tails have {TAIL_COLUMNS}")
    for active in registry.active().values():
        version = active.version
        if version.definition.get("kind") == "on_demand" or registry.last_materialization(version.id) is None:
            continue
        name = table_name(version.view, version.version)
        if name not in present:
            report.problems.append(
                f"online table {name} is missing for applied {version.view} v{version.version}; "
                "run `featurekit materialize` to load it"
            )
        elif present[name] != (expected := online_columns(version)):
            report.problems.append(f"online table {name} has features {present[name]}, the registry says {expected}")


def online_columns(version: ViewVersion) -> list[str]:
    """The columns of a view version's online table: its features, or a window view's stored events."""
    return list(WINDOW_COLUMNS) if version.is_window else version.features


def _check_tables_on_disk(tables: OfflineTables, report: IntegrityReport) -> None:
    """Without a registry: check each offline table at its newest Delta version."""
    checker = _FileChecker(report)
    for table, newest, files in tables.on_disk():
        if isinstance(files, str):
            report.problems.append(f"{table}: {files}")
            continue
        problems = checker.check_files(files)
        name = f"{table.parent.name} {table.name} Delta version {newest} (not checked against the registry)"
        if problems:
            report.problems += [f"{name}: {p}" for p in problems]
        else:
            report.fine.append(name)
