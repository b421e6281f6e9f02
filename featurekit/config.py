"""Repo settings: ``featurekit.yaml`` at the repo root, validated by pydantic (unknown keys rejected).

Without the file every setting has a working default and all state lives under ``.featurekit/``
inside the repo::

    project: rides                # defaults to the repo folder's name
    store_dir: .featurekit        # registry, offline tables, locks; relative to the repo root
    include: ["*.py"]             # globs of the modules that hold definitions
    archive: ["archive/*.py"]     # modules with old versions' code (run only to rebuild those versions)
    pins: []                      # versions gc must keep, e.g. ["driver_stats@v1"] (a model in production)
    offline:
      engine: duckdb              # or "spark" (pip install 'featurekit[spark]')
      spark: {master: "local[2]", conf: {}, executor_wait_s: 60}   # the session the Spark engine builds
      batch_rows: 2000000         # source rows per batch handed to a feature function
      memory_limit: null          # DuckDB memory limit, e.g. "4GB"
      threads: null               # DuckDB threads (default: all cores)
      lock_wait_s: 30             # how long an offline push waits while a materialization holds the view
    online:
      type: sqlite                # or "memory", or "redis" (below)
      path: online.db             # relative to store_dir
      busy_timeout_s: 60          # how long a writer waits for another writer
      mmap_mb: 1024               # SQLite reads the file through a memory map of up to this size (0: off)
      refresh_s: 5                # how often serving looks for a new apply
      log:                        # opt-in serving log (any online type), see featurekit.quality.serving_log
        path: serving_log         # a folder, relative to (or inside) the repo root
        sample: 0.01              # share of lookup requests logged, in (0, 1]
        queue_rows: 100000        # served rows waiting for the writer; more are dropped and counted
        flush_rows: 20000         # the writer writes a file when this many rows wait ...
        flush_s: 5.0              # ... or this long after its last file (what a killed process loses)
    serve:                        # `featurekit serve` (the HTTP feature server)
      host: 127.0.0.1             # loopback unless told otherwise
      port: 6566
      workers: 1                  # worker processes
      token_file: null            # lines "TOKEN read" or "TOKEN read,write", relative to the repo root
      limits:
        max_entities: 1000        # entities per lookup request
        max_body_bytes: 1048576   # request body size, checked while reading

The ``online`` block is one of three models chosen by its ``type`` (a pydantic discriminated union,
``sqlite`` when ``type`` is left out): each store's settings sit flat next to ``type`` and a setting
of another store is rejected by name rather than silently ignored. ``refresh_s`` is every type's.
A Redis online store (``pip install 'featurekit[redis]'``)::

    online:
      type: redis
      url: redis://localhost:6379/0   # redis://[user:password@]host:port/db, rediss:// for TLS, unix://
      key_prefix: "fk:rides:"         # every key the store writes starts with it; default fk:<project>:
      socket_timeout_s: 0.5           # a command without an answer within this fails (StorageError)
      connect_timeout_s: 0.5          # the same for opening a connection
      max_connections: 32             # connections per process; a thread waits for a free one...
      pool_timeout_s: 5               # ... at most this long
      refresh_s: 5
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from featurekit.errors import ConfigError

CONFIG_FILE = "featurekit.yaml"


class SparkConfig(BaseModel):
    """The Spark session featurekit builds when no session is handed to the store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    master: str = "local[2]"
    conf: dict[str, str] = Field(default_factory=dict)
    # how long a cluster master may take to give the session its first executor
    executor_wait_s: float = Field(default=60.0, gt=0)


class OfflineConfig(BaseModel):
    """Settings of the offline engine (DuckDB or Spark) and materialization batching."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["duckdb", "spark"] = "duckdb"
    spark: SparkConfig = Field(default_factory=SparkConfig)
    batch_rows: int = Field(default=2_000_000, ge=1)
    memory_limit: str | None = None
    threads: int | None = Field(default=None, ge=1)
    lock_wait_s: float = Field(default=30.0, ge=0)  # how long an offline push waits for a view's writer lock


class ServingLogConfig(BaseModel):
    """The opt-in serving log: sampled lookups appended to Parquet files off the lookup's path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = "serving_log"  # a folder relative to the repo root (or an absolute path inside it)
    sample: float = Field(default=0.01, gt=0, le=1)  # share of lookup requests logged
    queue_rows: int = Field(default=100_000, ge=1)  # rows accepted but not yet written, at most
    flush_rows: int = Field(default=20_000, ge=1)
    flush_s: float = Field(default=5.0, gt=0)

    @field_validator("path")
    @classmethod
    def _inside_repo(cls, value: str) -> str:
        """A relative path may not climb out of the repo (absolute ones are checked by load_config)."""
        if not value.strip():
            raise ValueError("the serving log needs a folder, e.g. path: serving_log")
        if ".." in Path(value).parts:
            raise ValueError(f"{value!r} leaves the repo; give a folder inside it, e.g. serving_log")
        return value


class _OnlineSettings(BaseModel):
    """What every online store's settings share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    refresh_s: float = Field(default=5.0, ge=0)  # how often serving checks the registry for a new apply
    log: ServingLogConfig | None = None  # the serving log; off unless configured


class SqliteOnlineConfig(_OnlineSettings):
    """The embedded default: one SQLite file under the store folder."""

    type: Literal["sqlite"] = "sqlite"
    path: str = "online.db"  # relative to store_dir
    busy_timeout_s: float = Field(default=60.0, gt=0)
    mmap_mb: int = Field(default=1024, ge=0)  # SQLite memory map for reads; 0 on network file systems


class MemoryOnlineConfig(_OnlineSettings):
    """In-memory (tests, notebooks): nothing persisted, nothing shared between processes."""

    type: Literal["memory"]


class RedisOnlineConfig(_OnlineSettings):
    """A Redis server shared by every serving host (``pip install 'featurekit[redis]'``)."""

    type: Literal["redis"]
    url: str = "redis://localhost:6379/0"
    # load_config makes the default "fk:<project>:", so repos sharing a Redis database never meet.
    key_prefix: str = Field(default="fk:", min_length=1, max_length=200)
    socket_timeout_s: float = Field(default=0.5, gt=0)
    connect_timeout_s: float = Field(default=0.5, gt=0)
    max_connections: int = Field(default=32, ge=1)
    pool_timeout_s: float = Field(default=5.0, gt=0)


OnlineConfig = Annotated[SqliteOnlineConfig | MemoryOnlineConfig | RedisOnlineConfig, Field(discriminator="type")]
"""Which online store serves lookups, chosen by ``type`` (default ``sqlite``)."""


class ServeLimits(BaseModel):
    """What one HTTP request may ask of the feature server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_entities: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=64)


class ServeConfig(BaseModel):
    """Defaults of ``featurekit serve``; the command line's options win over them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=6566, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    token_file: str | None = None  # relative to the repo root
    limits: ServeLimits = ServeLimits()


class RepoConfig(BaseModel):
    """Everything ``featurekit.yaml`` may say."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str | None = None
    store_dir: str = ".featurekit"
    include: list[str] = Field(default_factory=lambda: ["*.py"])
    archive: list[str] = Field(default_factory=lambda: ["archive/*.py"])
    pins: list[str] = Field(default_factory=list)
    offline: OfflineConfig = OfflineConfig()
    online: OnlineConfig = SqliteOnlineConfig()
    serve: ServeConfig = ServeConfig()

    @field_validator("online", mode="before")
    @classmethod
    def _sqlite_by_default(cls, value: Any) -> Any:
        """An ``online`` block without ``type`` configures the default store, SQLite."""
        if isinstance(value, dict) and "type" not in value:
            return {**value, "type": "sqlite"}
        return value


def validation_problems(exc: ValidationError) -> str:
    """A pydantic error as one line: ``field.path: message; ...``."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())


def load_config(repo: Path) -> RepoConfig:
    """Read ``repo/featurekit.yaml``; defaults when the file is absent."""
    path = repo / CONFIG_FILE
    if not path.exists():
        return RepoConfig(project=repo.resolve().name)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, got {type(raw).__name__}")
    try:
        config = RepoConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid {path}: {validation_problems(exc)}") from exc
    if config.project is None:
        config = config.model_copy(update={"project": repo.resolve().name})
    online = config.online
    if online.log is not None and not serving_log_folder(repo, online.log).is_relative_to(repo.resolve()):
        raise ConfigError(
            f"invalid {path}: online.log.path {online.log.path!r} is outside the repo {repo.resolve()}; "
            "give a folder inside it (relative paths are relative to the repo root)"
        )
    if isinstance(online, RedisOnlineConfig) and "key_prefix" not in online.model_fields_set:
        online = online.model_copy(update={"key_prefix": f"fk:{config.project}:"})
        config = config.model_copy(update={"online": online})
    return config


def serving_log_folder(repo: Path, config: ServingLogConfig) -> Path:
    """Where the serving log's files go: ``config.path`` resolved against the repo root."""
    return (repo / config.path).resolve()
