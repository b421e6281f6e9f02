"""The offline engines every contract test runs on (add an implementation here and it is tested).

``PLANS`` maps each join plan of the DuckDB engine to the entity statistic that selects it, so
the property tests hold both plans to the same oracle.
"""

from __future__ import annotations

from pathlib import Path

from featurekit.offline.duckdb_engine import DuckDBEngine
from featurekit.offline.engine import OfflineEngine

ENGINES = ["duckdb", "spark"]
# (entities, unique_times) that select each plan: no statistic, the in-memory ASOF plan (the SQL
# ASOF plan on an engine made with asof_in_memory=False: see make_engine); a huge entity count
# (few spine rows per entity), the range plan; no ties recorded, ASOF carrying the row itself.
PLANS: dict[str, tuple[int | None, bool]] = {
    "asof": (None, False),
    "asof_numpy": (None, False),
    "range": (10**12, False),
    "asof_rows": (None, True),
}


_SPARK: list[object] = []  # one Spark session per test session (start-up takes 10-20 s)


def spark_session() -> object:
    if not _SPARK:
        from featurekit.offline.spark_engine import build_session

        _SPARK.append(build_session("local[2]", {"spark.sql.shuffle.partitions": "4"}))
        # pyspark imports IPython (when installed) on its first DataFrame call, which raises the
        # recursion limit; inside a hypothesis test that is an error, so let it happen now.
        import contextlib

        with contextlib.suppress(ImportError):
            import IPython  # noqa: F401
    return _SPARK[0]


def make_engine(name: str, root: Path, plan: str | None = None) -> OfflineEngine:
    """An engine; for DuckDB and ``plan="asof"``, one whose joins stay in SQL (no ``asof_numpy``)."""
    if name == "duckdb":
        return DuckDBEngine(root, asof_in_memory=plan != "asof")
    if name == "spark":
        from featurekit.offline.spark_engine import SparkEngine

        return SparkEngine(spark_session())  # type: ignore[arg-type]
    raise AssertionError(f"unknown engine {name}")
