"""TA-Lib features of bars (one implementation for training and serving) and their versioned store."""

from pipeline.features.store import read_features, upsert_features
from pipeline.features.ta import (
    CONVERGED_BARS,
    FEATURE_COLUMNS,
    FEATURE_SET_VERSION,
    WARMUP_BARS,
    build_features,
    series_features,
)

__all__ = [
    "CONVERGED_BARS",
    "FEATURE_COLUMNS",
    "FEATURE_SET_VERSION",
    "WARMUP_BARS",
    "build_features",
    "read_features",
    "series_features",
    "upsert_features",
]
