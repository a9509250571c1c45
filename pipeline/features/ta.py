"""Causal TA-Lib features of OHLCV bars, per symbol: a pure DataFrame -> DataFrame function, no I/O."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import talib

#: Bump whenever a definition below changes: stored rows are keyed by it, so old and new never mix.
FEATURE_SET_VERSION = "ta-v1"

FEATURE_COLUMNS: list[str] = [
    "log_ret_1",
    "log_ret_5",
    "log_ret_20",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "atr_14_close",
    "bb_pct_b_20",
    "adx_14",
    "obv_change_20",
    "realized_vol_20",
    "volume_z_20",
    "close_sma_5",
    "close_sma_20",
    "close_sma_60",
]

#: Bars needed before every feature is defined: SMA(60) has its first value at the 60th bar. TA-Lib's own
#: lookbacks are shorter (MACD 33, ADX 27, RSI/ATR 14, ``talib.*_Lookback``).
WARMUP_BARS = 60

#: Wilder's smoothing (RSI, ATR, ADX) and the EMAs in MACD remember their seed; after this many bars a
#: series started later agrees with the full history to ~1e-6 relative, which is what a serving window
#: of raw bars needs to reproduce training features.
CONVERGED_BARS = 250

_KEY = ["symbol", "interval", "ts"]
_INPUT = [*_KEY, "open", "high", "low", "close", "volume"]


def _lagged_log_return(log_close: np.ndarray, lag: int) -> np.ndarray:
    out = np.full_like(log_close, np.nan)
    out[lag:] = log_close[lag:] - log_close[:-lag]
    return out


def _safe_ratio(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    # A flat window (zero band width, zero volume, zero dispersion) has a well-defined neutral value;
    # dividing would leave NaN after the warm-up.
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return np.where((den == 0) & ~np.isnan(den), fill, out)


def volume_zscore(volume: np.ndarray, window: int = 20) -> np.ndarray:
    """(v_t - SMA_w(v)_t) / SD_w(v)_t over the last ``window`` bars, population SD (TA-Lib ``STDDEV``);
    0 where the window is flat (no volume, or none recorded), NaN during the first ``window - 1`` bars.
    The one volume z-score of the project: ``ta-v1``, ``basic`` and the regime inputs all use it."""
    v = np.ascontiguousarray(volume, dtype=np.float64)  # [T]; TA-Lib wants contiguous float64
    mean = talib.SMA(v, timeperiod=window)
    return _safe_ratio(v - mean, talib.STDDEV(v, timeperiod=window, nbdev=1.0), 0.0)


def _symbol_features(h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray) -> list[np.ndarray]:
    """All features of one symbol's contiguous, time-ordered bars, in FEATURE_COLUMNS order."""
    log_c = np.log(c)
    ret_1 = _lagged_log_return(log_c, 1)
    macd, macd_signal, macd_hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    upper, _, lower = talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=talib.MA_Type.SMA)
    obv = talib.OBV(c, v)
    obv_delta = np.full_like(obv, np.nan)
    obv_delta[20:] = obv[20:] - obv[:-20]
    volume_sum = talib.SUM(v, timeperiod=20)
    return [
        ret_1,
        _lagged_log_return(log_c, 5),
        _lagged_log_return(log_c, 20),
        talib.RSI(c, timeperiod=14),  # Wilder (1978) smoothing, 0-100
        macd / c,  # MACD(12, 26, 9) in units of price so symbols are comparable
        macd_signal / c,
        macd_hist / c,
        talib.ATR(h, lo, c, timeperiod=14) / c,  # Wilder's average true range over close
        _safe_ratio(c - lower, upper - lower, 0.5),  # Bollinger %B, 20 bars, 2 standard deviations
        talib.ADX(h, lo, c, timeperiod=14),  # Wilder's average directional index
        # OBV change over 20 bars as a share of the volume traded then: -1 (all down) .. +1 (all up).
        _safe_ratio(obv_delta, volume_sum, 0.0),
        talib.STDDEV(ret_1, timeperiod=20, nbdev=1.0),  # realised volatility of 1-bar log returns
        volume_zscore(v, 20),
        c / talib.SMA(c, timeperiod=5),
        c / talib.SMA(c, timeperiod=20),
        c / talib.SMA(c, timeperiod=60),
    ]


def check_prices(prices: np.ndarray) -> None:
    """Refuse bars ``prices`` [T, 5] (open, high, low, close, volume) with a missing, non-finite or
    non-positive price (volume may be 0): TA-Lib would return garbage, not an error."""
    if not np.isfinite(prices).all() or (prices[:, :4] <= 0).any():
        raise ValueError("bars hold missing, non-finite or non-positive values: validate them first")


def _series_values(h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[F, T] features of one series' contiguous float64 arrays, NaN during the warm-up."""
    values = np.empty((len(FEATURE_COLUMNS), len(c)), dtype=np.float64)
    if len(c) == 0:
        return values
    for i, part in enumerate(_symbol_features(h, lo, c, v)):
        values[i] = part
    values[:, : WARMUP_BARS - 1] = np.nan
    return values


def _sorted_inputs(bars: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """``bars`` sorted by (symbol, interval, ts), and the start offset of each (symbol, interval) run plus
    the end. Sorting integer codes with ``np.lexsort`` avoids comparing strings row by row."""
    missing = [col for col in _INPUT if col not in bars.columns]
    if missing:
        raise ValueError(f"bars lack column(s) {missing}")
    sym = pd.factorize(bars["symbol"], sort=True)[0]
    itv = pd.factorize(bars["interval"], sort=True)[0]
    ts = pd.to_datetime(bars["ts"], utc=True)
    stamp = ts.to_numpy(dtype="datetime64[ns]").view(np.int64)
    order = np.lexsort((stamp, itv, sym))
    sym, itv, stamp = sym[order], itv[order], stamp[order]
    new_run = (sym[1:] != sym[:-1]) | (itv[1:] != itv[:-1])
    if (~new_run & (stamp[1:] == stamp[:-1])).any():
        raise ValueError("bars hold duplicate (symbol, interval, ts): validate them first")
    frame = bars[_INPUT].take(order).reset_index(drop=True)
    frame["ts"] = ts.take(order).reset_index(drop=True)
    check_prices(frame[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64))
    if frame.empty:
        return frame, np.array([0], dtype=np.int64)
    return frame, np.concatenate([[0], np.flatnonzero(new_run) + 1, [len(frame)]]).astype(np.int64)


def build_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Features of ``bars`` (columns symbol, interval, ts, open, high, low, close, volume; any symbols, any
    order): one row per bar, sorted by symbol, interval, ts, columns symbol, interval, ts + FEATURE_COLUMNS.

    Strictly causal: the value at bar t uses bars <= t of the same symbol and interval only, so changing a
    later bar never changes it. The first ``WARMUP_BARS - 1`` bars of each series hold NaN, none after.
    Raises ``ValueError`` on duplicate keys or missing / non-positive prices (validate bars first).
    """
    frame, bounds = _sorted_inputs(bars)
    n = len(frame)
    # TA-Lib wants contiguous float64 arrays; slicing a C-ordered column is a view, not a copy.
    cols = {
        k: np.ascontiguousarray(frame[k].to_numpy(dtype=np.float64))
        for k in ("high", "low", "close", "volume")
    }
    values = np.empty((len(FEATURE_COLUMNS), n), dtype=np.float64)
    for start, end in itertools.pairwise(bounds.tolist()):
        # Recursive indicators (EMA, Wilder) would carry state across symbols, so each series runs alone.
        series = (cols[k][start:end] for k in ("high", "low", "close", "volume"))
        values[:, start:end] = _series_values(*series)
    out = frame[_KEY].copy()
    features = pd.DataFrame(values.T, columns=FEATURE_COLUMNS, index=out.index)
    return pd.concat([out, features], axis=1)


def series_feature_values(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> np.ndarray:
    """The features of one time-ordered series of bars given as arrays [T]: float64 [T, F] in
    FEATURE_COLUMNS order, exactly the numbers ``build_features`` gives that series (the same
    ``_symbol_features`` on the same contiguous float64 arrays), without its sorting and frames. The
    served agent's hot path; ``ValueError`` on bars ``build_features`` refuses."""
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (open_, high, low, close, volume)]
    check_prices(np.stack(arrays, axis=1))
    return _series_values(*arrays[1:]).T


def series_features(bars: pd.DataFrame) -> pd.DataFrame:
    """``build_features`` for one time-ordered OHLCV series (any index, column names in any case),
    aligned to the input's index: what the RL environment and the served agent compute per symbol."""
    frame = bars.rename(columns=lambda c: str(c).lower())
    n = len(frame)
    volume = frame["volume"].to_numpy(dtype=np.float64) if "volume" in frame else np.zeros(n)
    o, h, lo, c = (frame[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close"))
    values = series_feature_values(o, h, lo, c, volume)
    return pd.DataFrame(values, index=bars.index, columns=FEATURE_COLUMNS)
