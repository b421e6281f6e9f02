"""Repo settings: ``featurekit.yaml`` at the repo root, validated by pydantic (unknown keys rejected).

Without the file every setting has a working default and all state lives under ``.featurekit/``
inside the repo::

    project: rides                # defaults to the repo folder's name
    store_dir: .featurekit        # registry, offline tables, locks; relative to the repo root
    include: ["*.py"]             # globs of the modules that hold definitions
    archive: ["archive/*.py"]     # modules with old versions' code (run only to rebuild those versions)
    pins: []                      # versions gc must keep, e.g. ["driver_stats@v1"] (a model in production)
    offline:
      batch_rows: 2000000         # source rows per batch handed to a feature function
      memory_limit: null          # DuckDB memory limit, e.g. "4GB"
      threads: null               # DuckDB threads (default: all cores)
      lock_wait_s: 30             # how long an offline push waits while a materialization holds the view
    online:
      type: sqlite                # or "memory"
      path: online.db             # relative to store_dir
      busy_timeout_s: 60          # how long a writer waits for another writer
      mmap_mb: 1024               # SQLite reads the file through a memory map of up to this size (0: off)
      refresh_s: 5                # how often serving looks for a new apply
    serve:                        # `featurekit serve` (the HTTP feature server)
      host: 127.0.0.1             # loopback unless told otherwise
      port: 6566
      workers: 1                  # worker processes
      token_file: null            # lines "TOKEN read" or "TOKEN read,write", relative to the repo root
      limits:
        max_entities: 1000        # entities per lookup request
        max_body_bytes: 1048576   # request body size, checked while reading
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from featurekit.errors import ConfigError

CONFIG_FILE = "featurekit.yaml"


class OfflineConfig(BaseModel):
    """Settings of the offline engine (DuckDB) and materialization batching."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_rows: int = Field(default=2_000_000, ge=1)
    memory_limit: str | None = None
    threads: int | None = Field(default=None, ge=1)
    lock_wait_s: float = Field(default=30.0, ge=0)  # how long an offline push waits for a view's writer lock


class OnlineConfig(BaseModel):
    """Which online store serves lookups: ``sqlite`` (embedded default) or ``memory`` (tests, notebooks)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["sqlite", "memory"] = "sqlite"
    path: str = "online.db"  # relative to store_dir
    busy_timeout_s: float = Field(default=60.0, gt=0)
    mmap_mb: int = Field(default=1024, ge=0)  # SQLite memory map for reads; 0 on network file systems
    refresh_s: float = Field(default=5.0, ge=0)  # how often serving checks the registry for a new apply


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
    online: OnlineConfig = OnlineConfig()
    serve: ServeConfig = ServeConfig()


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
    return config
