"""Open the online store a repo's configuration names."""

from __future__ import annotations

from pathlib import Path

from featurekit.config import MemoryOnlineConfig, OnlineConfig, RedisOnlineConfig
from featurekit.online.base import OnlineStore, Packer
from featurekit.online.memory import MemoryOnlineStore
from featurekit.online.sqlite import SqliteOnlineStore


def open_online_store(config: OnlineConfig, store_root: Path) -> OnlineStore:
    """The configured store: SQLite (default, under the store folder), in-memory, or Redis."""
    if isinstance(config, MemoryOnlineConfig):
        return MemoryOnlineStore()
    if isinstance(config, RedisOnlineConfig):
        from featurekit.online.redis import RedisOnlineStore  # redis-py is imported only for this type

        return RedisOnlineStore(config)
    path = Path(config.path)
    return SqliteOnlineStore(path if path.is_absolute() else store_root / path, config.busy_timeout_s, config.mmap_mb)


def online_packer(config: OnlineConfig) -> Packer | None:
    """How the configured store's writes are encoded ahead of the write, if it has such a step (Redis)."""
    if isinstance(config, RedisOnlineConfig):
        from featurekit.online.redis_rows import pack_newest  # (no redis-py import)

        return pack_newest
    return None
