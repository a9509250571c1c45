"""Causal inputs of the regime model: realised volatility, trend and volume activity per bar."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pandas.api.indexers import BaseIndexer

from pipeline.features import normalise_ohlcv, volume_zscore

REGIME_COLUMNS = ("log_vol", "trend", "volume_z")


class _SeriesWindows(BaseIndexer):  # type: ignore[misc]
    """Trailing windows of ``window_size`` rows that never reach back past the first row of their series
    (series laid end to end, starting at ``firsts``): pandas restarts its running sums at each series'
    first row, so each series gets exactly the numbers it gets alone."""

    def __init__(self, window_size: int, firsts: np.ndarray) -> None:
        super().__init__(window_size=window_size)
        self.firsts = firsts

    def get_window_bounds(
        self,
        num_values: int = 0,
        min_periods: int | None = None,
        center: bool | None = None,
        closed: str | None = None,
        step: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        end = np.arange(1, num_values + 1, dtype=np.int64)
        first = self.firsts[np.searchsorted(self.firsts, end - 1, side="right") - 1]
        return np.maximum(end - self.window_size, first).astype(np.int64), end


def _lagged(log_close: np.ndarray, lag: int, firsts: np.ndarray) -> np.ndarray:
    # pandas' diff(lag) of each series: NaN for its first `lag` rows.
    out = np.full_like(log_close, np.nan)
    out[lag:] = log_close[lag:] - log_close[:-lag]
    for first in firsts:
        out[first : first + lag] = np.nan
    return out


def _rolling_std(values: np.ndarray, firsts: np.ndarray, window: int) -> np.ndarray:
    # pandas' rolling std (its running-sum algorithm, its rounding) of each series; a plain window is
    # cheaper for one series.
    rolling = pd.Series(values).rolling
    one = rolling(window) if len(firsts) == 1 else rolling(_SeriesWindows(window, firsts), min_periods=window)
    return one.std().to_numpy()  # type: ignore[no-any-return]


def regime_feature_values(
    closes: Sequence[np.ndarray], volumes: Sequence[np.ndarray], vol_window: int = 20, trend_window: int = 20
) -> list[np.ndarray]:
    """:func:`regime_features` of several series at once (each its own float64 [T_i] close and volume):
    one float64 [T_i, 3] array per series (``REGIME_COLUMNS``), the same numbers as one series at a time."""
    lengths = [len(c) for c in closes]
    firsts = np.cumsum([0, *lengths[:-1]]).astype(np.int64)
    log_close = np.log(np.concatenate([np.asarray(c, dtype=np.float64) for c in closes]))
    vol = _rolling_std(_lagged(log_close, 1, firsts), firsts, vol_window)
    with np.errstate(divide="ignore", invalid="ignore"):
        trend = _lagged(log_close, trend_window, firsts) / (vol * np.sqrt(trend_window))
        log_vol = np.log(np.where(vol > 0, vol, np.nan))
    volume_z = np.concatenate([volume_zscore(v, vol_window) for v in volumes]) if lengths else np.zeros(0)
    out = np.stack([log_vol, trend, np.where(np.isnan(vol), np.nan, volume_z)], axis=1)
    out[np.isinf(out)] = np.nan
    return np.split(out, np.cumsum(lengths)[:-1])


def regime_features(bars: pd.DataFrame, vol_window: int = 20, trend_window: int = 20) -> pd.DataFrame:
    """Per-bar ``log_vol``, ``trend`` and ``volume_z``; row t uses bars ≤ t (warm-up rows are NaN).

    ``log_vol`` is the log of the rolling std of 1-bar log returns, ``trend`` the ``trend_window``-bar log
    return divided by that volatility (a t-statistic-like drift), ``volume_z`` the volume z-score (0 when
    the series has no volume; :func:`pipeline.features.volume_zscore`, the one of the agent's features).
    """
    b = normalise_ohlcv(bars)
    close, volume = b["close"].to_numpy(np.float64), b["volume"].to_numpy(np.float64)
    (values,) = regime_feature_values([close], [volume], vol_window, trend_window)
    return pd.DataFrame(values, index=b.index, columns=list(REGIME_COLUMNS))
