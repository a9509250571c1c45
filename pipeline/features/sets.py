"""Feature sets an agent can be trained on, by name; a trained agent stores the name so serving recomputes
the same features: ``ta-v1`` (the TA-Lib set, the default) and ``basic`` (seven cheap causal features)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from pipeline.features.basic import basic_features
from pipeline.features.ohlcv import normalise_ohlcv
from pipeline.features.ta import FEATURE_SET_VERSION, series_features

FeatureFn = Callable[[pd.DataFrame], pd.DataFrame]


def ta_features(bars: pd.DataFrame) -> pd.DataFrame:
    """The project's TA-Lib feature set (version ``ta-v1``) of one OHLCV series, aligned to its index."""
    return series_features(normalise_ohlcv(bars))


FEATURE_SETS: dict[str, FeatureFn] = {FEATURE_SET_VERSION: ta_features, "basic": basic_features}
"""Feature builders by name: one OHLCV series (any column case) → one row of features per bar."""


def get_feature_fn(name: str) -> FeatureFn:
    """The registered feature builder called ``name``."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown feature set {name!r}; known: {sorted(FEATURE_SETS)}") from None
