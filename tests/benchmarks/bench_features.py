"""Benchmark: ``build_features`` (TA-Lib per symbol on contiguous slices) vs pandas groupby-apply rolling.

Usage: python tests/benchmarks/bench_features.py [--quick] [--symbols N] [--bars N]
Full size: 500 symbols x 2,520 daily bars (10 years). Ends with one JSON line: bars_per_s (target
>= 1,000,000), baseline_bars_per_s, ratio, peak_rss_mb (process peak through the feature runs; input_rss_mb is
the part taken by generating the input), and the largest difference between the two implementations on the
features both define identically (a check that the baseline computes the same thing).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.features import FEATURE_COLUMNS, WARMUP_BARS, build_features

# Features defined by plain rolling windows, identical in both implementations (the Wilder/EMA ones differ
# in their seed, so they only agree after convergence).
EXACT = ["log_ret_1", "log_ret_5", "log_ret_20", "bb_pct_b_20", "realized_vol_20", "close_sma_20"]


def make_bars(symbols: int, bars: int, seed: int = 0) -> pd.DataFrame:
    """Random-walk daily OHLCV bars of ``symbols`` symbols, ``bars`` each."""
    rng = np.random.default_rng(seed)
    close = 20_000 * np.exp(np.cumsum(rng.normal(0, 0.02, (symbols, bars)), axis=1)).ravel()
    open_ = close * np.exp(rng.normal(0, 0.005, close.size))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, close.size))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, close.size))
    ts = pd.date_range("2015-01-05", periods=bars, freq="B", tz="Asia/Seoul").tz_convert("UTC")
    frame = pd.DataFrame(
        {
            "symbol": np.repeat([f"A{i:06d}" for i in range(symbols)], bars),
            "interval": "1d",
            "ts": np.tile(ts, symbols),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(1_000, 5_000_000, close.size).astype(np.float64),
        }
    )
    # Symbols arrive in random order, as a broker backfill would deliver them.
    blocks = rng.permutation(symbols)[:, None] * bars + np.arange(bars)
    return frame.take(blocks.ravel()).reset_index(drop=True)


def _wilder(x: pd.Series, n: int) -> pd.Series:
    return x.ewm(alpha=1 / n, adjust=False).mean()


def _pandas_one(g: pd.DataFrame) -> pd.DataFrame:
    """The same features with pandas rolling/ewm on one symbol (the straightforward implementation)."""
    c, h, lo, v = g["close"], g["high"], g["low"], g["volume"]
    log_c = np.log(c)
    ret = log_c.diff()
    delta = c.diff()
    rs = _wilder(delta.clip(lower=0), 14) / _wilder(-delta.clip(upper=0), 14)
    macd = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
    signal = macd.ewm(span=9, adjust=False).mean()
    tr = pd.concat([h - lo, (h - c.shift()).abs(), (lo - c.shift()).abs()], axis=1).max(axis=1)
    atr = _wilder(tr, 14)
    mid, sd = c.rolling(20).mean(), c.rolling(20).std(ddof=0)
    up, down = h.diff(), -lo.diff()
    plus = _wilder(up.where((up > down) & (up > 0), 0.0), 14) / atr
    minus = _wilder(down.where((down > up) & (down > 0), 0.0), 14) / atr
    obv = (np.sign(delta).fillna(0) * v).cumsum()
    out = {
        "log_ret_1": ret,
        "log_ret_5": log_c.diff(5),
        "log_ret_20": log_c.diff(20),
        "rsi_14": 100 - 100 / (1 + rs),
        "macd": macd / c,
        "macd_signal": signal / c,
        "macd_hist": (macd - signal) / c,
        "atr_14_close": atr / c,
        "bb_pct_b_20": (c - (mid - 2 * sd)) / (4 * sd),
        "adx_14": _wilder(100 * (plus - minus).abs() / (plus + minus), 14),
        "obv_change_20": obv.diff(20) / v.rolling(20).sum(),
        "realized_vol_20": ret.rolling(20).std(ddof=0),
        "volume_z_20": (v - v.rolling(20).mean()) / v.rolling(20).std(ddof=0),
        "close_sma_5": c / c.rolling(5).mean(),
        "close_sma_20": c / mid,
        "close_sma_60": c / c.rolling(60).mean(),
    }
    return pd.DataFrame(out, index=g.index)


def pandas_baseline(bars: pd.DataFrame) -> pd.DataFrame:
    frame = bars.sort_values(["symbol", "interval", "ts"], ignore_index=True)
    feats = frame.groupby(["symbol", "interval"], group_keys=False)[frame.columns.tolist()].apply(_pandas_one)
    return pd.concat([frame[["symbol", "interval", "ts"]], feats[FEATURE_COLUMNS]], axis=1)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def timed(
    fn: Callable[[pd.DataFrame], pd.DataFrame], bars: pd.DataFrame, repeat: int
) -> tuple[pd.DataFrame, float]:
    best, out = float("inf"), pd.DataFrame()
    for _ in range(repeat):
        del out  # the previous result must not inflate the next run's peak memory
        started = time.perf_counter()
        out = fn(bars)
        best = min(best, time.perf_counter() - started)
    return out, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 symbols x 1,000 bars (CI smoke run)")
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=2_520, help="bars per symbol (2,520 = 10 years)")
    args = parser.parse_args()
    symbols, bars = (100, 1_000) if args.quick else (args.symbols, args.bars)
    frame = make_bars(symbols, bars)
    input_rss = peak_rss_mb()
    ours, ours_s = timed(build_features, frame, repeat=3)
    ours_rss = peak_rss_mb()  # process peak before the baseline runs: input frame + feature builder
    base, base_s = timed(pandas_baseline, frame, repeat=1)
    warm = pd.Series(np.arange(len(ours)) % bars >= WARMUP_BARS - 1)
    diff = (ours.loc[warm, EXACT] - base.loc[warm, EXACT]).abs().to_numpy()
    figures = {
        "symbols": symbols,
        "bars": len(frame),
        "seconds": round(ours_s, 3),
        "bars_per_s": round(len(frame) / ours_s),
        "baseline": "pandas groupby-apply rolling/ewm",
        "baseline_seconds": round(base_s, 3),
        "baseline_bars_per_s": round(len(frame) / base_s),
        "ratio": round(base_s / ours_s, 2),
        "max_abs_diff_exact_features": float(np.nanmax(diff)),
        "nan_after_warmup": int(ours.loc[warm, FEATURE_COLUMNS].isna().to_numpy().sum()),
        "input_rss_mb": input_rss,
        "peak_rss_mb": ours_rss,
        "peak_rss_mb_with_baseline": peak_rss_mb(),
    }
    print(f"features: {figures['bars_per_s']:,} bars/s vs baseline {figures['baseline_bars_per_s']:,} bars/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
