"""Causal inputs of the regime model: realised volatility, trend and volume activity per bar."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.features import normalise_ohlcv, volume_zscore


def regime_features(bars: pd.DataFrame, vol_window: int = 20, trend_window: int = 20) -> pd.DataFrame:
    """Per-bar ``log_vol``, ``trend`` and ``volume_z``; row t uses bars ≤ t (warm-up rows are NaN).

    ``log_vol`` is the log of the rolling std of 1-bar log returns, ``trend`` the ``trend_window``-bar log
    return divided by that volatility (a t-statistic-like drift), ``volume_z`` the volume z-score (0 when
    the series has no volume; :func:`pipeline.features.volume_zscore`, the one of the agent's features).
    """
    b = normalise_ohlcv(bars)
    log_close = np.log(b["close"].astype(np.float64))
    ret = log_close.diff()
    vol = ret.rolling(vol_window).std()
    trend = log_close.diff(trend_window) / (vol * np.sqrt(trend_window))
    volume_z = pd.Series(volume_zscore(b["volume"].to_numpy(np.float64), vol_window), index=b.index)
    out = pd.DataFrame(
        {
            "log_vol": np.log(vol.where(vol > 0)),
            "trend": trend,
            "volume_z": volume_z.where(vol.notna()),
        },
        index=b.index,
    )
    return out.replace([np.inf, -np.inf], np.nan)
