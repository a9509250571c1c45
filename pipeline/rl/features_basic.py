"""Feature sets the agent can be trained on, by name: ``ta-v1`` (the TA-Lib set of ``pipeline.features``,
the default) and ``basic`` (seven cheap causal features, for fast tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

FeatureFn = Callable[[pd.DataFrame], pd.DataFrame]

_RENAMES = {"adj close": "adj_close", "adj_close": "adj_close"}


def normalise_ohlcv(bars: pd.DataFrame) -> pd.DataFrame:
    """Lower-case OHLCV column names (``Open`` → ``open``); adds a zero ``volume`` when it is absent."""
    out = bars.rename(columns=lambda c: _RENAMES.get(str(c).lower(), str(c).lower()))
    missing = {"open", "high", "low", "close"} - set(out.columns)
    if missing:
        raise ValueError(f"bars lack columns {sorted(missing)}")
    if "volume" not in out.columns:
        out = out.assign(volume=0.0)
    return out


def basic_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Causal features of OHLCV bars: every value at row t uses rows ≤ t only (warm-up rows are NaN).

    Columns: log returns over 1/5/20 bars, 20-bar volatility of 1-bar log returns, 20-bar volume z-score,
    close / SMA(20) - 1, and the bar's high-low range over close.
    """
    b = normalise_ohlcv(bars)
    close = b["close"].astype(np.float64)
    log_close = pd.Series(np.log(close.to_numpy()), index=b.index)
    ret1 = log_close.diff()
    volume = b["volume"].astype(np.float64)
    vol_std = volume.rolling(20).std()
    volume_z = ((volume - volume.rolling(20).mean()) / vol_std.where(vol_std > 0)).fillna(0.0)
    volume_z = volume_z.where(ret1.notna())
    out = pd.DataFrame(
        {
            "ret_1": ret1,
            "ret_5": log_close.diff(5),
            "ret_20": log_close.diff(20),
            "vol_20": ret1.rolling(20).std(),
            "volume_z_20": volume_z,
            "close_sma_20": close / close.rolling(20).mean() - 1.0,
            "range_hl": (b["high"] - b["low"]) / close,
        },
        index=b.index,
    )
    return out.astype(np.float64)


def ta_features(bars: pd.DataFrame) -> pd.DataFrame:
    """The project's TA-Lib feature set (``pipeline.features``, version ``ta-v1``) for one series."""
    from pipeline.features import series_features

    return series_features(normalise_ohlcv(bars))


FEATURE_SETS: dict[str, FeatureFn] = {"ta-v1": ta_features, "basic": basic_features}
"""Feature builders by name; a trained agent stores the name so serving recomputes the same features."""


def get_feature_fn(name: str) -> FeatureFn:
    """The registered feature builder called ``name``."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown feature set {name!r}; known: {sorted(FEATURE_SETS)}") from None
