"""The DuckDB connection every offline operation uses, set up the same way each time."""

from __future__ import annotations

from pathlib import Path

import duckdb

from featurekit.config import OfflineConfig


def connect(config: OfflineConfig, root: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection: UTC session time zone, relative paths from the repo root.

    The session zone is UTC so that a naive ``TIMESTAMP`` compares with an instant as a UTC time,
    the rule :mod:`featurekit.timestamps` states for every path. Extensions are never downloaded.
    """
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET file_search_path = ?", [str(root.resolve())])
    if config.threads is not None:
        con.execute(f"SET threads = {int(config.threads)}")
    if config.memory_limit is not None:
        con.execute("SET memory_limit = ?", [config.memory_limit])
    return con
