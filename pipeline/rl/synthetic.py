"""Synthetic OHLCV bars for tests, demos and benchmarks: regime-switching drift or a pure random walk."""

from __future__ import annotations

import numpy as np
import pandas as pd


def regime_switching_bars(
    n: int,
    seed: int = 0,
    drifts: tuple[float, ...] = (0.003, -0.003),
    vols: tuple[float, ...] = (0.006, 0.018),
    mean_duration: float = 80.0,
    start_price: float = 50_000.0,
) -> pd.DataFrame:
    """Daily bars whose log-return drift and volatility switch with a hidden Markov regime.

    Regime k has drift ``drifts[k]`` and volatility ``vols[k]`` per bar and lasts ``mean_duration`` bars on
    average, so volatility reveals the drift (the edge an agent can learn). Column ``regime`` is the truth.
    """
    rng = np.random.default_rng(seed)
    k = len(drifts)
    regime = np.empty(n, np.int64)
    regime[0] = rng.integers(k)
    switches = rng.random(n) < 1.0 / mean_duration
    for t in range(1, n):
        regime[t] = (regime[t - 1] + rng.integers(1, k)) % k if switches[t] else regime[t - 1]
    rets = np.asarray(drifts)[regime] + np.asarray(vols)[regime] * rng.standard_normal(n)
    return _bars_from_returns(rets, rng, start_price, extra={"regime": regime})


def random_walk_bars(
    n: int, seed: int = 0, vol: float = 0.012, start_price: float = 50_000.0
) -> pd.DataFrame:
    """Daily bars of a driftless geometric random walk: no strategy has an edge on it."""
    rng = np.random.default_rng(seed)
    return _bars_from_returns(vol * rng.standard_normal(n), rng, start_price)


def _bars_from_returns(
    rets: np.ndarray, rng: np.random.Generator, start_price: float, extra: dict[str, np.ndarray] | None = None
) -> pd.DataFrame:
    n = len(rets)
    close = start_price * np.exp(np.cumsum(rets))
    prev_close = np.concatenate([[start_price], close[:-1]])
    # The open sits between the previous close and the close, so overnight gaps carry part of the move.
    open_ = prev_close * np.exp(rets * rng.uniform(0.0, 0.3, n))
    wick = np.abs(rets).mean() * rng.uniform(0.2, 1.0, (2, n))
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = rng.lognormal(12.0, 0.3, n) * (1.0 + 20.0 * np.abs(rets))
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
        index=pd.bdate_range("2010-01-04", periods=n, name="ts"),
    )
    for name, values in (extra or {}).items():
        frame[name] = values
    return frame
