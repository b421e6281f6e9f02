"""Turn the newest offline rows into online rows and write them (materialize and push share this)."""

from __future__ import annotations

import pyarrow as pa

from featurekit.online.base import NO_CREATED, OnlineRows, OnlineStore, Packer
from featurekit.online.codecs import encode_column, python_values
from featurekit.online.keys import encode_keys


def table_name(view: str, version: int) -> str:
    """The online table of a view version (view names are validated identifiers)."""
    return f"{view.lower()}__v{int(version)}"


def to_online_rows(table: pa.Table, join_keys: list[str], features: list[str]) -> OnlineRows:
    """Rows from the engine's ``newest_rows`` as plain Python lists."""
    key_columns = [table.column(k) for k in join_keys]
    created = table.column("__fk_created").to_pylist()
    return OnlineRows(
        keys=encode_keys(key_columns, [c.type for c in key_columns]),
        event_us=python_values(table.column("__fk_event")),
        created_us=[NO_CREATED if c is None else c for c in created],
        columns={f: encode_column(table.column(f)) for f in features},
    )


def packed_online_rows(table: pa.Table, *, join_keys: list[str], features: list[str], packer: Packer) -> OnlineRows:
    """:func:`to_online_rows`, also encoded by the store's ``packer`` (no I/O: safe before a commit)."""
    rows = to_online_rows(table, join_keys, features)
    return OnlineRows(rows.keys, rows.event_us, rows.created_us, rows.columns, (packer(table, rows, features),))


def extend_rows(rows: OnlineRows, more: OnlineRows) -> OnlineRows:
    """``rows`` followed by ``more`` (with their packed parts, in the same order); extends ``rows``' lists."""
    rows.keys.extend(more.keys)
    rows.event_us.extend(more.event_us)
    rows.created_us.extend(more.created_us)
    for feature, values in rows.columns.items():
        values.extend(more.columns[feature])
    return OnlineRows(rows.keys, rows.event_us, rows.created_us, rows.columns, rows.packed + more.packed)


def write_newest(
    store: OnlineStore,
    view: str,
    version: int,
    newest: pa.Table,
    *,
    join_keys: list[str],
    features: list[str],
    rows: OnlineRows | None = None,
) -> int:
    """Create the view version's online table if needed and upsert ``newest`` into it.

    ``rows``: ``newest`` already turned into online rows (see :func:`packed_online_rows`).
    """
    name = table_name(view, version)
    store.create_table(name, features)
    if newest.num_rows == 0:
        return 0
    return store.write(name, rows if rows is not None else to_online_rows(newest, join_keys, features))
