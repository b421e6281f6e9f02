"""Which join strategy the DuckDB engine takes for a view, and the reason it reports (``explain()``).

The SQL of each strategy is in :mod:`featurekit.offline.duckdb_join`; this module decides between
them from the statistics a :class:`~featurekit.offline.engine.ViewInput` carries.
"""

from __future__ import annotations

import pyarrow as pa

from featurekit.offline.engine import JoinStrategy, ViewInput
from featurekit.windows import WindowFeature

# The range plan pairs each spine row with every feature row of its key; with more spine rows per
# entity than this the ASOF plan is faster (measured crossover: 2-5 spine rows per entity).
RANGE_MAX_SPINE_PER_ENTITY = 3.0
# The ASOF plans of rows that may tie; ``DuckDBEngine(asof_plan=...)`` forces one where it applies.
ASOF_PLANS = ("asof", "asof_numpy", "asof_sorted")


def in_memory(view: ViewInput) -> bool:
    """Whether the in-memory plans (``asof_numpy``, ``asof_sorted``) apply: event times are
    timestamps in seconds to microseconds (a nanosecond time would need the SQL comparison's
    rounding rules)."""
    fields = {f.name: f.type for f in view.schema}
    event = fields.get(view.timestamp_field)
    return event is not None and pa.types.is_timestamp(event) and event.unit != "ns"


def row_strategy(view: ViewInput, spine_rows: int, *, asof_plan: str | None = None) -> JoinStrategy:
    """``range`` for few spine rows per recorded entity, else ``asof_rows`` without ties, else
    ``asof_sorted`` where it applies (event times in at most microseconds), else ``asof``.

    ``asof_plan`` (one of :data:`ASOF_PLANS`) replaces the last choice: the in-memory ones
    where they apply, ``asof`` anywhere.
    """
    entities = view.entities
    if entities:
        ratio = spine_rows / entities
        per = f"{spine_rows:,} spine rows over at least {entities:,} entities ({ratio:.2f} per entity"
        if ratio <= RANGE_MAX_SPINE_PER_ENTITY:
            reason = f"{per}, at most {RANGE_MAX_SPINE_PER_ENTITY}): a hash join on the keys within the TTL"
            return JoinStrategy(view.name, "range", reason + " skips the ASOF sort")
        counted = f"{per}, over {RANGE_MAX_SPINE_PER_ENTITY})"
    else:
        counted = "no entity count recorded"
    if view.unique_times:
        reason = f"{counted}; no two rows share keys and event time: one ASOF JOIN carries the matched row"
        return JoinStrategy(view.name, "asof_rows", reason)
    plan = asof_plan or "asof_sorted"
    if plan != "asof" and not in_memory(view):
        plan = "asof"
    ties = f"{counted}; rows may share keys and event time"
    if plan == "asof_sorted":
        reason = (
            f"{ties}: the sorted (entity, event time) keys searched in numpy, the rows of each matched "
            "instant found by position and reduced by the tie-break, their values gathered by position"
        )
    elif plan == "asof_numpy":
        reason = (
            f"{ties}: a binary search of the sorted (entity, event time) keys in numpy, then the rows "
            "of each matched instant reduced by the tie-break"
        )
    else:
        reason = f"{ties}: an ASOF JOIN, then the tie-break of that instant"
    return JoinStrategy(view.name, plan, reason)


def window_strategy(view: ViewInput, blocks: list[WindowFeature], framed: list[WindowFeature]) -> JoinStrategy:
    """Which window features are computed in blocks and which over frames, and why."""
    parts = []
    if blocks:
        names = ", ".join(f.name for f in blocks)
        parts.append(f"numeric aggregations ({names}) by running totals and power-of-two blocks per entity")
    if framed:
        names = ", ".join(f.name for f in framed)
        parts.append(f"the others ({names}) over RANGE frames with the spine instants merged into the events")
    name = "window(" + "+".join(p for p, some in (("blocks", blocks), ("frames", framed)) if some) + ")"
    return JoinStrategy(view.name, name, "; ".join(parts))
