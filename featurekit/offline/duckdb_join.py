"""The DuckDB engine's point-in-time join: one training-set query on its own cursor.

**The point-in-time join** (rule in :mod:`featurekit.offline.engine`) has several plans, chosen
per view from what the data are (:mod:`featurekit.offline.duckdb_strategies`), with identical results:

* ``asof_sorted`` (the default where event times are in at most microseconds): the rows' keys
  and event times are read into memory; the sorted ``code * span + time`` keys are searched in
  numpy (:func:`featurekit.offline.asof_search.sorted_matches`), the TTL is tested on the match,
  the rows of each matched (key, event time) are found by position, an instant with more than one
  row is reduced by the tie-break in SQL over those rows alone, and the chosen rows' values are
  gathered by position. With one integer key the values (and created times) come from a second,
  streamed scan of the same rows that keeps only the rows taken (``_rows_at``), so a view's values
  are never all in memory (lowcard, 10M rows: peak memory 1.7 GB -> 1.0 GB, wall time unchanged
  within this VM's noise, 0.5-0.8 CPU s more); other keys read them with the keys. Interleaved in
  one process on a loaded machine (load 4-5.5, CPU seconds, before the second scan): lowcard (1M
  spine, 10M rows) 2.8 against 5.6 for ``asof`` and 4.7 for ``asof_numpy``; dense (100k spine,
  2M rows) 0.36 against 0.76 and 0.35. It holds about 24 bytes per feature row (codes, times,
  sorted keys) in memory, and with other keys every row's read columns (8 bytes a number), outside
  DuckDB's ``memory_limit``: an engine with a memory limit (``offline.memory_limit``) takes
  ``asof`` instead, as does ``DuckDBEngine(asof_plan="asof")``.
* ``asof``: an ``ASOF JOIN`` of the spine with the feature rows' (keys, event time)
  finds each spine row's newest event time at or before it, the TTL is tested on that match, and
  an equality join on (keys, event time) brings the rows of that instant, reduced by the
  tie-break order. Cost grows with spine + feature rows, never with rows per key. Taken for
  nanosecond event times, or when asked for.
* ``asof_numpy`` (only when asked for: ``asof_sorted`` was as fast or faster on every shape): the
  ``asof`` plan with its ``ASOF JOIN`` replaced by a binary search in numpy over the sorted keys
  of the rows' (keys, event time) columns alone; the matched instants go back to DuckDB as a table
  and the equality join and tie-break are the ``asof`` plan's SQL.
* ``asof_rows``: when the input says no two rows share keys and event time
  (``ViewInput.unique_times``: no tie to break), one ``ASOF JOIN`` carries the matched row's values
  directly, skipping the equality join (on tie-free dense and lowcard data 0-5% less CPU than
  ``asof``: ``python -m benchmarks.untied_asof``). Materializations do not measure it (sorting
  every batch's (key, event time) cost 0.055-0.08 CPU s per million rows, about 8% of a
  materialization, for that gain), so the registry records it as unknown and this plan is chosen
  only for inputs that declare it.
* ``range``: a hash join on the keys with the TTL range as join filter, reduced per spine row
  with ``max(struct(...))``. It enumerates every feature row of a key for each spine row of that
  key, so it is chosen only when the view's recorded entity count says spine rows per entity
  are few (at most ``RANGE_MAX_SPINE_PER_ENTITY``, in :mod:`featurekit.offline.duckdb_strategies`);
  there it skips the ASOF sort (10M feature rows, 1M entities, 1M spine: 2.1 s against 3.9 s).

Each plan reduces a view's candidate rows to one struct per spine row; asked ``matched=True``
(``explain()``), the struct also carries the matched row's event time ``__t`` (first: all rows
compared share it or it is the ordering key already) and created time ``__c``, which the final
select returns after the features. The plan chosen, and the statistic that chose it, is the join's
``strategies``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from featurekit.names import quote
from featurekit.offline import asof_search, window_blocks
from featurekit.offline.duckdb_sql import instant, order_key, reading_offline
from featurekit.offline.duckdb_strategies import row_strategy, window_strategy
from featurekit.offline.engine import (
    SPINE_INSTANT,
    JoinStrategy,
    Spine,
    ViewInput,
    local_path,
    matched_created,
    matched_event,
)
from featurekit.windows import NULL_CREATED_US, WindowFeature, WindowSpec

ROW = "__fk_row"
TS = "__fk_ts"
_FILE_ROW = "file_row_number"  # DuckDB's name for a Parquet row's position in its file


class DuckDBJoin:
    """One training-set join on its own cursor: the spine and empty inputs are registered there only."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        spine: Spine,
        views: list[ViewInput],
        order: list[tuple[int, int]] | None,
        *,
        matched: bool = False,
        asof_plan: str | None = None,
    ) -> None:
        self._con = con
        self.asof_plan = asof_plan  # forces the ASOF plan of views whose rows may tie
        self._lock = threading.Lock()  # one cursor runs one query at a time
        self.closed = False
        self.spine = spine
        self.views = views
        self.order = order or [(v, f) for v, view in enumerate(views) for f in range(len(view.features))]
        self.params: list[Any] = []
        self.matched = matched  # also return the spine instant and the matched rows' times
        self.strategies: list[JoinStrategy] = []
        self._empty = itertools.count()
        self._spine_registered = False
        self._blocks: list[tuple[str, ViewInput, list[WindowFeature]]] = []  # computed before the query
        # the asof_numpy and asof_sorted plans' tables (name, view, plan), computed before the query
        self._arrays: list[tuple[str, ViewInput, str]] = []
        self._blocks_ready = False
        self.sql = self._build()

    @property
    def description(self) -> str:
        plans = ", ".join(f"{s.view}: {s.name}" for s in self.strategies)
        return f"-- plans: {plans}\n{self.sql}"

    def _spine_relation(self, params: list[Any] | None = None) -> str:
        spine = self.spine
        ts = instant(quote(spine.timestamp_field), spine.schema.field(spine.timestamp_field).type)
        if spine.file is not None:
            (self.params if params is None else params).append(str(spine.file))
            scan = f"read_parquet(?, {_FILE_ROW} = true)"
            return f"SELECT * EXCLUDE ({_FILE_ROW}), {_FILE_ROW} AS {ROW}, {ts} AS {TS} FROM {scan}"
        assert spine.table is not None
        if not self._spine_registered:
            numbered = _durations_as_integers(spine.table)
            numbered = numbered.append_column(ROW, pa.array(np.arange(spine.rows, dtype=np.int64)))
            self._con.register("__fk_spine", numbered)
            self._spine_registered = True
        return f"SELECT *, {ts} AS {TS} FROM __fk_spine"

    def _source(self, view: ViewInput, params: list[Any] | None = None) -> str:
        """SQL reading the view's rows; its parameters go to ``params`` (default: the join's)."""
        params = self.params if params is None else params
        if not view.files:
            name = f"__fk_empty_{next(self._empty)}"
            self._con.register(name, view.schema.empty_table())
            return name
        params.append([local_path(f) for f in view.files])
        if view.known_at is None:
            return "read_parquet(?)"
        assert view.created_field is not None  # checked when the training set was planned
        params.append(view.known_at)
        # A row whose write time is unknown (null created) cannot be shown to predate known_at.
        return f"(SELECT * FROM read_parquet(?) WHERE {quote(view.created_field)} <= ?)"

    def _join_view(self, view: ViewInput) -> str:
        if view.window is not None:
            return self._window_join(view, view.window)
        keys = " AND ".join(f"s.{quote(k)} = f.{quote(k)}" for k in view.join_keys)
        ts = quote(view.timestamp_field)
        ttl = view.ttl_us
        strategy = row_strategy(view, self.spine.rows, asof_plan=self.asof_plan)
        self.strategies.append(strategy)
        plan = strategy.name
        # A matched join carries the row's event time in its struct (the range plan's already does).
        event = [f"__t := f.{ts}"] if self.matched else []
        if plan == "range":
            source = self._source(view)
            lower = ""
            if ttl is not None:
                self.params.append(ttl)
                lower = f" AND f.{ts} >= s.{TS} - to_microseconds(?)"
            packed = ", ".join([f"__t := f.{ts}", *order_key(view, "f")])
            return (
                f"SELECT s.{ROW}, max(struct_pack({packed})) AS __fk_v FROM spine s JOIN {source} f "
                f"ON {keys} AND f.{ts} <= s.{TS}{lower} GROUP BY s.{ROW}"
            )
        if plan == "asof_rows":
            values = [f"{quote('v' + str(i))} := f.{quote(c)}" for i, (c, _) in enumerate(view.features)]
            created = [f"__c := f.{quote(view.created_field)}"] if self.matched and view.created_field else []
            packed = ", ".join(event + created + values)
            inside = "TRUE"
            if ttl is not None:  # its parameter precedes the source's in the SQL text
                self.params.append(ttl)
                inside = f"f.{ts} >= s.{TS} - to_microseconds(?)"
            source = self._source(view)
            return (
                f"SELECT s.{ROW}, CASE WHEN {inside} THEN struct_pack({packed or '__none := NULL'}) END AS __fk_v "
                f"FROM spine s ASOF JOIN {source} f ON {keys} AND s.{TS} >= f.{ts}"
            )
        if plan == "asof_sorted":
            table = f"__fk_sorted{len(self._arrays)}"
            self._arrays.append((table, view, plan))
            created = (
                ["__c := coalesce(m.__fk_c, TIMESTAMPTZ '-infinity')"] if self.matched and view.created_field else []
            )
            values = [f"{quote('v' + str(i))} := m.{quote('v' + str(i))}" for i in range(len(view.features))]
            packed = ", ".join((["__t := m.__fk_e"] if self.matched else []) + created + values)
            return f"SELECT m.{ROW}, struct_pack({packed or '__none := NULL'}) AS __fk_v FROM {table} m"
        if plan == "asof_numpy":
            table = f"__fk_match{len(self._arrays)}"
            self._arrays.append((table, view, plan))
            matched_keys = ", ".join(f"s.{quote(k)}" for k in view.join_keys)
            match = (
                f"SELECT s.{ROW}, {matched_keys}, make_timestamptz(m.__fk_e) AS __fk_e FROM spine s "
                f"JOIN {table} m ON m.{ROW} = s.{ROW}"
            )
            return self._instant_rows(view, match, self.params)
        return self._asof_sql(view, self.params)

    def _asof_sql(self, view: ViewInput, params: list[Any]) -> str:
        """The ``asof`` plan's SQL for one view (over the CTE ``spine``); its parameters go to ``params``."""
        keys = " AND ".join(f"s.{quote(k)} = f.{quote(k)}" for k in view.join_keys)
        ts = quote(view.timestamp_field)
        key_list = ", ".join(quote(k) for k in view.join_keys)
        matched_keys = ", ".join(f"s.{quote(k)}" for k in view.join_keys)
        source = self._source(view, params)
        within = ""
        if view.ttl_us is not None:
            params.append(view.ttl_us)
            within = f" WHERE f.{ts} >= s.{TS} - to_microseconds(?)"
        match = (
            f"SELECT s.{ROW}, {matched_keys}, f.{ts} AS __fk_e FROM spine s "
            f"ASOF JOIN (SELECT {key_list}, {ts} FROM {source}) f ON {keys} AND s.{TS} >= f.{ts}{within}"
        )
        return self._instant_rows(view, match, params)

    def _instant_rows(self, view: ViewInput, match: str, params: list[Any]) -> str:
        """Each matched spine row's struct: the rows of its matched instant reduced by the tie-break.

        ``match`` is SQL of (``__fk_row``, the spine row's keys, ``__fk_e``: its matched event time).
        """
        ts = quote(view.timestamp_field)
        event = [f"__t := f.{ts}"] if self.matched else []
        source = self._source(view, params)  # its parameters follow the match's in the SQL text
        # Every row of the group has the matched event time: first in the struct, it orders nothing.
        packed = ", ".join(event + order_key(view, "f")) or "__none := NULL"
        on = " AND ".join(f"m.{quote(k)} = f.{quote(k)}" for k in view.join_keys)
        return (
            f"SELECT m.{ROW}, max(struct_pack({packed})) AS __fk_v FROM ({match}) m JOIN {source} f "
            f"ON {on} AND f.{ts} = m.__fk_e GROUP BY m.{ROW}"
        )

    def _match_table(self, index: int, view: ViewInput) -> pa.Table:
        """The ``asof_numpy`` plan's ASOF: ``__fk_row`` and ``__fk_e`` (the matched event time in
        microseconds) of each spine row with a row inside the TTL (:mod:`asof_search`)."""
        event_codes, events, query_codes, points = self._coded_rows(
            f"__fk_match_codes{int(index)}", view, [], drop_nulls=True
        )
        instants = points.column("__fk_t").to_numpy()
        times = events.column("__fk_o").to_numpy()
        query, matched = asof_search.newest_times(event_codes, times, query_codes, instants, view.ttl_us, scratch=True)
        return pa.table({ROW: points.column(ROW).take(pa.array(query)), "__fk_e": pa.array(matched)})

    def _sorted_table(self, index: int, view: ViewInput, *, late: bool = True) -> pa.Table:
        """The ``asof_sorted`` plan: each matched spine row's ``__fk_row`` and its row's values.

        The search (:func:`asof_search.sorted_matches`) finds each match's rows by position in the
        rows' keys and event times; an instant with more than one row is reduced by the tie-break
        in SQL (``order_key``, on those rows alone); the values of the row each spine row takes are
        gathered by position. Columns: ``__fk_row``, ``__fk_e`` (the event time), ``__fk_c``
        (created, when the view has one), ``v0``, ``v1``, ... (the features).

        With one integer key the search reads the keys and event times alone, and the values are
        read afterwards for the rows taken only (:meth:`_rows_at`); otherwise (or ``late=False``)
        they are read with the keys, into memory.
        """
        ts, created = view.timestamp_field, view.created_field
        features = [column for column, _ in view.features]
        read = list(dict.fromkeys([*features, *([created] if created else []), *([ts] if self.matched else [])]))
        late = late and _one_integer_key(view)
        event_codes, events, query_codes, points = self._coded_rows(
            f"__fk_sorted_codes{int(index)}", view, [] if late else read, drop_nulls=True, keep_key=late
        )
        instants = points.column("__fk_t").to_numpy()
        times = events.column("__fk_o").to_numpy()
        found = asof_search.sorted_matches(event_codes, times, query_codes, instants, view.ttl_us, scratch=True)
        # The rows are numbered in ``values``: every row there (read all at once), or the matched
        # instants' rows alone (``found.rows``, read late), where the j-th in key order is ``ranks[j]``.
        if late:
            fetched = self._rows_at(view, read, found.rows, events)
            if fetched is None:  # the second read did not line up with the first: read it all at once
                return self._sorted_table(index, view, late=False)
            values, order = fetched, found.ranks
        else:
            values, order = events, found.order
        chosen = order[found.last]  # the row of an untied instant
        tied = np.flatnonzero(~found.single())
        groups = _tie_groups(found, order, tied) if len(tied) else None
        if groups is not None:
            chosen[tied] = self._tie_winners(view, values, groups)
        rows = pa.array(chosen)
        table = {ROW: points.column(ROW).take(pa.array(found.query))}
        if self.matched:
            table["__fk_e"] = values.column(ts).take(rows)
        if created:
            table["__fk_c"] = values.column(created).take(rows)
        table.update({f"v{i}": values.column(column).take(rows) for i, column in enumerate(features)})
        return pa.table(table)

    def _rows_at(self, view: ViewInput, columns: list[str], rows: np.ndarray, first: pa.Table) -> pa.Table | None:
        """``columns`` of the view's rows at positions ``rows`` (ascending, unique) of the read
        :meth:`_coded_rows` made with ``drop_nulls``, ``keep_key`` and one integer key (``first``:
        its rows' keys and event times), in that order; None when this read does not line up with it.

        The same scan again (files in order, DuckDB preserving the rows' order), streamed: only
        the rows taken are kept, so a view's values are never all in memory at once (lowcard:
        640 MB of fresh memory less, whose first touch is slow on a VM that returns free memory
        to its host). The key and event time of every row kept are compared with the first
        read's; a difference (a source read in another order) makes the caller read everything.
        """
        key, ts = quote(view.join_keys[0]), quote(view.timestamp_field)
        params: list[Any] = []
        source = self._source(view, params)
        picked = "".join(f", e.{quote(c)}" for c in columns)
        sql = (
            f"SELECT e.{key} AS __fk_k, epoch_us(e.{ts}) AS __fk_o{picked} FROM {source} e "
            f"WHERE e.{ts} IS NOT NULL AND e.{key} IS NOT NULL"
        )
        pieces: list[pa.RecordBatch] = []
        offset = start = 0
        reader = self._con.sql(sql, params=params).to_arrow_reader(_LATE_BATCH_ROWS)
        for batch in reader:
            end = int(np.searchsorted(rows, offset + batch.num_rows))
            if end > start:
                pieces.append(batch.take(pa.array(rows[start:end] - offset)))
            start, offset = end, offset + batch.num_rows
        if offset != first.num_rows or start != len(rows):
            return None
        kept = pa.Table.from_batches(pieces, reader.schema)
        expected = first.select(["__fk_code", "__fk_o"]).take(pa.array(rows))
        if not (kept.column("__fk_k").equals(expected.column(0)) and kept.column("__fk_o").equals(expected.column(1))):
            return None
        return kept.select(columns)

    def _tie_winners(self, view: ViewInput, values: pa.Table, groups: _TieGroups) -> np.ndarray:
        """The row each tied match takes: its instant's rows reduced by ``order_key`` in SQL."""
        columns = list(
            dict.fromkeys([*(c for c, _ in view.features), *([view.created_field] if view.created_field else [])])
        )
        candidates = values.select(columns).take(pa.array(groups.rows))
        candidates = candidates.append_column("__fk_g", pa.array(groups.group)).append_column(
            "__fk_i", pa.array(groups.rows)
        )
        name = "__fk_tied"
        self._con.register(name, candidates)
        try:
            packed = ", ".join([*order_key(view, "f"), "__fk_i := f.__fk_i"])
            winners = self._con.sql(
                f"SELECT f.__fk_g, max(struct_pack({packed})).__fk_i AS __fk_i FROM {name} f GROUP BY f.__fk_g"
            ).to_arrow_table()
        finally:
            self._con.unregister(name)
        best = np.empty(groups.instants, dtype=np.int64)
        best[winners.column("__fk_g").to_numpy()] = winners.column("__fk_i").to_numpy()
        chosen: np.ndarray = best[groups.inverse]
        return chosen

    def _window_join(self, view: ViewInput, spec: WindowSpec) -> str:
        """A window view's features: numeric ones in blocks (numpy), the others over RANGE frames."""
        by_name = {f.name: f for f in spec.features}
        wanted = [by_name[name] for name, _ in view.features]
        blocks = [f for f in wanted if window_blocks.computes(f, view.schema)]
        framed = [i for i, f in enumerate(wanted) if not window_blocks.computes(f, view.schema)]
        self.strategies.append(window_strategy(view, blocks, [wanted[i] for i in framed]))
        if not blocks:
            return self._framed_view(view, spec)
        table = f"__fk_blocks{len(self._blocks)}"
        self._blocks.append((table, view, blocks))
        # Output field i comes from the block table's column or from the frames' struct.
        source = {f.name: f"b.{quote('b' + str(k))}" for k, f in enumerate(blocks)}
        source.update({wanted[i].name: f"fr.__fk_v.{quote('v' + str(k))}" for k, i in enumerate(framed)})
        fields = [f"{quote('v' + str(i))} := {source[f.name]}" for i, f in enumerate(wanted)]
        joined = ""
        if framed:
            only = ViewInput(**{**view.__dict__, "features": [view.features[i] for i in framed]})
            joined = f" LEFT JOIN ({self._framed_view(only, spec)}) fr ON fr.{ROW} = b.{ROW}"
        return f"SELECT b.{ROW}, struct_pack({', '.join(fields)}) AS __fk_v FROM {table} b{joined}"

    def _compute_blocks(self) -> None:
        """Compute the block features of every window view and register them on this join's cursor."""
        if self._blocks_ready:
            return
        for index, (table, view, features) in enumerate(self._blocks):
            assert view.window is not None
            self._con.register(table, self._block_table(index, view, view.window, features))
        for index, (table, view, plan) in enumerate(self._arrays):
            rows = self._sorted_table(index, view) if plan == "asof_sorted" else self._match_table(index, view)
            self._con.register(table, rows)
        self._blocks_ready = True

    def _coded_rows(
        self, name: str, view: ViewInput, columns: list[str], *, drop_nulls: bool = False, keep_key: bool = False
    ) -> tuple[np.ndarray, pa.Table, np.ndarray, pa.Table]:
        """A view's rows and the spine's, with entity codes >= 0 (numpy) in key order.

        Returns the rows' codes, the rows (``__fk_o``: event time in microseconds, then ``columns``),
        the spine rows' codes (-1: a key with no rows, or a null key part) and the spine rows
        (``__fk_row``, ``__fk_t``: the instant in microseconds). One integer key is its own code
        (:func:`window_blocks.encode`); other keys are numbered in a temporary table ``name``.
        With ``drop_nulls``, rows with a null event time or key part are left out; with ``keep_key``
        (one integer key), the rows keep their key as ``__fk_code``.
        """
        keys = [quote(k) for k in view.join_keys]
        key_list = ", ".join(keys)
        ts = quote(view.timestamp_field)
        one_integer = _one_integer_key(view)
        con = self._con
        params: list[Any] = []
        source = self._source(view, params)
        if one_integer:  # the key is its own code (window_blocks.encode)
            code, codes_join = quote(view.join_keys[0]), ""
        else:
            codes = quote(name)
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {codes} AS SELECT {key_list}, "
                f"(row_number() OVER (ORDER BY {key_list})) - 1 AS __fk_code FROM (SELECT DISTINCT {key_list} "
                f"FROM {source})",
                params,
            )
            params = []
            source = self._source(view, params)
            on = " AND ".join(f"e.{k} = c.{k}" for k in keys)
            code, codes_join = "c.__fk_code", f" JOIN {codes} c ON {on}"
        where = ""
        if drop_nulls:  # the codes' join already drops a null key part
            key_test = f" AND e.{quote(view.join_keys[0])} IS NOT NULL" if one_integer else ""
            where = f" WHERE e.{ts} IS NOT NULL{key_test}"
        values = "".join(f", e.{quote(c)}" for c in columns)
        events = con.sql(
            f"SELECT {'e.' if one_integer else ''}{code} AS __fk_code, epoch_us(e.{ts}) AS __fk_o{values} "
            f"FROM {source} e{codes_join}{where}",
            params=params,
        ).to_arrow_table()
        params = []
        spine = self._spine_relation(params)
        if one_integer:
            spine_code, spine_join = f"s.{quote(view.join_keys[0])}", ""
        else:
            spine_on = " AND ".join(f"s.{k} = c.{k}" for k in keys)
            spine_code, spine_join = "coalesce(c.__fk_code, -1)", f" LEFT JOIN {codes} c ON {spine_on}"
        points = con.sql(
            f"SELECT s.{ROW}, {spine_code} AS __fk_code, epoch_us(s.{TS}) AS __fk_t FROM ({spine}) s{spine_join}",
            params=params,
        ).to_arrow_table()
        if one_integer:
            event_codes, query_codes = window_blocks.encode(events.column("__fk_code"), points.column("__fk_code"))
        else:
            event_codes = events.column("__fk_code").to_numpy().astype(np.int64)
            query_codes = points.column("__fk_code").to_numpy().astype(np.int64)
        if not (keep_key and one_integer):
            events = events.drop_columns(["__fk_code"])
        return event_codes, events, query_codes, points.drop_columns(["__fk_code"])

    def _block_table(self, index: int, view: ViewInput, spec: WindowSpec, features: list[WindowFeature]) -> pa.Table:
        """The block features of one window view for every spine row: ``__fk_row``, ``b0``, ``b1``, ..."""
        columns = list(dict.fromkeys(f.column for f in features if f.column is not None))
        # Read unsorted: numpy sorts the rows by one fused (code, time) key (window_blocks.sort_events),
        # and rows that tie on both are then ordered by their values (window_blocks.Events.settled),
        # so the blocks and every float sum are the same on each run. At 10M rows an ORDER BY here
        # took 2.7 CPU s of the 3.2 s the query cost.
        event_codes, events, query_codes, points = self._coded_rows(f"__fk_codes{int(index)}", view, columns)
        ends = points.column("__fk_t").to_numpy() - spec.delay_us
        times = events.column("__fk_o").to_numpy()
        value_columns = {c: events.column(c).combine_chunks() for c in columns}
        del events  # the query's result: what is left is one copy of codes, times and values
        order, found = window_blocks.answer(
            event_codes,
            times,
            value_columns,
            features,
            query_codes=query_codes,
            ends=ends,
            threads=self._threads(),
        )
        result = {ROW: points.column(ROW).take(pa.array(order))}
        result.update({f"b{i}": found[f.name] for i, f in enumerate(features)})
        return pa.table(result)

    def _threads(self) -> int:
        """DuckDB's thread count (the engine's ``threads`` setting): numpy work runs that wide too."""
        rows = self._con.execute("SELECT current_setting('threads')").fetchall()
        return max(1, int(rows[0][0])) if rows else 1

    def _framed_view(self, view: ViewInput, spec: WindowSpec) -> str:
        """The window features blocks do not compute (``count_distinct``, ``first``, ``last``,
        ``last_n``, and count/min/max of columns that are not numbers), over RANGE frames.

        The spine's instants are merged into the rows: each spine row enters its key's partition
        at ``t - delay - 1`` microsecond, so a frame of ``w - 1`` preceding microseconds up to its
        peers holds exactly ``t - delay - w <= e < t - delay``. Its own columns are null and it
        carries no event flag, so it counts for nothing. None of these aggregations adds floats,
        so the order DuckDB gives rows with equal times cannot change a result.
        """
        keys = [quote(k) for k in view.join_keys]
        ts = quote(view.timestamp_field)
        columns = spec.columns
        created = "0"
        if view.created_field:
            created = f"coalesce(epoch_us({quote(view.created_field)}), {int(NULL_CREATED_US)})"
        source = self._source(view)
        events = (
            f"SELECT {', '.join(keys)}, epoch_us({ts}) AS __fk_o, {created} AS __fk_c, "
            f"NULL::BIGINT AS {ROW}, 1 AS __fk_ev{''.join(f', {quote(c)}' for c in columns)} FROM {source}"
        )
        points = (
            f"SELECT {', '.join(keys)}, epoch_us({TS}) - {int(spec.delay_us) + 1} AS __fk_o, 0 AS __fk_c, "
            f"{ROW}, NULL::INTEGER AS __fk_ev FROM spine"
        )
        by_name = {f.name: f for f in spec.features}
        wanted = [by_name[name] for name, _ in view.features]
        windows = sorted({f.window_us for f in wanted})
        named = {w: f"__fk_w{i}" for i, w in enumerate(windows)}
        values = [f"{quote('v' + str(i))} := {_framed_aggregate(f, named)}" for i, f in enumerate(wanted)]
        frames = [
            f"{named[w]} AS (PARTITION BY {', '.join(keys)} ORDER BY __fk_o "
            f"RANGE BETWEEN {int(w) - 1} PRECEDING AND CURRENT ROW)"
            for w in windows
        ]
        return (
            f"SELECT {ROW}, struct_pack({', '.join(values) or '__none := NULL'}) AS __fk_v "
            f"FROM ({events} UNION ALL BY NAME {points}) "
            f"WINDOW {', '.join(frames)} QUALIFY {ROW} IS NOT NULL"
        )

    def _build(self) -> str:
        ctes = [f"spine AS ({self._spine_relation()})"]
        selects = [", ".join(f"s.{quote(c)}" for c in self.spine.columns)]
        joins = []
        for index, view in enumerate(self.views):
            ctes.append(f"j{index} AS ({self._join_view(view)})")
            joins.append(f"LEFT JOIN j{index} ON j{index}.{ROW} = s.{ROW}")
        selects.extend(
            f"j{v}.__fk_v.{quote('v' + str(f))} AS {quote(self.views[v].features[f][1])}" for v, f in self.order
        )
        if self.matched:
            selects.append(f"s.{TS} AS {SPINE_INSTANT}")
            for v, view in enumerate(self.views):
                if view.window is not None:
                    continue
                selects.append(f"j{v}.__fk_v.__t AS {matched_event(v)}")
                created = "NULL::TIMESTAMPTZ"
                if view.created_field:  # the tie-break's stand-in for a null created time is null again
                    created = f"CASE WHEN isinf(j{v}.__fk_v.__c) THEN NULL ELSE j{v}.__fk_v.__c END"
                selects.append(f"{created} AS {matched_created(v)}")
        return (
            "WITH "
            + ",\n".join(ctes)
            + "\nSELECT "
            + ", ".join(selects)
            + " FROM spine s "
            + " ".join(joins)
            + f" ORDER BY s.{ROW}"
        )

    def to_arrow(self) -> pa.Table:
        with self._lock, reading_offline(self.spine.file):
            self._compute_blocks()
            table: pa.Table = self._con.sql(self.sql, params=self.params).to_arrow_table()
        return table

    def to_batches(self, rows: int) -> Iterator[pa.RecordBatch]:
        with self._lock:
            with reading_offline(self.spine.file):
                self._compute_blocks()
                reader = self._con.sql(self.sql, params=self.params).to_arrow_reader(rows)
            while True:
                with reading_offline(self.spine.file):
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        return
                yield batch

    def to_parquet(self, path: Path, metadata: dict[str, str]) -> None:
        pairs = ", ".join(f"{quote(key)}: ?" for key in metadata)
        options = f", KV_METADATA {{{pairs}}}" if metadata else ""
        with self._lock, reading_offline(self.spine.file):
            self._compute_blocks()
            self._con.execute(
                f"COPY ({self.sql}) TO ? (FORMAT parquet{options})", [*self.params, str(path), *metadata.values()]
            )

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                try:
                    self._con.close()
                except duckdb.Error:  # the engine closed its database first: nothing left to release
                    return


def _framed_aggregate(feature: WindowFeature, windows: dict[int, str]) -> str:
    """SQL of one framed window feature over its named frame (rule in :mod:`featurekit.offline.engine`)."""
    over = f"OVER {windows[feature.window_us]}"
    assert feature.column is not None  # count() and numeric aggregations are computed in blocks
    column = quote(feature.column)
    fn = feature.fn
    if fn in ("count", "min", "max"):  # of a column that is not a number
        return f"{fn}({column}) {over}"
    if fn == "count_distinct":
        return f"count(DISTINCT {column}) {over}"
    ordered = f"CASE WHEN {column} IS NOT NULL THEN struct_pack(o := __fk_o, c := __fk_c, v := {column}) END"
    if fn == "first":
        return f"(min({ordered}) {over}).v"
    if fn == "last":
        return f"(max({ordered}) {over}).v"
    assert fn == "last_n"
    assert feature.n is not None
    return f"list_transform(max({ordered}, {int(feature.n)}) {over}, lambda __fk_x: __fk_x.v)"


_LATE_BATCH_ROWS = 262_144  # rows per batch of _rows_at's second read (its memory is reused batch after batch)


def _durations_as_integers(table: pa.Table) -> pa.Table:
    """``table`` with its duration columns as int64 (the same buffers), as DuckDB reads them from Parquet.

    Registered as Arrow, DuckDB would turn a duration into an interval, whose nanoseconds wrap past
    292 years and whose microseconds cut a nanosecond duration; the training set casts the integers
    back (:mod:`featurekit.offline.spine_types`).
    """
    for index, field in enumerate(table.schema):
        if pa.types.is_duration(field.type):
            table = table.set_column(index, field.name, table.column(index).cast(pa.int64()))
    return table


def _one_integer_key(view: ViewInput) -> bool:
    """Whether the view joins on one integer key (its own code: :func:`window_blocks.encode`)."""
    return len(view.join_keys) == 1 and pa.types.is_integer(view.schema.field(view.join_keys[0]).type)


@dataclass(frozen=True)
class _TieGroups:
    """The rows of the tied matches' instants: ``rows[group == g]`` are instant ``g``'s rows;
    tied match ``k`` is instant ``inverse[k]`` (of ``instants``)."""

    rows: np.ndarray
    group: np.ndarray
    inverse: np.ndarray
    instants: int


def _tie_groups(found: asof_search.Matches, order: np.ndarray, tied: np.ndarray) -> _TieGroups:
    """The rows of each instant that the ``tied`` matches (indices into ``found``) share, as
    ``order`` numbers them (``found.order``, or its ranks)."""
    last, inverse = np.unique(found.last[tied], return_inverse=True)  # each tied instant once
    starts = np.empty_like(last)
    starts[inverse] = found.first[tied]
    lengths = last - starts + 1
    group = np.repeat(np.arange(len(last)), lengths)
    positions = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths) + starts[group]
    return _TieGroups(order[positions], group, inverse, len(last))
