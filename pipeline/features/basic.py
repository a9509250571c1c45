"""Seven cheap causal features of one OHLCV series (feature set ``basic``, for fast tests and benchmarks)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.features.ohlcv import normalise_ohlcv
from pipeline.features.ta import volume_zscore


def basic_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Causal features of OHLCV bars: every value at row t uses rows ≤ t only (warm-up rows are NaN).

    Columns: log returns over 1/5/20 bars, 20-bar volatility of 1-bar log returns, 20-bar volume z-score
    (:func:`volume_zscore`, the one of ``ta-v1``), close / SMA(20) - 1, and the bar's high-low range over
    close.
    """
    b = normalise_ohlcv(bars)
    close = b["close"].astype(np.float64)
    log_close = pd.Series(np.log(close.to_numpy()), index=b.index)
    ret1 = log_close.diff()
    volume_z = pd.Series(volume_zscore(b["volume"].to_numpy(np.float64), 20), index=b.index)
    out = pd.DataFrame(
        {
            "ret_1": ret1,
            "ret_5": log_close.diff(5),
            "ret_20": log_close.diff(20),
            "vol_20": ret1.rolling(20).std(),
            "volume_z_20": volume_z.where(ret1.notna()),
            "close_sma_20": close / close.rolling(20).mean() - 1.0,
            "range_hl": (b["high"] - b["low"]) / close,
        },
        index=b.index,
    )
    return out.astype(np.float64)
