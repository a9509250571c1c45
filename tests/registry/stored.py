"""Lifecycle test data in the test's own market store: seeded daily bars of the futures series and two
stocks, and tiny specs (via ``KRX_MODEL_SPECS``) whose folds fit them."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from pipeline.config import get_settings
from pipeline.rl.synthetic import regime_switching_bars
from pipeline.store import get_engine, upsert_bars
from pipeline.store.migrate import upgrade
from tests.registry.factories import TINY_PARAMS

SYMBOLS = {"kospi200f-1d": ["KOSPI200F"], "stocks-1d": ["005930", "000660"]}
#: Tiny specs with two folds of 60 + 60 bars over 500 stored bars.
TINY_SPECS = {name: {**TINY_PARAMS, "n_folds": 2} for name in SYMBOLS}


def synthetic_bars(symbol: str, n: int = 500, seed: int = 0) -> pd.DataFrame:
    """Long-format daily bars (symbol, interval, ts at KST midnight, OHLCV) as the store takes them."""
    bars = regime_switching_bars(n, seed=seed)[["open", "high", "low", "close", "volume"]]
    frame = bars.rename_axis("ts").reset_index()
    frame["ts"] = pd.to_datetime(frame["ts"]).dt.tz_localize("Asia/Seoul")
    frame["volume"] = frame["volume"].round()
    return frame.assign(symbol=symbol, interval="1d")


def store_market(n: int = 500) -> pd.DataFrame:
    """Migrate the settings' store and write every symbol's bars; returns them (long)."""
    upgrade(get_engine())
    symbols = [s for names in SYMBOLS.values() for s in names]
    frames = pd.concat([synthetic_bars(s, n, seed=i) for i, s in enumerate(symbols)], ignore_index=True)
    upsert_bars(frames, source="test")
    return frames


def use_specs(monkeypatch: pytest.MonkeyPatch, specs: dict[str, Any] | None = None, **env: str) -> None:
    """Make the settings carry ``specs`` (default :data:`TINY_SPECS`), the test universe and ``env``."""
    monkeypatch.setenv("KRX_MODEL_SPECS", json.dumps(specs or TINY_SPECS))
    monkeypatch.setenv("KRX_STOCK_SYMBOLS", ",".join(SYMBOLS["stocks-1d"]))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
