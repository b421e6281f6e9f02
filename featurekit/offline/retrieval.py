"""The point-in-time join, written once, in DuckDB.

For each spine row (keys k, time t) and each view with TTL d, the join returns the feature row of
the same keys with the greatest event timestamp e where ``t - d <= e <= t`` (no TTL: no lower
bound), ties on e broken by the greatest created timestamp (a null created timestamp loses), and
remaining exact ties broken deterministically by the feature values, so a rebuild is bit for bit
the same. No such row gives nulls. Keys compare column by column (never concatenated), and a key
with a null part matches nothing.

Strategy: with a TTL, a hash join on the keys with the TTL range as a join filter, reduced per
spine row with ``max(struct(e, created, values...))``: one pass, no sort. Without a TTL a range
join would pair each spine row with the entity's whole history, so the view is first reduced to
one row per (keys, e) and joined with DuckDB's ``ASOF JOIN``.

The spine comes back whole: every row in its original order, duplicates kept, all its columns,
then the requested features in the requested order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from featurekit.names import quote

ROW = "__fk_row"
TS = "__fk_ts"


@dataclass(frozen=True)
class ViewInput:
    """What the join needs to know about one view's committed data."""

    name: str
    files: list[str]
    schema: pa.Schema
    join_keys: list[str]
    timestamp_field: str
    created_field: str | None
    ttl: timedelta | None
    features: list[tuple[str, str]]  # (stored column, output column)


@dataclass(frozen=True)
class SpineInput:
    """The spine as DuckDB sees it: a relation with a row number and its timestamp column."""

    relation: str
    params: list[Any]
    timestamp_field: str
    columns: list[str]


def _ttl_micros(ttl: timedelta) -> int:
    return (ttl.days * 86_400 + ttl.seconds) * 1_000_000 + ttl.microseconds


class PointInTimeQuery:
    """Builds the SQL of one training-set join; registers Arrow inputs on the connection."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        spine: SpineInput,
        views: list[ViewInput],
        order: list[tuple[int, int]] | None = None,
    ) -> None:
        self.con = con
        self.spine = spine
        self.views = views
        # (view index, feature index) per output column; default: view by view
        self.order = order or [(v, f) for v, view in enumerate(views) for f in range(len(view.features))]
        self.params: list[Any] = []
        self._registered: list[str] = []
        self.sql = self._build()

    def _source(self, index: int, view: ViewInput) -> str:
        if view.files:
            self.params.append(view.files)
            return "read_parquet(?)"
        name = f"__fk_empty_{index}"
        self.con.register(name, view.schema.empty_table())
        self._registered.append(name)
        return name

    def _order_key(self, view: ViewInput, alias: str) -> list[str]:
        created = (
            [f"__c := coalesce({alias}.{quote(view.created_field)}, TIMESTAMPTZ '-infinity')"]
            if view.created_field
            else []
        )
        values = [f"{quote('v' + str(i))} := {alias}.{quote(col)}" for i, (col, _) in enumerate(view.features)]
        return created + values

    def _join_view(self, index: int, view: ViewInput) -> str:
        keys = " AND ".join(f"s.{quote(k)} = f.{quote(k)}" for k in view.join_keys)
        ts = quote(view.timestamp_field)
        if view.ttl is not None:
            source = self._source(index, view)
            self.params.append(_ttl_micros(view.ttl))
            packed = ", ".join([f"__t := f.{ts}", *self._order_key(view, "f")])
            return (
                f"SELECT s.{ROW}, max(struct_pack({packed})) AS v FROM spine s JOIN {source} f "
                f"ON {keys} AND f.{ts} <= s.{TS} AND f.{ts} >= s.{TS} - to_microseconds(?) "
                f"GROUP BY s.{ROW}"
            )
        source = self._source(index, view)
        key_list = ", ".join(quote(k) for k in view.join_keys)
        packed = ", ".join(self._order_key(view, "f")) or "__none := NULL"
        reduced = (
            f"SELECT {key_list}, f.{ts} AS __t, max(struct_pack({packed})) AS v FROM {source} f "
            f"GROUP BY {key_list}, f.{ts}"
        )
        return f"SELECT s.{ROW}, f.v FROM spine s ASOF JOIN ({reduced}) f ON {keys} AND s.{TS} >= f.__t"

    def _build(self) -> str:
        self.params.extend(self.spine.params)
        ctes = [
            f"spine AS (SELECT *, CAST({quote(self.spine.timestamp_field)} AS TIMESTAMPTZ) AS {TS} "
            f"FROM {self.spine.relation})"
        ]
        selects = [", ".join(f"s.{quote(c)}" for c in self.spine.columns)]
        joins = []
        for index, view in enumerate(self.views):
            ctes.append(f"j{index} AS ({self._join_view(index, view)})")
            joins.append(f"LEFT JOIN j{index} ON j{index}.{ROW} = s.{ROW}")
        selects.extend(f"j{v}.v.{quote('v' + str(f))} AS {quote(self.views[v].features[f][1])}" for v, f in self.order)
        return (
            "WITH "
            + ",\n".join(ctes)
            + "\nSELECT "
            + ", ".join(selects)
            + " FROM spine s "
            + " ".join(joins)
            + f" ORDER BY s.{ROW}"
        )

    def relation(self) -> duckdb.DuckDBPyRelation:
        return self.con.sql(self.sql, params=self.params)

    def close(self) -> None:
        for name in self._registered:
            self.con.unregister(name)


class TrainingSet:
    """A point-in-time-correct training set; computed when first converted.

    ``to_arrow()`` / ``to_pandas()`` / ``to_polars()`` materialize it in memory once;
    ``to_parquet(path)`` streams it to a file in bounded memory instead.
    """

    def __init__(self, query: PointInTimeQuery, keep_alive: list[Any]) -> None:
        self._query = query
        self._keep_alive = keep_alive  # Arrow objects DuckDB scans lazily must outlive the query
        self._table: pa.Table | None = None

    @property
    def sql(self) -> str:
        """The DuckDB query that builds this training set (for inspection)."""
        return self._query.sql

    def to_arrow(self) -> pa.Table:
        """The training set as an Arrow table."""
        if self._table is None:
            self._table = self._query.relation().to_arrow_table()
        return self._table

    def to_pandas(self) -> Any:
        """The training set as a pandas DataFrame."""
        return self.to_arrow().to_pandas()

    def to_polars(self) -> Any:
        """The training set as a polars DataFrame."""
        import polars as pl

        return pl.from_arrow(self.to_arrow())

    def to_parquet(self, path: str | Path) -> Path:
        """Write the training set to a Parquet file, streaming when it was not computed yet."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.partial")
        if self._table is not None:
            import pyarrow.parquet as pq

            pq.write_table(self._table, temporary)
        else:
            self._query.relation().write_parquet(str(temporary))
        temporary.replace(target)  # readers never see a half-written file
        return target

    def iter_batches(self, rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        """Stream the training set as Arrow record batches."""
        reader = self._query.relation().to_arrow_reader(rows)
        yield from reader

    def __len__(self) -> int:
        return int(self.to_arrow().num_rows)
