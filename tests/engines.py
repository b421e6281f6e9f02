"""The offline engines every contract test runs on (add an implementation here and it is tested).

``PLANS`` maps each join plan of the DuckDB engine to the entity statistic that selects it, so
the property tests hold both plans to the same oracle.
"""

from __future__ import annotations

from pathlib import Path

from featurekit.offline.duckdb_engine import DuckDBEngine
from featurekit.offline.engine import OfflineEngine

ENGINES = ["duckdb"]
# (entities, unique_times) that select each plan: no statistic, the ASOF plan; a huge entity count
# (few spine rows per entity), the range plan; no ties recorded, ASOF carrying the row itself.
PLANS: dict[str, tuple[int | None, bool]] = {"asof": (None, False), "range": (10**12, False), "asof_rows": (None, True)}


def make_engine(name: str, root: Path) -> OfflineEngine:
    if name == "duckdb":
        return DuckDBEngine(root)
    raise AssertionError(f"unknown engine {name}")
