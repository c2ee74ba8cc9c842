"""ser-batch: speech emotion recognition at batch scale (the library; never imports Prefect)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ser_batch.config import (
    DEFAULT_FEATURE_SET,
    EMOTIONS,
    FEATURE_SETS,
    FeatureConfig,
    ScoreConfig,
    TrainConfig,
    feature_config,
)
from ser_batch.errors import AudioError, ConfigError, SchemaError, SerBatchError, StorageError

try:
    __version__ = version("ser-batch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "DEFAULT_FEATURE_SET",
    "EMOTIONS",
    "FEATURE_SETS",
    "AudioError",
    "ConfigError",
    "FeatureConfig",
    "SchemaError",
    "ScoreConfig",
    "SerBatchError",
    "StorageError",
    "TrainConfig",
    "__version__",
    "feature_config",
]
