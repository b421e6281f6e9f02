"""Open the online store a repo's configuration names."""

from __future__ import annotations

from pathlib import Path

from featurekit.config import OnlineConfig
from featurekit.online.base import OnlineStore
from featurekit.online.memory import MemoryOnlineStore
from featurekit.online.sqlite import SqliteOnlineStore


def open_online_store(config: OnlineConfig, store_root: Path) -> OnlineStore:
    """The configured store: SQLite (default, under the store folder) or in-memory."""
    if config.type == "memory":
        return MemoryOnlineStore()
    path = Path(config.path)
    return SqliteOnlineStore(path if path.is_absolute() else store_root / path, config.busy_timeout_s, config.mmap_mb)
