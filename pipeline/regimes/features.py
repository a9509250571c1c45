"""Causal inputs of the regime model: realised volatility, trend and volume activity per bar."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.rl.features_basic import normalise_ohlcv


def regime_features(bars: pd.DataFrame, vol_window: int = 20, trend_window: int = 20) -> pd.DataFrame:
    """Per-bar ``log_vol``, ``trend`` and ``volume_z``; row t uses bars ≤ t (warm-up rows are NaN).

    ``log_vol`` is the log of the rolling std of 1-bar log returns, ``trend`` the ``trend_window``-bar log
    return divided by that volatility (a t-statistic-like drift), ``volume_z`` the volume z-score (0 when
    the series has no volume).
    """
    b = normalise_ohlcv(bars)
    log_close = np.log(b["close"].astype(np.float64))
    ret = log_close.diff()
    vol = ret.rolling(vol_window).std()
    trend = log_close.diff(trend_window) / (vol * np.sqrt(trend_window))
    volume = b["volume"].astype(np.float64)
    v_std = volume.rolling(vol_window).std()
    volume_z = ((volume - volume.rolling(vol_window).mean()) / v_std.where(v_std > 0)).fillna(0.0)
    out = pd.DataFrame(
        {
            "log_vol": np.log(vol.where(vol > 0)),
            "trend": trend,
            "volume_z": volume_z.where(vol.notna()),
        },
        index=b.index,
    )
    return out.replace([np.inf, -np.inf], np.nan)
