"""Market-regime clustering (KMeans / GaussianMixture) on volatility, trend and volume features."""

from pipeline.regimes.features import regime_features
from pipeline.regimes.model import RegimeConfig, RegimeModel

__all__ = ["RegimeConfig", "RegimeModel", "regime_features"]
