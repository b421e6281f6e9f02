"""Helpers shared by the reliability suites: subprocess environments and readers of stored state.

The readers look at what a store holds through the documented storage layout (README, "Storage
layout"), not through featurekit's internals: the registry's materializations, each recorded Delta
version of ``offline/<view>/v<N>/``, and the rows of the online SQLite tables.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

from featurekit import faults

PROJECT = Path(__file__).resolve().parents[2]
STORE_DIR = ".featurekit"


def subprocess_env(crash_at: str | None = None) -> dict[str, str]:
    """The environment of a child process: the featurekit under test first on the path, one thread each.

    ``crash_at`` arms :mod:`featurekit.faults` in the child (never in the test process itself).
    """
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT), *filter(None, [env.get("PYTHONPATH")])])
    env["POLARS_MAX_THREADS"] = "1"  # the machine is shared: keep every child on one core
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if crash_at is not None:
        env[faults.ENV] = crash_at
    return env


def repo_listing(root: Path, store_dir: str = STORE_DIR) -> list[str]:
    """Every file of a repo outside its store folder (a command must not write there)."""
    store = root / store_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and store not in p.parents)


def sorted_table(table: pa.Table) -> pa.Table:
    """Rows in a canonical order (every column ascending), so equal contents compare ``.equals``."""
    if table.num_rows == 0:
        return table
    return table.sort_by([(c, "ascending") for c in table.column_names]).combine_chunks()


def offline_rows(store_root: Path, view: str, version: int, data_version: int) -> pa.Table:
    """The rows of one recorded data version of a view version's Delta table, in canonical order."""
    path = store_root / "offline" / view.lower() / f"v{version}"
    return sorted_table(DeltaTable(str(path), version=data_version).to_pyarrow_table())


def duplicate_rows(table: pa.Table, keys: list[str], timestamp: str) -> list[tuple[Any, ...]]:
    """(keys..., event time) groups that hold more than one row of ``table``."""
    columns = [table.column(c).to_pylist() for c in [*keys, timestamp]]
    counts = Counter(zip(*columns, strict=True))
    return sorted(group for group, n in counts.items() if n > 1)


def online_rows(store_root: Path) -> dict[str, dict[Any, tuple[Any, ...]]]:
    """Every online table of a store: key -> the whole stored row (event, created, features...)."""
    path = store_root / "online.db"
    if not path.exists():
        return {}
    con = sqlite3.connect(path, timeout=60)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        found: dict[str, dict[Any, tuple[Any, ...]]] = {}
        for table in tables:
            quoted = '"' + table.replace('"', '""') + '"'
            found[table] = {row[0]: tuple(row[1:]) for row in con.execute("SELECT * FROM " + quoted)}
        return found
    finally:
        con.close()
