"""The offline engines every contract test runs on (add an implementation here and it is tested).

``PLANS`` maps each join plan of the DuckDB engine to the entity statistic that selects it, so
the property tests hold both plans to the same oracle.
"""

from __future__ import annotations

from pathlib import Path

from featurekit.offline.duckdb_engine import DuckDBEngine
from featurekit.offline.duckdb_strategies import ASOF_PLANS
from featurekit.offline.engine import OfflineEngine

ENGINES = ["duckdb", "spark"]
# (entities, unique_times) that select each plan: no statistic, an ASOF plan of rows that may tie
# (the one named, on an engine made with asof_plan=...: see make_engine); a huge entity count
# (few spine rows per entity), the range plan; no ties recorded, ASOF carrying the row itself.
PLANS: dict[str, tuple[int | None, bool]] = {
    "asof": (None, False),
    "asof_numpy": (None, False),
    "asof_sorted": (None, False),
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
    """An engine; for DuckDB and one of its ASOF plans of rows that may tie, one that takes that plan."""
    if name == "duckdb":
        return DuckDBEngine(root, asof_plan=plan if plan in ASOF_PLANS else None)
    if name == "spark":
        from featurekit.offline.spark_engine import SparkEngine

        return SparkEngine(spark_session())  # type: ignore[arg-type]
    raise AssertionError(f"unknown engine {name}")
