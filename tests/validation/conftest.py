"""Fixtures for validation tests: clean bars on real KRX sessions, the S&P 500 daily series as bars."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from pipeline.market import TZ_NAME


def _krx_bars(symbols: tuple[str, ...] = ("005930", "000660"), n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Consistent daily bars stamped 00:00 KST on the first ``n`` KRX sessions of 2024."""
    from pipeline.validation import krx_sessions

    days = krx_sessions("2024-01-01", "2024-12-31")[:n]
    ts = days.tz_localize(TZ_NAME).tz_convert("UTC")
    rng = np.random.default_rng(seed)
    frames = []
    for symbol in symbols:
        close = np.round(70_000 * np.exp(np.cumsum(rng.normal(0, 0.01, n))))
        open_ = np.round(close * np.exp(rng.normal(0, 0.005, n)))
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "interval": "1d",
                    "ts": ts,
                    "open": open_,
                    "high": np.maximum(open_, close) + 100,
                    "low": np.minimum(open_, close) - 100,
                    "close": close,
                    "volume": rng.integers(1_000, 1_000_000, n),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def krx_bars() -> Callable[..., pd.DataFrame]:
    """Factory of clean daily bars on KRX sessions (every row passes the suite)."""
    return _krx_bars
