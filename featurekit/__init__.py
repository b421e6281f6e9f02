"""featurekit: a lightweight feature store where features are plain Python functions.

>>> import featurekit as fk
>>> driver = fk.Entity("driver", join_keys=["driver_id"])
>>> driver.join_keys
('driver_id',)
"""

import importlib
from typing import TYPE_CHECKING

from featurekit import agg, check
from featurekit.definitions import (
    Entity,
    FeatureRef,
    FeatureSet,
    FeatureView,
    FileSource,
    OnDemandView,
    SqlSource,
    WindowView,
    feature_view,
    on_demand,
    window_view,
)
from featurekit.errors import (
    AuthError,
    CheckError,
    ConfigError,
    ConflictError,
    DataError,
    DefinitionError,
    FeatureFunctionError,
    FeaturekitError,
    InvalidNameError,
    ManifestError,
    NotAppliedError,
    OnlineHistoryError,
    RegistryError,
    RequestError,
    RetentionError,
    SchemaError,
    ServerError,
    SourceError,
    StorageError,
    UnknownNameError,
    WindowError,
)
from featurekit.priority import confine_to_cpus, lower_cpu_priority

if TYPE_CHECKING:  # the lazy names below, for type checkers and IDEs
    from featurekit.client import Client
    from featurekit.info import ViewInfo
    from featurekit.integrity import IntegrityReport, verify_store
    from featurekit.manifest import Manifest
    from featurekit.offline.explanation import Explanation
    from featurekit.offline.materialize import MaterializeResult
    from featurekit.offline.training import TrainingSet
    from featurekit.online.serving import OnlineResponse
    from featurekit.plan import Plan
    from featurekit.push import PushResult
    from featurekit.quality.check_results import CheckResult, CommitChecks
    from featurekit.quality.checks import CheckWarning
    from featurekit.quality.consistency import ConsistencyReport
    from featurekit.quality.drift import DriftReport, Thresholds
    from featurekit.quality.profile import Profile
    from featurekit.quality.serving_log import read_log
    from featurekit.quality.sides import ServedValues, ViewData
    from featurekit.skew import Mismatch, SkewReport
    from featurekit.store import FeatureStore

# Names whose modules import DuckDB, Arrow, polars or pandas are imported on first use, so that
# defining features and starting the CLI (`featurekit --help`) stay fast.
_LAZY = {
    "CheckResult": "featurekit.quality.check_results",
    "CheckWarning": "featurekit.quality.checks",
    "Client": "featurekit.client",
    "DriftReport": "featurekit.quality.drift",
    "Profile": "featurekit.quality.profile",
    "ServedValues": "featurekit.quality.sides",
    "Thresholds": "featurekit.quality.drift",
    "ViewData": "featurekit.quality.sides",
    "CommitChecks": "featurekit.quality.check_results",
    "Explanation": "featurekit.offline.explanation",
    "ConsistencyReport": "featurekit.quality.consistency",
    "FeatureStore": "featurekit.store",
    "IntegrityReport": "featurekit.integrity",
    "Manifest": "featurekit.manifest",
    "MaterializeResult": "featurekit.offline.materialize",
    "Mismatch": "featurekit.skew",
    "OnlineResponse": "featurekit.online.serving",
    "Plan": "featurekit.plan",
    "PushResult": "featurekit.push",
    "SkewReport": "featurekit.skew",
    "TrainingSet": "featurekit.offline.training",
    "ViewInfo": "featurekit.info",
    "read_log": "featurekit.quality.serving_log",
    "verify_store": "featurekit.integrity",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'featurekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "CheckError",
    "CheckResult",
    "CheckWarning",
    "Client",
    "CommitChecks",
    "ConfigError",
    "ConflictError",
    "ConsistencyReport",
    "DataError",
    "DefinitionError",
    "DriftReport",
    "Entity",
    "Explanation",
    "FeatureFunctionError",
    "FeatureRef",
    "FeatureSet",
    "FeatureStore",
    "FeatureView",
    "FeaturekitError",
    "FileSource",
    "IntegrityReport",
    "InvalidNameError",
    "Manifest",
    "ManifestError",
    "MaterializeResult",
    "Mismatch",
    "NotAppliedError",
    "OnDemandView",
    "OnlineHistoryError",
    "OnlineResponse",
    "Plan",
    "Profile",
    "PushResult",
    "RegistryError",
    "RequestError",
    "RetentionError",
    "SchemaError",
    "ServedValues",
    "ServerError",
    "SkewReport",
    "SourceError",
    "SqlSource",
    "StorageError",
    "Thresholds",
    "TrainingSet",
    "UnknownNameError",
    "ViewData",
    "ViewInfo",
    "WindowError",
    "WindowView",
    "__version__",
    "agg",
    "check",
    "confine_to_cpus",
    "feature_view",
    "lower_cpu_priority",
    "on_demand",
    "read_log",
    "verify_store",
    "window_view",
]
