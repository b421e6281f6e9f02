"""featurekit: a lightweight feature store where features are plain Python functions.

>>> import featurekit as fk
>>> driver = fk.Entity("driver", join_keys=["driver_id"])
>>> driver.join_keys
('driver_id',)
"""

from featurekit.definitions import (
    Entity,
    FeatureRef,
    FeatureView,
    FileSource,
    OnDemandView,
    SqlSource,
    feature_view,
    on_demand,
)
from featurekit.errors import (
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
    RetentionError,
    SchemaError,
    SourceError,
    StorageError,
    UnknownNameError,
    WindowError,
)
from featurekit.info import ViewInfo
from featurekit.integrity import IntegrityReport, verify_store
from featurekit.manifest import Manifest
from featurekit.offline.materialize import MaterializeResult
from featurekit.offline.retrieval import TrainingSet
from featurekit.online.serving import OnlineResponse
from featurekit.plan import Plan
from featurekit.push import PushResult
from featurekit.skew import Mismatch, SkewReport
from featurekit.store import FeatureStore

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConflictError",
    "DataError",
    "DefinitionError",
    "Entity",
    "FeatureFunctionError",
    "FeatureRef",
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
    "PushResult",
    "RegistryError",
    "RetentionError",
    "SchemaError",
    "SkewReport",
    "SourceError",
    "SqlSource",
    "StorageError",
    "TrainingSet",
    "UnknownNameError",
    "ViewInfo",
    "WindowError",
    "__version__",
    "feature_view",
    "on_demand",
    "verify_store",
]
