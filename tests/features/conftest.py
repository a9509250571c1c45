"""Fixtures for feature tests: a real S&P 500 daily series (shipped by ``arch``) as bars."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture(scope="session")
def spx_bars() -> pd.DataFrame:
    """S&P 500 daily OHLCV 1999-2018 from ``arch.data.sp500`` as store-shaped bars, stamped 00:00 KST."""
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
