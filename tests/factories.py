"""Test data factories shared by the test modules (import as ``from tests.factories import ...``)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine


def bars_frame(
    symbols: tuple[str, ...] = ("005930", "000660"),
    n: int = 50,
    *,
    interval: str = "1d",
    start: str = "2024-01-02",
    freq: str = "B",
    seed: int = 0,
) -> pd.DataFrame:
    """Consistent OHLCV bars (high >= max(open, close), low <= min(open, close)) for each symbol."""
    rng = np.random.default_rng(seed)
    frames = []
    ts = pd.date_range(start, periods=n, freq=freq, tz="Asia/Seoul")
    for symbol in symbols:
        close = 50_000 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        open_ = close * np.exp(rng.normal(0, 0.005, n))
        high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
        low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "interval": interval,
                    "ts": ts,
                    "open": open_.round(),
                    "high": np.ceil(high),
                    "low": np.floor(low),
                    "close": close.round(),
                    "volume": rng.integers(1_000, 1_000_000, n),
                    "turnover": (close * 1000).round(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def count_bars(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM bars").scalar_one())


@lru_cache(maxsize=1)
def sp500_bars() -> pd.DataFrame:
    """Real data: S&P 500 daily OHLCV 1999-2018 shipped by ``arch`` as store-shaped bars (00:00 KST)."""
    from arch.data import sp500

    raw = sp500.load()
    return pd.DataFrame(
        {
            "symbol": "SPX",
            "interval": "1d",
            "ts": raw.index.tz_localize("Asia/Seoul").tz_convert("UTC"),
            "open": raw["Open"].to_numpy(),
            "high": raw["High"].to_numpy(),
            "low": raw["Low"].to_numpy(),
            "close": raw["Close"].to_numpy(),
            "volume": raw["Volume"].to_numpy(),
        }
    )
