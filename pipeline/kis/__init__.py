"""KIS Open API client (real, paper, local simulator) with a typed error taxonomy."""

from pipeline.kis.client import KisClient, asset_of, bars_frame
from pipeline.kis.config import KisConfig
from pipeline.kis.errors import (
    KisAuthError,
    KisConfigurationError,
    KisError,
    KisOrderNotSentError,
    KisRateLimitedError,
    KisRejectedError,
    KisTemporaryError,
    KisUncertainOrderError,
)

__all__ = [
    "KisAuthError",
    "KisClient",
    "KisConfig",
    "KisConfigurationError",
    "KisError",
    "KisOrderNotSentError",
    "KisRateLimitedError",
    "KisRejectedError",
    "KisTemporaryError",
    "KisUncertainOrderError",
    "asset_of",
    "bars_frame",
]
