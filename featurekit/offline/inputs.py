"""Engine inputs from definitions and registry records: the only place that builds them.

The engine sees plain descriptions (:mod:`featurekit.offline.engine`); this module turns a
source definition into a :class:`SourceScan` and a registered view version into a
:class:`ViewInput`, so every path (materialize, push, training sets, verify) describes them alike.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from featurekit.definitions import FileSource, Source, SqlSource
from featurekit.offline.engine import SourceScan, ViewInput
from featurekit.registry import ViewVersion
from featurekit.windows import WindowSpec


def source_scan(source: Source, root: Path) -> SourceScan:
    """How the engine reads ``source`` of the repo at ``root`` (relative paths from the repo root)."""
    if isinstance(source, SqlSource):
        return SourceScan(
            kind="sql",
            location=source.query,
            timestamp_field=source.timestamp_field,
            timestamp_columns=tuple(source.timestamp_columns),
            label=f"SQL source at {source.location}",
        )
    assert isinstance(source, FileSource)
    path = Path(source.path)
    absolute = str(path if path.is_absolute() else root.resolve() / path)
    return SourceScan(
        kind=source.format,
        location=absolute,
        timestamp_field=source.timestamp_field,
        timestamp_columns=tuple(source.timestamp_columns),
        label=f"source file {absolute}",
    )


def view_input(
    version: ViewVersion,
    files: list[str],
    features: list[tuple[str, str]] | None = None,
    *,
    known_at: datetime | None = None,
    entities: int | None = None,
    unique_times: bool = False,
) -> ViewInput:
    """The engine input of a registered batch view version whose data is ``files``.

    ``features``: (stored column, output column) pairs; default: every feature under its own name.
    """
    definition = version.definition
    ttl_us = definition["ttl_us"]
    return ViewInput(
        name=version.view,
        files=files,
        schema=version.schema,
        join_keys=list(definition["join_keys"]),
        timestamp_field=definition["source"]["timestamp_field"],
        created_field=definition["source"]["created_timestamp_field"],
        ttl=None if ttl_us is None else timedelta(microseconds=ttl_us),
        features=features if features is not None else [(f, f) for f in version.features],
        known_at=known_at,
        entities=entities,
        unique_times=unique_times,
        window=WindowSpec.of(definition) if version.is_window else None,
    )
