"""featurekit: a lightweight feature store where features are plain Python functions.

>>> import featurekit as fk
>>> driver = fk.Entity("driver", join_keys=["driver_id"])
>>> driver.join_keys
('driver_id',)
"""

from featurekit.definitions import Entity, FeatureRef, FeatureView, FileSource, SqlSource, feature_view
from featurekit.errors import (
    ConfigError,
    ConflictError,
    DataError,
    DefinitionError,
    FeatureFunctionError,
    FeaturekitError,
    InvalidNameError,
    NotAppliedError,
    RegistryError,
    SchemaError,
    SourceError,
    UnknownNameError,
    WindowError,
)
from featurekit.offline.materialize import MaterializeResult
from featurekit.offline.retrieval import TrainingSet
from featurekit.plan import Plan
from featurekit.store import FeatureStore, ViewInfo

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
    "InvalidNameError",
    "MaterializeResult",
    "NotAppliedError",
    "Plan",
    "RegistryError",
    "SchemaError",
    "SourceError",
    "SqlSource",
    "TrainingSet",
    "UnknownNameError",
    "ViewInfo",
    "WindowError",
    "__version__",
    "feature_view",
]
