"""Turn the newest offline rows into online rows and write them (materialize and push share this)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from featurekit.online.base import NO_CREATED, OnlineRows, OnlineStore, encode_key
from featurekit.online.codecs import encode_column, python_values


def table_name(view: str, version: int) -> str:
    """The online table of a view version (view names are validated identifiers)."""
    return f"{view.lower()}__v{int(version)}"


def to_online_rows(table: pa.Table, join_keys: list[str], features: list[str]) -> OnlineRows:
    """Rows from :func:`featurekit.offline.retrieval.latest_rows` as plain Python lists."""
    key_columns = [python_values(table.column(k)) for k in join_keys]
    keys: list[Any] = (
        key_columns[0] if len(key_columns) == 1 else [encode_key(p) for p in zip(*key_columns, strict=True)]
    )
    if len(key_columns) == 1 and keys and not isinstance(keys[0], (int, str)):
        keys = [encode_key([k]) for k in keys]
    created = table.column("__fk_created").to_pylist()
    return OnlineRows(
        keys=keys,
        event_us=python_values(table.column("__fk_event")),
        created_us=[NO_CREATED if c is None else c for c in created],
        columns={f: encode_column(table.column(f)) for f in features},
    )


def write_newest(
    store: OnlineStore, view: str, version: int, latest: pa.Table, *, join_keys: list[str], features: list[str]
) -> int:
    """Create the view version's online table if needed and upsert ``latest`` into it."""
    name = table_name(view, version)
    store.create_table(name, features)
    if latest.num_rows == 0:
        return 0
    return store.write(name, to_online_rows(latest, join_keys, features))
