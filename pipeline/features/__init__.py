"""TA-Lib features of bars (one implementation for training and serving), the named feature sets an agent
trains on, and their versioned store."""

from pipeline.features.basic import basic_features
from pipeline.features.ohlcv import normalise_ohlcv
from pipeline.features.sets import FEATURE_SETS, FeatureFn, get_feature_fn, ta_features
from pipeline.features.store import read_features, upsert_features
from pipeline.features.ta import (
    CONVERGED_BARS,
    FEATURE_COLUMNS,
    FEATURE_SET_VERSION,
    WARMUP_BARS,
    build_features,
    series_features,
    volume_zscore,
)

__all__ = [
    "CONVERGED_BARS",
    "FEATURE_COLUMNS",
    "FEATURE_SETS",
    "FEATURE_SET_VERSION",
    "WARMUP_BARS",
    "FeatureFn",
    "basic_features",
    "build_features",
    "get_feature_fn",
    "normalise_ohlcv",
    "read_features",
    "series_features",
    "ta_features",
    "upsert_features",
    "volume_zscore",
]
